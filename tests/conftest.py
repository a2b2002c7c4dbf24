"""Shared fixtures: isolated settings, and real services started by the project's own code.

Tiers (tests/README.md): a test that asks for a service fixture (``kafka_broker``, ``spark``,
``mlflow_server``, or one built on them) is marked ``integration`` here, whatever its folder,
so ``make test-unit`` (``-m "not integration and not spark"``) never starts a service.

Every service runs on free ports with its data under a pytest temp dir, so the suite never
touches a broker or server a developer has running, and two suites can run side by side.
Session-scoped services are started once and always stopped, even when a test fails.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest

from volpipe.config import Settings
from volpipe.ops.sandbox import isolated_settings

SERVICE_FIXTURES = frozenset({"kafka_broker", "spark", "mlflow_server"})


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Marks every test that uses a service fixture, directly or through another fixture."""
    for item in items:
        if SERVICE_FIXTURES.intersection(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.integration)


@pytest.fixture(scope="session")
def session_settings(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    """Settings shared by the session-scoped services."""
    return isolated_settings(tmp_path_factory.mktemp("pipeline"))


@pytest.fixture(scope="session")
def kafka_broker(session_settings: Settings) -> Iterator[Settings]:
    """A real single-node KRaft broker with the pipeline's topics; yields its settings."""
    from volpipe.ops.services import KAFKA, running

    with running(session_settings, KAFKA):
        yield session_settings


@pytest.fixture(scope="session")
def spark(session_settings: Settings, kafka_broker: Settings):
    """One local[2] SparkSession (UI off, UTC, Delta, RocksDB) for the whole test session.

    It asks for the broker so that the broker outlives it: Spark's Kafka producers would
    otherwise retry a stopped broker while the session shuts down.
    """
    from volpipe.spark import build_spark_session

    # py4j logs at INFO from an atexit hook, after pytest has closed the streams it captured.
    logging.getLogger("py4j").setLevel(logging.WARNING)
    session = build_spark_session(session_settings, "volpipe-tests")
    try:
        yield session
    finally:
        session.stop()


@pytest.fixture(scope="session")
def mlflow_server(session_settings: Settings) -> Iterator[Settings]:
    """A real MLflow tracking server on a sqlite backend; yields its settings."""
    from volpipe.ops.services import MLFLOW, running

    with running(session_settings, MLFLOW):
        yield session_settings
