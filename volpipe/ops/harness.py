"""Run the local exchange and the ingestor as processes, the way a user does; read what they wrote.

Used by the integration tests and ``bench/ingest_throughput.py`` so both drive the real
commands (``python -m ingest.exchange``, ``python -m ingest``) and check the real outputs
(NDJSON files, Kafka topics). Every process started here is stopped by its own pid.
"""

from __future__ import annotations

import functools
import os
import resource
import signal
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request
import uuid
from collections.abc import Callable, Mapping
from pathlib import Path

import orjson
import psutil
from confluent_kafka import Consumer, KafkaError, TopicPartition

from volpipe.config import PROJECT_ROOT, Settings
from volpipe.errors import HarnessError
from volpipe.ops.services.process import free_port, port_open


def wait_until(predicate: Callable[[], bool], timeout: float, what: str, interval: float = 0.1) -> None:
    """Polls ``predicate`` until it holds.

    Raises:
        TimeoutError: It did not hold within ``timeout`` seconds; the message says ``what``.
    """
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


def survivors(tree: list[psutil.Process]) -> list[str]:
    """The processes of ``tree`` still alive (zombies count as gone), as "pid cmd" strings."""
    alive = []
    for proc in tree:
        try:
            if proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE:
                alive.append(f"{proc.pid} {' '.join(proc.cmdline()[:4])}")
        except psutil.NoSuchProcess:
            pass
    return alive


class ExchangeProcess:
    """``python -m ingest.exchange`` on a free port, controlled over HTTP."""

    def __init__(self, *args: str) -> None:
        self.port = free_port()
        self.url = f"ws://127.0.0.1:{self.port}"
        # A file, not a pipe: an unread pipe would block its logging.
        self.log = tempfile.TemporaryFile()  # noqa: SIM115 - closed by stop()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "ingest.exchange", "--port", str(self.port), *args],
            cwd=PROJECT_ROOT,
            stdout=subprocess.DEVNULL,
            stderr=self.log,
        )
        try:
            wait_until(lambda: port_open("127.0.0.1", self.port) or self.proc.poll() is not None, 30, "exchange")
        except TimeoutError:
            self.stop()
            raise
        if self.proc.poll() is not None:
            self.log.seek(0)
            raise HarnessError(f"exchange exited: {self.log.read().decode()[-2000:]}")

    def control(self, action: str, **params: object) -> dict:
        """``GET /control/<action>?params``; returns the exchange's stats after it."""
        query = urllib.parse.urlencode(params)
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/control/{action}?{query}", timeout=10) as answer:
            return orjson.loads(answer.read())

    def stats(self) -> dict:
        """Connections, ticks generated and sent."""
        return self.control("stats")

    def drain(
        self, settings: Settings, raw_before: int, alive: Callable[[], bool] = lambda: True, timeout: float = 120
    ) -> int:
        """Stops sending (a stall), then waits until Kafka ``ticks.raw`` holds every ticker sent.

        Stopping the ingestor right after the exchange's last send loses what is still in the
        socket and the ingestor's queue (about 1,000 tickers at full speed on a busy machine).
        ``raw_before``: the topic's messages before this exchange's first frame. The wait ends
        early when ``alive()`` turns false (the ingestor died: its own log says why).

        Returns:
            The tickers the exchange sent.
        """
        sent = self.control("stall", seconds=3600)
        counts = [-1]

        def settled() -> bool:  # every ticker there (the topic holds tickers only), nothing more arriving
            counts.append(topic_messages(settings, settings.kafka_input_topic) - raw_before)
            return not alive() or counts[-1] == counts[-2] >= sent["tickers_sent"]

        wait_until(settled, timeout, "Kafka to hold every ticker the exchange sent", 0.5)
        return int(sent["tickers_sent"])

    def stop(self) -> None:
        """SIGTERM and wait (SIGKILL after 15 s)."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()


def ingestor_env(settings: Settings, url: str, **extra: str) -> dict[str, str]:
    """Environment for ``python -m ingest`` against ``settings``' broker, paths and topics."""
    env = {
        "PIPELINE_DATA_DIR": str(settings.data_dir),
        "KAFKA_BOOTSTRAP_SERVERS": settings.kafka_bootstrap_servers,
        "KAFKA_INPUT_TOPIC": settings.kafka_input_topic,
        "KAFKA_DEADLETTER_TOPIC": settings.kafka_deadletter_topic,
        "KAFKA_OUTPUT_TOPIC": settings.kafka_output_topic,
        "COINBASE_WS_URL": url,
        "PRODUCT_IDS": ",".join(settings.product_ids),
        "METRICS_PORT": "0",
    }
    env.update(extra)
    return env


class IngestorProcess:
    """``python -m ingest`` with the given environment; ``stop`` returns its final counts.

    Args:
        env: Its environment (``ingestor_env``), over this process's.
        log_path: Where its log (stderr) is appended.
        file_size_limit: Its RLIMIT_FSIZE in bytes: writing a file past it fails with EFBIG
            (Python ignores SIGXFSZ), a full disk for this process alone, without root.
    """

    def __init__(self, env: Mapping[str, str], log_path: Path, file_size_limit: int | None = None) -> None:
        self.log_path = log_path
        log_path.parent.mkdir(parents=True, exist_ok=True)

        def limit_file_size(size: int) -> None:
            resource.setrlimit(resource.RLIMIT_FSIZE, (size, resource.getrlimit(resource.RLIMIT_FSIZE)[1]))

        with open(log_path, "ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "ingest"],
                cwd=PROJECT_ROOT,
                env={**os.environ, **env},
                stdout=subprocess.PIPE,
                stderr=log,
                preexec_fn=functools.partial(limit_file_size, file_size_limit) if file_size_limit else None,
            )

    def stop(self, timeout: float = 60) -> dict:
        """SIGTERM; returns the ``final`` counts it printed.

        Raises:
            HarnessError: It did not exit 0 (the message quotes its log).
        """
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        out, _ = self.proc.communicate(timeout=timeout)
        if self.proc.returncode != 0 or not out.strip():
            raise HarnessError(f"ingestor exited {self.proc.returncode}:\n{self.log_path.read_text()[-3000:]}")
        return orjson.loads(out.strip().splitlines()[-1])["final"]


def ndjson_records(folder: Path) -> list[bytes]:
    """Every line of every daily file in ``folder``, in file order."""
    return [line for path in sorted(folder.glob("*.ndjson")) for line in path.read_bytes().splitlines()]


def topic_messages(settings: Settings, topic: str) -> int:
    """Messages in ``topic`` (sum of its partitions' high watermarks; the topics are never compacted)."""
    consumer = Consumer({**settings.kafka_client_config(), "group.id": f"volpipe-count-{uuid.uuid4()}"})
    try:
        partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
        return sum(consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1] for p in partitions)
    finally:
        consumer.close()


def topic_records(
    settings: Settings, topic: str, expected: int, timeout: float = 30
) -> list[tuple[int | None, bytes | None, bytes | None]]:
    """(partition, key, value) of every record in ``topic``, read from the start.

    Stops when ``expected`` records were read and nothing more came for a second, or at
    ``timeout``; the caller compares the count.
    """
    consumer = Consumer(
        {
            **settings.kafka_client_config(),
            "group.id": f"ingest-check-{uuid.uuid4()}",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
            "enable.partition.eof": False,
        }
    )
    consumer.subscribe([topic])
    records: list[tuple[int | None, bytes | None, bytes | None]] = []
    deadline = time.monotonic() + timeout
    quiet_since = None
    try:
        while time.monotonic() < deadline:
            batch = consumer.consume(num_messages=5000, timeout=0.5)
            for message in batch:
                error = message.error()
                if error is not None and error.code() != KafkaError._PARTITION_EOF:
                    raise HarnessError(f"consume {topic}: {error}")
                records.append((message.partition(), message.key(), message.value()))
            if batch:
                quiet_since = None
            elif len(records) >= expected:
                quiet_since = quiet_since or time.monotonic()
                if time.monotonic() - quiet_since > 1.0:
                    break
    finally:
        consumer.close()
    return records
