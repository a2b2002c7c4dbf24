"""The pipeline's first featurizer as a baseline: a Python Kafka consumer recomputing features with pandas per message.

What it does (``features/featurizer.py`` of the pipeline's first version, Stage 2 of its pipeline-flow): one
confluent-kafka consumer reads raw records from ``ticks.raw``; for each ticker it appends the
tick to its product's in-memory buffer (the last 10,000 rows), recomputes the features with
pandas over the whole buffer (``midprice`` with the price as fallback, ``midprice_return`` =
``pct_change``, ``rolling_vol`` = ``rolling(FEATURE_WINDOW_SIZE).std()``, ``spread``,
``trade_intensity`` as our kernel defines it: W ticks over the seconds they span), drops the
row while a feature is NaN, publishes the newest row as JSON to ``ticks.features`` (keyed by
product) and appends the rows to a Parquet file in batches of 10,000 (pyarrow).

What it does not do: no exactly-once (offsets auto-committed, Kafka and Parquet written
independently), no state across restarts (the buffers start empty), no dedupe of redelivered
or repeated ticks, no quarantine, no Delta, none of our extra features. Timings therefore
flatter it compared with the stream, which does all of that.

Two modes on the same synthetic data as the stream benchmarks (``bench_kafka``), each with its
own Kafka broker under a temp dir:

- ``catch-up``: a backlog of N ticks, timed from the first message received to the last one
  published and written (ticks/s; compare with ``features_throughput.py --no-scoring``)::

    .venv/bin/python bench/first_featurizer.py catch-up --ticks 30000

- ``latency``: ticks stamped now at a fixed rate; latency = receive time of the feature message
  in Kafka - ``exchange_ts_ns`` (p50/p90/p99; compare with ``features_latency.py``)::

    .venv/bin/python bench/first_featurizer.py latency --rate 100 --seconds 600
"""

from __future__ import annotations

import argparse
import collections
import logging
import sys
import threading
import time
import uuid
from pathlib import Path

import numpy as np
import orjson
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from bench_kafka import consume_latencies, produce_backlog, produce_live
from confluent_kafka import Consumer, Producer

from volpipe.coinbase import parse_timestamp
from volpipe.config import Settings, parse_products
from volpipe.ops.sandbox import scratch_settings
from volpipe.ops.services import KAFKA, running
from volpipe.ops.services.kafka import create_topics

BUFFER_ROWS = 10_000  # the first version's in-memory buffer per product
PARQUET_BATCH_ROWS = 10_000
COLUMNS = ("exchange_ts_ns", "price", "best_bid", "best_ask")


class FirstFeaturizer:
    """Per-message pandas recomputation over a bounded buffer per product, two sinks."""

    def __init__(self, settings: Settings, parquet_path: Path) -> None:
        self.settings = settings
        self.window = settings.feature_window_size
        self.buffers: dict[str, dict[str, collections.deque]] = {}
        self.producer = Producer({**settings.kafka_client_config(), "queue.buffering.max.messages": 1_000_000})
        self.parquet_path = parquet_path
        self.writer: pq.ParquetWriter | None = None
        self.pending: list[dict] = []
        self.published = 0

    def features(self, product_id: str, row: tuple[int, float, float, float]) -> dict | None:
        """Appends ``row`` to the product's buffer; returns the newest feature row, None while NaN."""
        buffer = self.buffers.setdefault(product_id, {c: collections.deque(maxlen=BUFFER_ROWS) for c in COLUMNS})
        for column, value in zip(COLUMNS, row, strict=True):
            buffer[column].append(value)
        frame = pd.DataFrame({c: np.fromiter(buffer[c], float if c != "exchange_ts_ns" else np.int64) for c in COLUMNS})
        quote = frame["best_bid"].notna() & frame["best_ask"].notna()
        frame["midprice"] = ((frame["best_bid"] + frame["best_ask"]) / 2).where(quote, frame["price"])
        frame["midprice_return"] = frame["midprice"].pct_change()
        frame["rolling_vol"] = frame["midprice_return"].rolling(self.window).std()
        frame["spread"] = (frame["best_ask"] - frame["best_bid"]).where(quote, 0.0)
        span_s = frame["exchange_ts_ns"].diff(self.window) / 1e9
        frame["trade_intensity"] = (self.window / span_s).where(span_s > 0)
        newest = frame.iloc[-1]
        if newest[["midprice_return", "rolling_vol", "trade_intensity"]].isna().any():
            return None
        return {
            "timestamp": pd.Timestamp(int(newest["exchange_ts_ns"]), tz="UTC").isoformat(),
            "exchange_ts_ns": int(newest["exchange_ts_ns"]),
            "product_id": product_id,
            **{
                c: float(newest[c]) for c in ("midprice", "midprice_return", "rolling_vol", "spread", "trade_intensity")
            },
        }

    def handle(self, value: bytes) -> None:
        """One raw record: every ticker in it through the buffer, then both sinks."""
        msg = orjson.loads(value)["msg"]
        ts_ns = parse_timestamp(msg["timestamp"])  # validates the format; a bad one raises
        for event in msg.get("events", ()):
            for ticker in event.get("tickers", ()):
                row = (
                    ts_ns,
                    float(ticker["price"]),
                    float(ticker.get("best_bid") or "nan"),
                    float(ticker.get("best_ask") or "nan"),
                )
                out = self.features(ticker["product_id"], row)
                if out is not None:
                    self.publish(out)

    def publish(self, out: dict) -> None:
        """Newest row to Kafka now, to Parquet in batches."""
        while True:
            try:
                self.producer.produce(
                    self.settings.kafka_output_topic, key=out["product_id"].encode(), value=orjson.dumps(out)
                )
                break
            except BufferError:
                self.producer.poll(0.1)
        self.producer.poll(0)
        self.published += 1
        self.pending.append(out)
        if len(self.pending) >= PARQUET_BATCH_ROWS:
            self.write_parquet()

    def write_parquet(self) -> None:
        """Appends the pending rows to the Parquet file as one row group."""
        if not self.pending:
            return
        table = pa.Table.from_pylist(self.pending)
        if self.writer is None:
            self.parquet_path.parent.mkdir(parents=True, exist_ok=True)
            self.writer = pq.ParquetWriter(self.parquet_path, table.schema)
        self.writer.write_table(table)
        self.pending = []

    def close(self) -> None:
        """Flushes both sinks."""
        self.write_parquet()
        if self.writer is not None:
            self.writer.close()
        if self.producer.flush(60) != 0:
            raise RuntimeError("first featurizer: feature messages still unacknowledged after 60 s")

    def run(self, stop: threading.Event, limit: int | None = None) -> tuple[int, float]:
        """Consumes until ``stop`` or ``limit`` messages; returns (messages, seconds since the first)."""
        consumer = Consumer(
            {
                **self.settings.kafka_client_config(),
                "group.id": f"first-featurizer-{uuid.uuid4()}",
                "auto.offset.reset": "earliest",
                "fetch.wait.max.ms": 10,
            }
        )
        consumer.subscribe([self.settings.kafka_input_topic])
        consumed, began = 0, None
        try:
            while not stop.is_set() and (limit is None or consumed < limit):
                message = consumer.poll(0.1)
                if message is None:
                    continue
                value = message.value()
                if message.error() is not None or value is None:
                    raise RuntimeError(f"first featurizer: consumer error {message.error()} (value {value!r})")
                began = began or time.perf_counter()
                self.handle(value)
                consumed += 1
            self.close()
        finally:
            consumer.close()
        return consumed, time.perf_counter() - (began or time.perf_counter())


def catch_up(settings: Settings, ticks: int, products: tuple[str, ...]) -> None:
    """Backlog first (not timed), then the featurizer until it has handled every record."""
    seconds = produce_backlog(settings, ticks, products)
    print(f"produced {ticks} records in {seconds:.1f} s")
    featurizer = FirstFeaturizer(settings, settings.data_dir / "processed" / "features.parquet")
    consumed, elapsed = featurizer.run(threading.Event(), limit=ticks)
    rows = pq.ParquetFile(featurizer.parquet_path).metadata.num_rows
    print(
        f"first featurizer catch-up: {consumed} ticks in {elapsed:.1f} s = {consumed / elapsed:,.0f} ticks/s "
        f"(first message to last published and written; {featurizer.published} feature messages, "
        f"{rows} Parquet rows)"
    )


def latency(settings: Settings, rate: float, seconds: float, warmup_seconds: float) -> bool:
    """Featurizer and latency consumer running while live ticks are produced at ``rate``; False if none arrived."""
    stop = threading.Event()
    featurizer = FirstFeaturizer(settings, settings.data_dir / "processed" / "features.parquet")
    values: list[tuple[int, int]] = []
    threads = [
        threading.Thread(target=featurizer.run, args=(stop,), daemon=True),
        threading.Thread(
            target=consume_latencies, args=(settings, settings.kafka_output_topic, stop, values), daemon=True
        ),
    ]
    for thread in threads:
        thread.start()
    began_ns = time.time_ns()
    try:
        sent = produce_live(settings, rate, seconds, stop)
        time.sleep(5)  # let the last messages through
    finally:
        stop.set()
        for thread in threads:
            thread.join(30)
    lat_ms = np.array([lat for ts, lat in values if ts >= began_ns + int(warmup_seconds * 1e9)]) / 1e6
    if not lat_ms.size:
        print(
            f"first featurizer latency: no feature message after the first {warmup_seconds:.0f} s "
            f"({len(values)} in all, {sent} ticks sent): run longer",
            file=sys.stderr,
        )
        return False
    p50, p90, p99 = np.percentile(lat_ms, [50, 90, 99])
    print(
        f"first featurizer latency exchange->{settings.kafka_output_topic} over {lat_ms.size} rows "
        f"({sent} ticks sent at {rate}/s for {seconds:.0f} s, first {warmup_seconds:.0f} s ignored): "
        f"p50={p50:.0f} ms p90={p90:.0f} ms p99={p99:.0f} ms max={lat_ms.max():.0f} ms"
    )
    return True


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    modes = parser.add_subparsers(dest="mode", required=True)
    backlog = modes.add_parser("catch-up", help="throughput on a backlog of --ticks raw records")
    backlog.add_argument("--ticks", type=int, default=30_000, help="backlog size (30000: about 1 min here)")
    backlog.add_argument(
        "--products",
        type=parse_products,
        default=("BTC-USD", "ETH-USD"),
        help="comma-separated products (BTC-USD,ETH-USD)",
    )
    live = modes.add_parser("latency", help="p50/p90/p99 at a fixed rate of ticks stamped now")
    live.add_argument("--rate", type=float, default=100.0, help="ticks per second (100)")
    live.add_argument("--seconds", type=float, default=600.0, help="how long to produce (600)")
    live.add_argument("--warmup-seconds", type=float, default=30.0, help="ignored at the start (30)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    with scratch_settings("bench-first-featurizer-") as settings, running(settings, KAFKA):
        create_topics(settings)
        if args.mode == "catch-up":
            catch_up(settings, args.ticks, args.products)
        elif not latency(settings, args.rate, args.seconds, args.warmup_seconds):
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
