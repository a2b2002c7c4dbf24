"""Services started by the project itself: Kafka (KRaft), MLflow, Airflow and the live path.

Each is a ``Service``: how to build its managed process, what to prepare before it starts
(folders, storage format, config files) and what to do once it answers (topics). The live
path (the ingestor and the feature stream) runs supervised: restarted when it exits
(``live``, ``supervisor``).
``python -m volpipe.ops.services`` is the command line the Makefile and the demo use;
``running`` is the context manager tests and benchmarks use.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from volpipe.config import Settings
from volpipe.ops.services import airflow, kafka, live, mlflow_server
from volpipe.ops.services.process import ManagedProcess


def _nothing(_settings: Settings) -> None:
    return None


@dataclass(frozen=True)
class Service:
    """One embedded service: its process, its preparation, its post-start step and where it lives."""

    name: str
    process: Callable[[Settings], ManagedProcess]
    where: Callable[[Settings], str]
    prepare: Callable[[Settings], None] = _nothing
    after_start: Callable[[Settings], object] = _nothing  # what it returns is ignored

    def start(self, settings: Settings) -> bool:
        """Prepares and starts the service unless it runs, waits until it answers. True if started."""
        self.prepare(settings)
        started = self.process(settings).start()
        self.after_start(settings)
        return started

    def stop(self, settings: Settings) -> bool:
        """Stops the service and its children. True when it was running."""
        return self.process(settings).stop()


KAFKA = Service("kafka", kafka.broker, kafka.where, prepare=kafka.prepare, after_start=kafka.create_topics)
MLFLOW = Service("mlflow", mlflow_server.server, mlflow_server.where, prepare=mlflow_server.prepare)
AIRFLOW = Service("airflow", airflow.components, airflow.where, prepare=airflow.prepare)
# The platform: what `up` starts without names (and what the demo starts).
SERVICES = {service.name: service for service in (KAFKA, MLFLOW, AIRFLOW)}
STREAM = Service("stream", live.stream, live.stream_where)
INGESTOR = Service("ingestor", live.ingestor, live.ingestor_where)
# Every service, in start order; `down` stops in reverse: the ingestor, then the stream (which
# commits its batch in flight), then the platform. The live path is started on purpose (`make live`).
ALL_SERVICES = {**SERVICES, STREAM.name: STREAM, INGESTOR.name: INGESTOR}


@contextlib.contextmanager
def running(settings: Settings, *services: Service) -> Iterator[Settings]:
    """Starts ``services`` in order and always stops them in reverse (tests, benchmarks)."""
    with contextlib.ExitStack() as stack:
        for service in services:
            service.start(settings)
            stack.callback(service.stop, settings)
        yield settings
