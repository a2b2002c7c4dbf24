"""Layer 3 of the ingestor: the NDJSON files and the Kafka producer, behind one queue.

Inputs: ``Record`` items put on a bounded ``asyncio.Queue`` by the read loop. Outputs:
``DATA_DIR/raw|quarantine/YYYYMMDD.ndjson`` (UTC date of receipt) and the ``ticks.raw`` /
``ticks.deadletter`` topics. The file is written first: it is the durable copy, and what a
failed Kafka delivery is re-sent from. Kafka never blocks the loop: ``produce`` only
enqueues into librdkafka, deliveries are confirmed by a poll thread.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import os
import re
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO, NamedTuple

import orjson
from confluent_kafka import KafkaError, KafkaException, Producer

from volpipe.config import Settings
from volpipe.dates import NS_PER_DAY, daily_file_stem

log = logging.getLogger(__name__)

_FILE_NAME = re.compile(r"^\d{8}\.ndjson$")
_TAIL_BYTES = 64 * 1024


class Record(NamedTuple):
    """One line for a file and one message for a topic."""

    deadletter: bool
    key: bytes | None
    value: bytes
    ingest_seq: int
    recv_ns: int


def last_ingest_seq(*dirs: Path) -> int | None:
    """The highest ``ingest_seq`` written in any daily NDJSON file of the folders.

    Every file is appended in ``ingest_seq`` order, so its last line holds its highest; all
    files are read, not only the newest, because an import appends to the days it recorded,
    which may be older than today's file. Reads only the end of each file. A last line
    without its newline (a crash mid-write) is cut off, so the next append starts on a clean
    line; it is logged with its size.

    Args:
        dirs: The raw and quarantine folders (missing ones are skipped).

    Returns:
        The highest sequence found, or None when no folder holds a record yet.
    """
    seqs = [
        _tail_seq(path)
        for folder in dirs if folder.is_dir()
        for path in folder.glob("*.ndjson") if _FILE_NAME.match(path.name)
    ]
    return max((seq for seq in seqs if seq is not None), default=None)


def _tail_seq(path: Path) -> int | None:
    with open(path, "r+b") as handle:
        size = handle.seek(0, os.SEEK_END)
        start = max(0, size - _TAIL_BYTES)
        while True:
            handle.seek(start)
            tail = handle.read()
            complete = tail[: tail.rfind(b"\n") + 1]
            if len(complete) < len(tail):
                log.warning("truncating partial last line path=%s bytes=%d", path, len(tail) - len(complete))
                handle.truncate(start + len(complete))
            lines = complete.splitlines()
            if len(lines) >= 2 or start == 0:  # the first line of a mid-file read may be cut
                break
            start = max(0, start - 16 * _TAIL_BYTES)
        if not lines:
            return None
    return orjson.loads(lines[-1])["ingest_seq"]


class DailyFiles:
    """Appends lines to ``<folder>/YYYYMMDD.ndjson``, switching files at UTC midnight."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.day: str | None = None
        self.handle: IO[bytes] | None = None

    def path_for(self, recv_ns: int) -> Path:
        """The file a record received at ``recv_ns`` goes to."""
        return self.folder / f"{daily_file_stem(recv_ns)}.ndjson"

    def write(self, recv_ns: int, data: bytes) -> None:
        """Appends ``data`` (whole lines) to the file of ``recv_ns``'s day."""
        day = daily_file_stem(recv_ns)
        if day != self.day:
            self.close()
            self.folder.mkdir(parents=True, exist_ok=True)
            self.handle = open(self.folder / f"{day}.ndjson", "ab", buffering=1 << 20)
            self.day = day
            log.info("ndjson file opened path=%s", self.folder / f"{day}.ndjson")
        self.handle.write(data)  # type: ignore[union-attr]

    def flush(self) -> None:
        """Hands buffered lines to the OS (they survive a crash of this process)."""
        if self.handle is not None:
            self.handle.flush()

    def close(self) -> None:
        """Flushes, fsyncs (they survive a crash of the machine) and closes the file."""
        if self.handle is not None:
            self.handle.flush()
            os.fsync(self.handle.fileno())
            self.handle.close()
            self.handle = None
            self.day = None


class KafkaSink:
    """An idempotent, compressed producer whose deliveries a background thread confirms.

    Args:
        settings: Brokers, topics, buffer bound and timeouts.
        on_delivered: Called from the poll thread with the record's ``recv_ns`` on success.
        on_failed: Called from the poll thread with (ingest_seq, recv_ns, deadletter, error).
    """

    def __init__(
        self,
        settings: Settings,
        on_delivered: Callable[[int], None],
        on_failed: Callable[[int, int, bool, str], None],
    ) -> None:
        self.settings = settings
        self._on_delivered = on_delivered
        self._on_failed = on_failed
        self._last_error_log = 0.0
        self.producer = Producer(
            {
                **settings.kafka_client_config(),
                "client.id": "volpipe-ingest",
                "enable.idempotence": True,
                "acks": "all",
                "compression.type": "lz4",
                "linger.ms": 0,
                # Any record a frame within WS_MAX_MESSAGE_BYTES makes (the broker allows the same).
                "message.max.bytes": settings.kafka_max_message_bytes,
                "queue.buffering.max.messages": settings.producer_buffer_messages,
                "queue.buffering.max.kbytes": 2_097_151,
                # Deliveries are retried until this timeout: far beyond a broker restart.
                "message.timeout.ms": int(settings.producer_message_timeout_seconds * 1000),
                "error_cb": self._on_error,
                "logger": logging.getLogger("librdkafka"),  # not raw lines on stderr
            }
        )
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, name="kafka-poll", daemon=True)
        self._thread.start()

    def produce(self, record: Record) -> None:
        """Enqueues one record; a full buffer or a bad message counts as a failed delivery."""
        topic = self.settings.kafka_deadletter_topic if record.deadletter else self.settings.kafka_input_topic
        try:
            self.producer.produce(
                topic,
                record.value,
                record.key,
                on_delivery=functools.partial(self._delivery, record.ingest_seq, record.recv_ns, record.deadletter),
            )
        except (BufferError, KafkaException) as exc:
            self._on_failed(record.ingest_seq, record.recv_ns, record.deadletter, f"produce: {exc}")

    def _delivery(self, ingest_seq: int, recv_ns: int, deadletter: bool, err: KafkaError | None, _msg) -> None:
        if err is None:
            self._on_delivered(recv_ns)
        else:
            self._on_failed(ingest_seq, recv_ns, deadletter, str(err))

    def _on_error(self, err: KafkaError) -> None:
        now = time.monotonic()
        if now - self._last_error_log > 5:  # librdkafka repeats "all brokers down" a lot
            self._last_error_log = now
            log.warning("kafka error=%s in_flight=%d", err, len(self.producer))

    def _poll(self) -> None:
        while not self._stop.is_set():
            self.producer.poll(0.05)

    def in_flight(self) -> int:
        """Messages produced but not yet confirmed."""
        return len(self.producer)

    def close(self, timeout: float) -> int:
        """Waits up to ``timeout`` seconds for deliveries; returns how many are left."""
        self._stop.set()
        self._thread.join()
        left = self.producer.flush(timeout)
        if left:
            # Purged messages get their delivery report (an error), so each is counted and
            # logged with its ingest_seq by on_failed.
            self.producer.purge()
            self.producer.flush(0)
        return left


class Writer:
    """Drains the queue: lines to the daily files first, then to Kafka.

    Batches whatever is queued (up to ``batch``) into one write per file and one flush,
    which keeps the per-message cost low at tens of thousands of messages a second and
    the latency low at a hundred.
    """

    def __init__(self, settings: Settings, queue: asyncio.Queue, kafka: KafkaSink | None, batch: int = 2000) -> None:
        self.queue = queue
        self.raw = DailyFiles(settings.raw_dir)  # type: ignore[arg-type]
        self.quarantine = DailyFiles(settings.quarantine_dir)  # type: ignore[arg-type]
        self.kafka = kafka
        self.batch = batch
        self.written = 0

    def path_of(self, recv_ns: int, deadletter: bool) -> Path:
        """The NDJSON file a record is in (for logs about failed deliveries)."""
        return (self.quarantine if deadletter else self.raw).path_for(recv_ns)

    async def run(self) -> None:
        """Writes until cancelled; ``drain`` handles what is queued at shutdown."""
        while True:
            first = await self.queue.get()
            items = [first]
            while len(items) < self.batch and not self.queue.empty():
                items.append(self.queue.get_nowait())
            self._write(items)

    def drain(self) -> None:
        """Writes everything still queued (called after the read loop stopped)."""
        items = []
        while not self.queue.empty():
            items.append(self.queue.get_nowait())
        if items:
            self._write(items)

    def _write(self, items: list[Record]) -> None:
        pending: list[bytes] = []
        pending_ns = items[0].recv_ns
        for record in items:
            if record.deadletter:
                self.quarantine.write(record.recv_ns, record.value + b"\n")
                continue
            if pending and record.recv_ns // NS_PER_DAY != pending_ns // NS_PER_DAY:
                self.raw.write(pending_ns, b"".join(pending))  # the batch spans midnight
                pending = []
            pending.append(record.value + b"\n")
            pending_ns = record.recv_ns
        if pending:
            self.raw.write(pending_ns, b"".join(pending))
        self.raw.flush()
        self.quarantine.flush()
        self.written += len(items)
        if self.kafka is not None:
            for record in items:
                self.kafka.produce(record)

    def close(self) -> None:
        """Flushes and fsyncs both files."""
        self.raw.close()
        self.quarantine.close()
