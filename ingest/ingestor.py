"""The ingestor: Coinbase ticker frames -> Kafka ``ticks.raw`` + ``data/raw/YYYYMMDD.ndjson``.

Inputs: Settings (URL, products, Kafka, paths, timeouts). Outputs: raw records for every
ticker frame, dead letters for every rejected frame, metrics (Prometheus on METRICS_PORT and
a one-line summary every METRICS_LOG_SECONDS) and, on SIGINT/SIGTERM, flushed files, a
bounded producer flush and a final count line on stdout. Heartbeats and subscription acks
are counted, not stored: they carry no market data (see docs/ingest.md).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any

import orjson
from confluent_kafka import KafkaException
from prometheus_client import start_http_server

from ingest.connection import Feed
from ingest.metrics import Metrics
from ingest.protocol import HEARTBEAT, SUBSCRIPTIONS, TICKER, Accepted, SequenceTracker, classify, subscribe_messages
from ingest.resend import unacknowledged
from ingest.sinks import KafkaSink, Record, Writer, last_record
from volpipe.config import Settings, describe, parse_products
from volpipe.errors import PipelineError
from volpipe.logs import configure_logging
from volpipe.records import deadletter_record, raw_record

log = logging.getLogger(__name__)

QUEUE_SIZE = 100_000
# On start, the last records of the files are checked against Kafka: a killed run may have
# written some it never had acknowledged. More than this many in flight at a crash (a broker
# outage of minutes, then a kill) needs `python -m ingest.resend` for the older ones.
RECHECK_RECORDS = 100_000
# The settings the ingestor reads, listed in its --help.
ENV_GROUPS = ("storage", "logging", "kafka", "ingest")


class Ingestor:
    """Accounts for every frame; owns the queue, the sinks and the counters.

    Args:
        settings: The pipeline settings.
        kafka: False runs NDJSON only (diagnostics); the product always uses Kafka.
    """

    def __init__(self, settings: Settings, kafka: bool = True) -> None:
        self.settings = settings
        self.products = frozenset(settings.product_ids)
        self.resumed_after = last_record(settings.raw_dir, settings.quarantine_dir)
        self.next_seq = 0 if self.resumed_after is None else self.resumed_after["ingest_seq"] + 1
        self.conn_prefix = f"c{time.time_ns() // 1_000_000}"
        self.conn_count = 0
        self.conn_id = ""
        self.subscribed = False
        self.abandon: str | None = None
        self.tracker = SequenceTracker()
        self.failed_seqs: dict[str, list[int]] = {}  # written by the poll thread, logged by the loop
        self.failed_lock = threading.Lock()
        self.queue: asyncio.Queue = asyncio.Queue(QUEUE_SIZE)
        self.kafka = KafkaSink(settings, self._delivered, self._failed) if kafka else None
        self.metrics = Metrics(self.kafka.in_flight if self.kafka else lambda: 0)
        self.stats = self.metrics.stats
        self.writer = Writer(settings, self.queue, self.kafka, self.stats)
        self.registry = self.metrics.registry
        log.info("ingestor ready next_ingest_seq=%d products=%s", self.next_seq, ",".join(settings.product_ids))

    # --- the hot path, called by the read loop for every frame ---

    def new_connection(self, conn_id: str | None = None) -> str:
        """Starts a connection's accounting (fresh sequence check); returns its conn_id.

        Args:
            conn_id: The id to record (an import names its source); default: the next
                ``c<start ms>-<n>`` of this process.
        """
        self.conn_count += 1
        self.conn_id = conn_id or f"{self.conn_prefix}-{self.conn_count}"
        self.subscribed = False
        self.abandon = None
        self.tracker = SequenceTracker()
        return self.conn_id

    def on_disconnect(self, reason: str) -> None:
        """Counts a lost connection (the connection layer logs the reason)."""
        self.stats.reconnects += 1

    def on_oversized(self, detail: str) -> None:
        """Counts and logs a message the WebSocket refused as too big; the feed reconnects."""
        self.stats.oversized += 1
        log.error(
            "oversized message dropped conn_id=%s limit_bytes=%d (WS_MAX_MESSAGE_BYTES) detail=%r: reconnecting",
            self.conn_id,
            self.settings.ws_max_message_bytes,
            detail,
        )

    def on_frame(self, frame: bytes, recv_ns: int | None = None) -> Record | None:
        """Classifies and counts one frame; returns its raw record or dead letter, if it has one.

        Args:
            frame: The exchange message as received.
            recv_ns: When it was received; default now (an import passes the recorded time).
        """
        read_ns = time.time_ns()
        if recv_ns is None:
            recv_ns = read_ns
        stats = self.stats
        stats.messages += 1
        result = classify(frame, self.products)
        seq = result.sequence_num
        if seq is not None:
            missing, repeat = self.tracker.observe(seq)
            if missing:
                stats.gaps += missing
                log.warning("sequence gap conn_id=%s missing=%d before sequence_num=%d", self.conn_id, missing, seq)
            if repeat:
                stats.repeats += 1
                log.warning("sequence repeat conn_id=%s sequence_num=%d", self.conn_id, seq)
        ingest_seq = self.next_seq
        if type(result) is Accepted:
            if result.kind == TICKER:
                self.subscribed = True
                stats.tickers += 1
                self.next_seq += 1
                value = raw_record(ingest_seq, recv_ns, self.conn_id, frame)
                return Record(False, result.product_ids[0].encode(), value, ingest_seq, recv_ns, read_ns)
            if result.kind == HEARTBEAT:
                stats.heartbeats += 1
            elif result.kind == SUBSCRIPTIONS and result.body is not None:
                self._ack(result.body)
            return None
        stats.invalid += 1
        if result.exchange_error:
            stats.exchange_errors += 1
            log.error("exchange error conn_id=%s %s", self.conn_id, result.reason)
            if not self.subscribed:  # e.g. "Failed to subscribe": heartbeats alone would hide it
                self.abandon = f"exchange error before the ticker subscription worked: {result.reason}"
        else:
            log.warning("rejected ingest_seq=%d conn_id=%s reason=%s", ingest_seq, self.conn_id, result.reason)
        self.next_seq += 1
        value = deadletter_record(ingest_seq, recv_ns, self.conn_id, result.reason, frame)
        return Record(True, None, value, ingest_seq, recv_ns, read_ns)

    def _ack(self, body: dict) -> None:
        self.stats.acks += 1
        events = orjson.dumps(body["events"]).decode()
        subscribed: set[str] = set()
        for event in body["events"]:
            subscriptions = event.get("subscriptions")
            tickers = subscriptions.get(TICKER) if isinstance(subscriptions, dict) else None
            if isinstance(tickers, list):
                subscribed.update(p for p in tickers if isinstance(p, str))
        if subscribed:
            self.subscribed = True
        missing = self.products - subscribed
        if subscribed and missing:
            log.warning("ack lacks products conn_id=%s missing=%s events=%s", self.conn_id, sorted(missing), events)
        else:
            log.info("subscribed conn_id=%s events=%s", self.conn_id, events)

    # --- delivery reports, called from the Kafka poll thread ---

    def _delivered(self, read_ns: int) -> None:
        self.metrics.delivered(time.time_ns() - read_ns)

    def _failed(self, ingest_seq: int, recv_ns: int, deadletter: bool, error: str) -> None:
        self.stats.failed += 1
        path = str(self.writer.path_of(recv_ns, deadletter))
        with self.failed_lock:
            self.failed_seqs.setdefault(path, []).append(ingest_seq)
        if self.stats.failed <= 20:  # the rest are summarised as ranges by log_failed()
            log.error("kafka delivery failed ingest_seq=%d file=%s error=%s", ingest_seq, path, error)

    def log_failed(self) -> None:
        """Logs every undelivered ingest_seq, as ranges per file, so they can be re-sent."""
        with self.failed_lock:
            failed, self.failed_seqs = self.failed_seqs, {}
        for path, seqs in failed.items():
            log.error("kafka undelivered file=%s count=%d ingest_seq=%s", path, len(seqs), _ranges(sorted(seqs)))

    # --- lifecycle ---

    def summary(self) -> str:
        """The one-line summary: every counter, in-flight records and ack latency."""
        return self.metrics.summary()

    async def _log_summaries(self) -> None:
        while True:
            await asyncio.sleep(self.settings.metrics_log_seconds)
            log.info("summary %s", self.summary())
            self.log_failed()

    async def run(self, stop: asyncio.Event) -> dict:
        """Ingests until ``stop`` is set, then shuts down cleanly; returns the final counts.

        Raises:
            ExhaustedRetries: Reconnecting gave up (only with RECONNECT_MAX_ATTEMPTS > 0).
        """
        if self.resumed_after is not None:
            self._log_resume(self.resumed_after)
            if self.kafka is not None:
                self._resend_unacknowledged(self.kafka, self.resumed_after["ingest_seq"])
        if self.settings.metrics_port:
            start_http_server(self.settings.metrics_port, self.settings.metrics_host, registry=self.registry)
            log.info("metrics on host=%s port=%d", self.settings.metrics_host, self.settings.metrics_port)
        feed = Feed(self.settings, subscribe_messages(self.settings.product_ids), self, self.queue)
        writer = asyncio.create_task(self.writer.run())
        tasks = [writer, asyncio.create_task(self._log_summaries())]
        feed_task = asyncio.create_task(feed.run())
        stopper = asyncio.create_task(stop.wait())
        try:
            await asyncio.wait([feed_task, stopper, writer], return_when=asyncio.FIRST_COMPLETED)
            for task in (feed_task, writer):
                if task.done():
                    task.result()  # ExhaustedRetries, or a writer failure (disk full ...): stop loudly
        finally:
            for pending in (feed_task, stopper, *tasks):
                pending.cancel()
            await asyncio.gather(feed_task, stopper, *tasks, return_exceptions=True)
            self.close(self.settings.shutdown_flush_seconds)
        return self.final_counts()

    @staticmethod
    def _log_resume(last: dict) -> None:
        """The gap a restart leaves, said once: Coinbase has no replay, and its ``sequence_num``
        restarts on every connection, so no counter can tell how many messages it holds."""
        log.warning(
            "resuming after the last stored record ingest_seq=%d conn_id=%s sequence_num=%s stored_s_ago=%.1f: "
            "what the exchange sent after it on that connection, and while no ingestor ran, is lost",
            last["ingest_seq"],
            last["conn_id"],
            (last.get("msg") or {}).get("sequence_num"),
            (time.time_ns() - last["recv_ns"]) / 1e9,
        )

    def _resend_unacknowledged(self, kafka: KafkaSink, last_seq: int) -> None:
        """Re-sends what a killed run wrote but Kafka lacks, before any new record is produced,
        so every partition stays in ingest_seq order."""
        first = max(0, last_seq - RECHECK_RECORDS + 1)
        try:
            missing = unacknowledged(self.settings, last_seq, RECHECK_RECORDS)
        except KafkaException as exc:
            log.error(
                "could not check ingest_seq=%d-%d against Kafka (%s): re-send any it lacks with "
                "python -m ingest.resend FILE RANGE",
                first,
                last_seq,
                exc,
            )
            return
        for record in missing:
            kafka.produce(record)
        self.stats.resent += len(missing)
        if missing:
            log.warning(
                "re-sent records=%d ingest_seq=%s: stored by the previous run, not in Kafka",
                len(missing),
                _ranges([record.ingest_seq for record in missing]),
            )
        else:
            log.info("checked ingest_seq=%d-%d: all in Kafka", first, last_seq)

    def final_counts(self) -> dict[str, float | int | None]:
        """Every counter plus receive-to-ack latency percentiles (ms) of recent records."""
        latency = {f"ack_p{q}_ms": self.stats.latency_ms(q) for q in (50, 99)}
        return {**self.stats.snapshot(), **latency, "ack_max_ms": self.stats.latency_ms(100)}

    def close(self, flush_seconds: float) -> None:
        """Writes what is queued, fsyncs the files, waits up to ``flush_seconds`` for Kafka.

        After a failed write, what is queued is counted as unstored instead; what was stored
        still goes to Kafka.

        Raises:
            StorageError: The files could not take what was queued, or be synced.
        """
        try:
            self.writer.drain()
            self.writer.close()
            log.info("ndjson flushed and fsynced records=%d", self.stats.stored)
        finally:
            if self.kafka is not None:
                left = self.kafka.close(flush_seconds)
                if left:
                    log.error("kafka: %d records undelivered after %.0fs", left, flush_seconds)
                self.log_failed()
            log.info("final %s", self.summary())


def _ranges(seqs: list[int]) -> str:
    """``[1, 2, 3, 7]`` -> ``"1-3,7"``."""
    parts: list[str] = []
    start: int | None = seqs[0]
    for prev, cur in zip(seqs, [*seqs[1:], None], strict=True):
        if cur != prev + 1:
            parts.append(f"{start}-{prev}" if prev != start else str(start))
            start = cur
    return ",".join(parts)


def settings_parser(prog: str, description: str) -> argparse.ArgumentParser:
    """A command line of the ingest path (the ingestor, an import): its environment listed in the epilog."""
    return argparse.ArgumentParser(
        prog=prog,
        description=description,
        epilog="Environment (flags win):\n" + "\n".join(f"  {e}={d!r}: {doc}" for e, d, doc in describe(*ENV_GROUPS)),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )


def add_settings_flags(parser: argparse.ArgumentParser, products_help: str) -> None:
    """``--products``, ``--bootstrap-servers``, ``--data-dir``: what the ingestor and an import override."""
    parser.add_argument("--products", type=parse_products, help=products_help)
    parser.add_argument("--bootstrap-servers", dest="kafka_bootstrap_servers", help="Kafka (KAFKA_BOOTSTRAP_SERVERS)")
    parser.add_argument("--data-dir", help="runtime data root (PIPELINE_DATA_DIR)")


def settings_from_flags(args: argparse.Namespace, **overrides: Any) -> Settings:
    """The settings, with the flags of ``add_settings_flags`` and ``overrides`` (None: the environment's) winning.

    Raises:
        ConfigError: A variable is malformed.
    """
    data_dir = Path(args.data_dir).resolve() if args.data_dir else None
    return Settings.from_env(
        product_ids=args.products, kafka_bootstrap_servers=args.kafka_bootstrap_servers, data_dir=data_dir, **overrides
    )


def build_parser() -> argparse.ArgumentParser:
    """The ``python -m ingest`` command line; flags override the environment."""
    parser = settings_parser(
        "python -m ingest", "Coinbase Advanced Trade ticker ingestor: WebSocket -> Kafka ticks.raw + daily NDJSON."
    )
    parser.add_argument("--url", dest="coinbase_ws_url", help="exchange WebSocket URL (COINBASE_WS_URL)")
    add_settings_flags(parser, "comma-separated product ids (PRODUCT_IDS)")
    parser.add_argument("--stale-feed-seconds", type=float, help="silence that means a dead feed")
    parser.add_argument("--metrics-port", type=int, help="Prometheus port, 0 = off (METRICS_PORT)")
    parser.add_argument("--no-kafka", action="store_true", help="write NDJSON only (diagnostics)")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Runs the ingestor until SIGINT/SIGTERM; exit 0 after a clean shutdown."""
    args = build_parser().parse_args(argv)
    configure_logging()
    try:
        settings = settings_from_flags(
            args,
            coinbase_ws_url=args.coinbase_ws_url,
            stale_feed_seconds=args.stale_feed_seconds,
            metrics_port=args.metrics_port,
        )
        counts = asyncio.run(_run(settings, kafka=not args.no_kafka))
    except PipelineError as exc:
        log.error("ingestor stopped: %s", exc)
        return 1
    print(orjson.dumps({"final": counts}).decode(), flush=True)
    return 0


async def _run(settings: Settings, kafka: bool) -> dict:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    ingestor = Ingestor(settings, kafka=kafka)
    return await ingestor.run(stop)


if __name__ == "__main__":
    sys.exit(main())
