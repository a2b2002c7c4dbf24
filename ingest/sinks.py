"""Layer 3 of the ingestor: the NDJSON files and the Kafka producer, behind one queue.

Inputs: ``Record`` items put on a bounded ``asyncio.Queue`` by the read loop. Outputs:
``DATA_DIR/raw|quarantine/YYYYMMDD.ndjson`` (UTC date of receipt) and the ``ticks.raw`` /
``ticks.deadletter`` topics. The file is written first: it is the durable copy, and what a
failed Kafka delivery is re-sent from; only what the file took goes to Kafka. Kafka never
blocks the loop: ``produce`` only enqueues into librdkafka, deliveries are confirmed by a
poll thread. A file that cannot be written (disk full, read-only folder) stops the writer
with a ``StorageError`` naming the path and the errno (docs/reliability.md).
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
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

from ingest.metrics import Stats
from volpipe.config import Settings
from volpipe.dates import NS_PER_DAY, daily_file_stem
from volpipe.errors import StorageError

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
    read_ns: int  # when this process read it: the clock of the ack latency (an import's recv_ns is the recording's)


def last_record(*dirs: Path) -> dict | None:
    """The record with the highest ``ingest_seq`` in any daily NDJSON file of the folders.

    Every file is appended in ``ingest_seq`` order, so its last line holds its highest; all
    files are read, not only the newest, because an import appends to the days it recorded,
    which may be older than today's file. Reads only the end of each file. A last line
    without its newline (a crash mid-write) is cut off, so the next append starts on a clean
    line; it is logged with its size.

    Args:
        dirs: The raw and quarantine folders (missing ones are skipped).

    Returns:
        The record (a raw record or a dead letter), or None when no folder holds one yet.

    Raises:
        StorageError: A file cannot be read or cut (e.g. a read-only folder).
    """
    records = [
        _tail_record(path)
        for folder in dirs
        if folder.is_dir()
        for path in folder.glob("*.ndjson")
        if _FILE_NAME.match(path.name)
    ]
    return max((r for r in records if r is not None), key=lambda r: r["ingest_seq"], default=None)


def storage_error(path: Path, exc: OSError) -> StorageError:
    """The error that stops the ingestor, with the path and the errno's name and text."""
    name = errno.errorcode.get(exc.errno, str(exc.errno)) if exc.errno is not None else "?"
    return StorageError(f"ndjson storage failed path={path} errno={name} ({exc.strerror or exc})")


def _tail_record(path: Path) -> dict | None:
    try:
        return _read_tail_record(path)
    except OSError as exc:
        raise storage_error(path, exc) from exc


def _read_tail_record(path: Path) -> dict | None:
    with open(path, "r+b") as handle:
        lines, partial = read_tail(handle, lambda lines: bool(lines))
        if partial:
            size = handle.seek(0, os.SEEK_END)
            log.warning("truncating partial last line path=%s bytes=%d", path, partial)
            handle.truncate(size - partial)
    return orjson.loads(lines[-1]) if lines else None


def read_tail(handle: IO[bytes], enough: Callable[[list[bytes]], bool]) -> tuple[list[bytes], int]:
    """The complete lines at the end of a file, read backwards in growing chunks until
    ``enough(lines)`` holds or the file's start is reached, so a long file costs only its tail.

    Returns:
        The lines (a line the first chunk may have cut is left out) and the length of a partial
        last line (a write cut short), 0 when the file ends with a newline.
    """
    size = handle.seek(0, os.SEEK_END)
    chunk = _TAIL_BYTES
    while True:
        start = max(0, size - chunk)
        handle.seek(start)
        data = handle.read(size - start)
        complete = data.rfind(b"\n") + 1
        lines = data[:complete].splitlines()
        if start > 0:
            lines = lines[1:]
        if start == 0 or enough(lines):
            return lines, len(data) - complete
        chunk *= 4


class DailyFiles:
    """Appends lines to ``<folder>/YYYYMMDD.ndjson``, switching files at UTC midnight.

    Each ``write`` is all or nothing: the lines reach the OS, or the file is cut back to where
    it was and ``StorageError`` is raised.
    """

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.day: str | None = None
        self.handle: IO[bytes] | None = None
        self.size = 0  # of the open file, up to its last stored line

    def path_for(self, recv_ns: int) -> Path:
        """The file a record received at ``recv_ns`` goes to."""
        return self.folder / f"{daily_file_stem(recv_ns)}.ndjson"

    def write(self, recv_ns: int, data: bytes) -> None:
        """Appends ``data`` (whole lines) to the file of ``recv_ns``'s day and hands it to the OS.

        Raises:
            StorageError: The folder or the file cannot be written (disk full, read-only ...).
        """
        day = daily_file_stem(recv_ns)
        if day != self.day:
            self.close()
        path = self.folder / f"{day}.ndjson"
        try:
            if self.handle is None:
                self.folder.mkdir(parents=True, exist_ok=True)
                self.handle = open(path, "ab", buffering=1 << 20)  # noqa: SIM115 - closed by close()
                self.day = day
                self.size = self.handle.tell()
                log.info("ndjson file opened path=%s", path)
            self.handle.write(data)
            self.handle.flush()
        except OSError as exc:
            self._abandon(path)
            raise storage_error(path, exc) from exc
        self.size += len(data)

    def _abandon(self, path: Path) -> None:
        """Drops the handle and cuts off what part of the failed write reached the file."""
        handle, self.handle, self.day = self.handle, None, None
        if handle is None:
            return
        with contextlib.suppress(OSError):
            handle.close()  # its buffer holds the failed bytes: the flush fails again, the descriptor closes
        try:
            os.truncate(path, self.size)
        except OSError as exc:
            log.error(
                "could not cut the failed write off path=%s errno=%s: the next start cuts a partial last line",
                path,
                errno.errorcode.get(exc.errno or 0, exc.errno),
            )

    def close(self) -> None:
        """Flushes, fsyncs (they survive a crash of the machine) and closes the file.

        Raises:
            StorageError: The last lines could not be flushed or synced.
        """
        if self.handle is None:
            return
        path = self.folder / f"{self.day}.ndjson"
        try:
            self.handle.flush()
            os.fsync(self.handle.fileno())
            self.handle.close()
        except OSError as exc:
            self._abandon(path)
            raise storage_error(path, exc) from exc
        self.handle = None
        self.day = None


class KafkaSink:
    """An idempotent, compressed producer whose deliveries a background thread confirms.

    Args:
        settings: Brokers, topics, buffer bound and timeouts.
        on_delivered: Called from the poll thread with the record's ``read_ns`` on success.
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
                on_delivery=functools.partial(
                    self._delivery, record.ingest_seq, record.recv_ns, record.read_ns, record.deadletter
                ),
            )
        except (BufferError, KafkaException) as exc:
            self._on_failed(record.ingest_seq, record.recv_ns, record.deadletter, f"produce: {exc}")

    def _delivery(
        self, ingest_seq: int, recv_ns: int, read_ns: int, deadletter: bool, err: KafkaError | None, _msg
    ) -> None:
        if err is None:
            self._on_delivered(read_ns)
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
    """Drains the queue: lines to the daily files first, then what they took to Kafka.

    Batches whatever is queued (up to ``batch``) into one write per file and one flush,
    which keeps the per-message cost low at tens of thousands of messages a second and
    the latency low at a hundred. Counts ``stored`` and ``unstored`` records in ``stats``.
    After a failed write it writes nothing more: the ingestor stops (docs/reliability.md).
    """

    def __init__(
        self, settings: Settings, queue: asyncio.Queue, kafka: KafkaSink | None, stats: Stats, batch: int = 2000
    ) -> None:
        self.queue = queue
        self.raw = DailyFiles(settings.raw_dir)
        self.quarantine = DailyFiles(settings.quarantine_dir)
        self.kafka = kafka
        self.stats = stats
        self.batch = batch
        self.failure: StorageError | None = None

    def path_of(self, recv_ns: int, deadletter: bool) -> Path:
        """The NDJSON file a record is in (for logs about failed deliveries)."""
        return (self.quarantine if deadletter else self.raw).path_for(recv_ns)

    async def run(self) -> None:
        """Writes until cancelled; ``drain`` handles what is queued at shutdown.

        Raises:
            StorageError: A file could not be written.
        """
        while True:
            first = await self.queue.get()
            items = [first]
            while len(items) < self.batch and not self.queue.empty():
                items.append(self.queue.get_nowait())
            self._write(items)

    def drain(self) -> None:
        """Writes everything still queued (called after the read loop stopped); after a failed
        write, only counts it as unstored."""
        items = []
        while not self.queue.empty():
            items.append(self.queue.get_nowait())
        if not items:
            return
        if self.failure is not None:
            self.stats.unstored += len(items)
            return
        self._write(items)

    def _write(self, items: list[Record]) -> None:
        groups: dict[tuple[bool, int], list[Record]] = {}  # one write per file: (dead letter, UTC day)
        for record in items:
            groups.setdefault((record.deadletter, record.recv_ns // NS_PER_DAY), []).append(record)
        stored: list[Record] = []
        try:
            for (deadletter, _), records in groups.items():
                files = self.quarantine if deadletter else self.raw
                files.write(records[0].recv_ns, b"".join([record.value + b"\n" for record in records]))
                stored += records
        except StorageError as exc:
            self.failure = exc
            self.stats.unstored += len(items) - len(stored)
            log.error("%s: stopping; records_not_stored=%d (not sent to Kafka either)", exc, len(items) - len(stored))
            raise
        finally:
            self.stats.stored += len(stored)
            if self.kafka is not None:
                for record in stored:
                    self.kafka.produce(record)

    def close(self) -> None:
        """Flushes and fsyncs both files.

        Raises:
            StorageError: A file could not be flushed or synced.
        """
        try:
            self.raw.close()
        finally:
            self.quarantine.close()
