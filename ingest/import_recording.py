"""Import recordings into the pipeline: ``python -m ingest.import_recording FILE...``.

Inputs: NDJSON files of Coinbase Advanced Trade WebSocket messages recorded anywhere (one
message a line) or the ingestor's own raw and quarantine files (``{"ingest_seq":..,
"recv_ns":..,"conn_id":..,"msg":{..}}`` / dead letters). Outputs: raw records in
``data/raw/YYYYMMDD.ndjson`` and ``ticks.raw``, dead letters in ``data/quarantine`` and
``ticks.deadletter``, one manifest per file in ``data/imports/``, a final count line (JSON)
on stdout.

Every line goes through the live ingestor's own code (``Ingestor.on_frame``: the same
classifier, sequence check, ``ingest_seq`` counter, record builder and sinks), so an
imported frame is stored exactly as if it had just been received, except for its envelope:

- ``recv_ns``: the recorded envelope's ``recv_ns`` (ingestor files), else the message's own
  ``timestamp`` to the nanosecond; a line with neither takes the previous line's time (the
  import's start time for a first line). The daily file is the day of that time.
- ``conn_id``: ``import-<first 12 hex of the file's SHA-256>``, followed by ``-<recorded
  conn_id>`` for ingestor files, whose ``sequence_num`` counts per recorded connection.

The message itself (timestamp, sequence_num, prices) is stored byte for byte. A file whose
content was imported before is skipped (its manifest says so), so re-running an import
changes nothing; a file whose earlier import was interrupted is refused.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import logging
import sys
import time
from pathlib import Path

import orjson

from ingest.ingestor import Ingestor, add_settings_flags, settings_from_flags, settings_parser
from volpipe.coinbase import parse_timestamp
from volpipe.config import Settings
from volpipe.errors import PipelineError, RecordingImportError
from volpipe.logs import configure_logging
from volpipe.records import unwrap

log = logging.getLogger("ingest.import_recording")  # also when run as __main__

# Counters of one file's lines: every non-blank line is exactly one of the last four.
LINE_COUNTS = ("lines", "blank", "imported", "deadlettered", "skipped_heartbeats", "skipped_acks")
_YIELD_EVERY = 1000


def _dump(manifest: dict) -> bytes:
    return orjson.dumps(manifest, option=orjson.OPT_INDENT_2)


def recorded_time(frame: bytes) -> int | None:
    """The exchange ``timestamp`` of a message in epoch ns, or None when it has no readable one."""
    try:
        msg = orjson.loads(frame)
        return parse_timestamp(msg["timestamp"])
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError, AttributeError):
        return None


class Importer:
    """Feeds recordings through one ``Ingestor`` and keeps a manifest per file.

    Args:
        settings: The pipeline settings (paths, Kafka, products, producer bounds).
        kafka: False writes the NDJSON files only (no broker).
    """

    def __init__(self, settings: Settings, kafka: bool = True) -> None:
        self.settings = settings
        self.ingestor = Ingestor(settings, kafka=kafka)
        self.seen: set[str] = set()  # SHA-256 of the files of this run

    async def run(self, paths: list[Path]) -> list[dict]:
        """Imports ``paths`` in order; returns one result per file (its manifest).

        Files done before a failure keep their "done" manifest; the failing one stays
        "started" (a later import of it is refused until someone looks).

        Raises:
            RecordingImportError: A file cannot be read, or its earlier import was interrupted.
        """
        writer = asyncio.create_task(self.ingestor.writer.run())
        results: list[dict] = []
        try:
            for path in paths:
                results.append(await self._import(path, writer))
        finally:
            writer.cancel()
            await asyncio.gather(writer, return_exceptions=True)
            self.ingestor.close(self.settings.producer_message_timeout_seconds)
            # Only now are the files fsynced and Kafka flushed: a file is done after this.
            for manifest in results:
                if manifest["status"] == "started":
                    # Failed deliveries are logged as ingest_seq ranges per file; the files have them.
                    manifest.update(status="done", kafka_failed_in_run=self.ingestor.stats.failed)
                    self._manifest_path(manifest["sha256"]).write_bytes(_dump(manifest))
        return results

    def _manifest_path(self, digest: str) -> Path:
        return self.settings.imports_dir / f"{digest}.json"

    async def _import(self, path: Path, writer: asyncio.Task) -> dict:
        try:
            with open(path, "rb") as handle:
                digest = hashlib.file_digest(handle, "sha256").hexdigest()
        except OSError as exc:
            raise RecordingImportError(f"cannot read {path}: {exc}") from exc
        manifest_path = self._manifest_path(digest)
        if digest in self.seen:
            log.info("same content twice in this run, skipped file=%s sha256=%s", path, digest)
            return {"file": str(path), "sha256": digest, "status": "duplicate in this run"}
        self.seen.add(digest)
        if manifest_path.exists():
            previous = orjson.loads(manifest_path.read_bytes())
            if previous["status"] != "done":
                raise RecordingImportError(
                    f"{path}: an earlier import of the same content (sha256={digest}) did not finish; its records "
                    f"(conn_id {previous['conn_id']}*, ingest_seq from {previous['first_ingest_seq']}) may be partly "
                    f"stored. Remove them or keep them, then delete {manifest_path} to import the file again"
                )
            log.info(
                "already imported, skipped file=%s sha256=%s ingest_seq=%s-%s",
                path,
                digest,
                previous["first_ingest_seq"],
                previous["last_ingest_seq"],
            )
            return {**previous, "status": "already imported", "file": str(path)}
        ingestor = self.ingestor
        conn_prefix = f"import-{digest[:12]}"
        manifest = {
            "file": str(path),
            "sha256": digest,
            "conn_id": conn_prefix,
            "status": "started",
            "first_ingest_seq": ingestor.next_seq,
            "started_ns": time.time_ns(),
        }
        self.settings.imports_dir.mkdir(parents=True, exist_ok=True)
        manifest_path.write_bytes(_dump(manifest))
        log.info(
            "importing file=%s sha256=%s conn_id=%s first_ingest_seq=%d", path, digest, conn_prefix, ingestor.next_seq
        )
        before = ingestor.stats.snapshot()
        lines = blank = 0
        conn_id = None
        recv_ns = time.time_ns()
        next_progress = time.monotonic() + self.settings.metrics_log_seconds
        kafka = ingestor.kafka
        backlog = self.settings.producer_buffer_messages // 2
        with open(path, "rb") as handle:
            for line in handle:
                lines += 1
                if not line.strip():
                    blank += 1
                    continue
                envelope, frame = unwrap(line)
                wanted = conn_prefix if envelope is None else f"{conn_prefix}-{envelope.conn_id}"
                if wanted != conn_id:
                    conn_id = ingestor.new_connection(wanted)
                if envelope is not None:
                    recv_ns = envelope.recv_ns
                elif (stamp := recorded_time(frame)) is not None:
                    recv_ns = stamp
                record = ingestor.on_frame(frame, recv_ns)
                if record is not None:
                    await ingestor.queue.put(record)
                if lines % _YIELD_EVERY == 0:
                    await asyncio.sleep(0)  # let the writer drain
                    while kafka is not None and kafka.in_flight() > backlog and not writer.done():
                        await asyncio.sleep(0.05)  # Kafka is behind: do not overflow the producer
                    if writer.done():
                        writer.result()  # a write failed (disk full ...): stop loudly
                    if time.monotonic() >= next_progress:
                        next_progress += self.settings.metrics_log_seconds
                        stats = ingestor.stats
                        log.info(
                            "import progress file=%s lines=%d imported=%d deadlettered=%d delivered=%d "
                            "failed=%d in_flight=%d",
                            path,
                            lines,
                            stats.tickers - before["tickers"],
                            stats.invalid - before["invalid"],
                            stats.delivered,
                            stats.failed,
                            kafka.in_flight() if kafka else 0,
                        )
        after = ingestor.stats.snapshot()
        delta = {name: after[name] - before[name] for name in after}
        manifest.update(
            lines=lines,
            blank=blank,
            imported=delta["tickers"],
            deadlettered=delta["invalid"],
            skipped_heartbeats=delta["heartbeats"],
            skipped_acks=delta["acks"],
            gaps=delta["gaps"],
            repeats=delta["repeats"],
            last_ingest_seq=ingestor.next_seq - 1,
        )
        log.info("imported file=%s %s", path, " ".join(f"{k}={manifest[k]}" for k in (*LINE_COUNTS, "gaps", "repeats")))
        return manifest


def build_parser() -> argparse.ArgumentParser:
    """The ``python -m ingest.import_recording`` command line; flags override the environment."""
    parser = settings_parser(
        "python -m ingest.import_recording",
        "Import recorded Coinbase WebSocket messages (one a line) or the ingestor's raw/quarantine "
        "NDJSON into data/raw + ticks.raw (dead letters: data/quarantine + ticks.deadletter), keeping the "
        "recorded timestamps and sequence numbers. Re-importing a file is a no-op. See docs/operations.md.",
    )
    parser.add_argument("files", nargs="+", type=Path, metavar="FILE", help="NDJSON recordings, imported in order")
    add_settings_flags(parser, "comma-separated products to accept (PRODUCT_IDS); others are dead letters")
    parser.add_argument("--no-kafka", action="store_true", help="write NDJSON only (produce later with ingest.resend)")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Imports the files; prints ``{"files": [...], "total": {...}}``; exit 1 if anything failed."""
    args = build_parser().parse_args(argv)
    configure_logging()
    try:
        settings = settings_from_flags(args)
        importer = Importer(settings, kafka=not args.no_kafka)
        results = asyncio.run(importer.run(args.files))
    except PipelineError as exc:
        log.error("import stopped: %s", exc)
        return 1
    total = importer.ingestor.stats.snapshot()
    print(orjson.dumps({"files": results, "total": total}).decode(), flush=True)
    if total["failed"]:
        log.error(
            "kafka did not take %d records; re-send them with python -m ingest.resend (ranges logged above)",
            total["failed"],
        )
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
