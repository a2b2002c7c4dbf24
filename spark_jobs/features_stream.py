"""The streaming job: Kafka ``ticks.raw`` -> features -> Delta (ticks, features, quarantine) + Kafka.

Inputs: raw records in Kafka (docs/record-format.md). Outputs: the Delta tables ``ticks``,
``features`` and ``quarantine`` under ``settings.delta_dir`` (exactly once: a batch re-run
after a crash skips the tables that committed it), and feature rows as JSON in Kafka
``ticks.features`` (at least once, published by the processor as soon as they are computed:
``spark_jobs.feature_topic``).

Read -> transform -> write. ``transform`` parses with ``volpipe.schema.parse_raw`` and
runs a thin ``transformWithStateInPandas`` processor around ``volpipe.features``, the same
code the replay runs. Start it with (docs/streaming.md)::

    source .venv/bin/activate && spark-submit $(python -m volpipe.spark submit-args) spark_jobs/features_stream.py
"""

from __future__ import annotations

import argparse
import functools
import json
import logging
import signal
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import numpy as np
import pandas as pd
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.streaming import StatefulProcessor, StatefulProcessorHandle, StreamingQuery
from pyspark.sql.types import ArrayType, DoubleType, LongType, StringType, StructField, StructType

from spark_jobs.feature_topic import FeaturePublisher
from volpipe.config import Settings
from volpipe.features import INPUT_COLUMNS, WindowState, featurize_frame
from volpipe.schema import (
    FEATURE_TABLE_COLUMNS, PROCESSOR_COLUMNS, QUARANTINE_COLUMNS, TICK_COLUMNS, nullable_ints, parse_raw,
    quarantine_output, struct_of, tick_output,
)

log = logging.getLogger(__name__)

HISTORY_LOOKBACK = 100  # commits read first when looking for a resumed batch's marker

WINDOW_STATE = StructType([StructField("mids", ArrayType(DoubleType())), StructField("ts_ns", ArrayType(LongType()))])
DEDUPE_STATE = StructType([
    StructField("last_ingest_seq", LongType()), StructField("last_ticker_idx", LongType()),
    StructField("last_conn_id", StringType()), StructField("max_sequence_num", LongType()),
])


class FeatureProcessor(StatefulProcessor):
    """Per-product state around the pure kernel; passes quarantine rows (null key) through.

    Feature rows also go straight to Kafka from here (``feature_topic``), before the batch's
    Delta commits, because that is the latency-sensitive output.
    """

    def __init__(self, window: int, publisher: FeaturePublisher | None) -> None:
        self.window = window
        self.publisher = publisher

    def init(self, handle: StatefulProcessorHandle) -> None:
        self.window_state = handle.getValueState("window", WINDOW_STATE)
        self.dedupe_state = handle.getValueState("dedupe", DEDUPE_STATE)

    def handleInputRows(self, key: Any, rows: Iterator[pd.DataFrame], timerValues: Any) -> Iterator[pd.DataFrame]:
        batch = pd.concat(list(rows), ignore_index=True)
        if key[0] is None:  # parse_raw nulls the product of every bad row
            yield quarantine_output(batch)
            return
        out, state = featurize_frame(batch[list(INPUT_COLUMNS)], self._load(), self.window)
        self.window_state.update((state.mids.tolist(), state.ts_ns.tolist()))
        self.dedupe_state.update(
            (state.last_ingest_seq, state.last_ticker_idx, state.last_conn_id, state.max_sequence_num)
        )
        if len(out):
            rows = tick_output(out)
            if self.publisher is not None:
                self.publisher.publish(rows[out["ready"].to_numpy()])
            yield rows

    def _load(self) -> WindowState:
        if not self.dedupe_state.exists():
            return WindowState()
        mids, ts_ns = self.window_state.get()
        seq, idx, conn, max_seq = self.dedupe_state.get()
        return WindowState(np.array(mids, np.float64), np.array(ts_ns, np.int64), seq, idx, conn, max_seq)

    def close(self) -> None:
        """Nothing to release: state lives in the RocksDB store. Products that stop ticking keep
        their (small, bounded) state, so a product that resumes continues its window."""


def read_raw(spark: SparkSession, settings: Settings, *, fail_on_data_loss: bool = True) -> DataFrame:
    """The Kafka source: raw record bytes in ``value``, ``topic:partition:offset`` in ``source``."""
    return (
        spark.readStream.format("kafka")
        .option("kafka.bootstrap.servers", settings.kafka_bootstrap_servers)
        .option("subscribe", settings.kafka_input_topic)
        .option("startingOffsets", "earliest")
        .option("maxOffsetsPerTrigger", settings.stream_max_offsets_per_trigger)
        .option("failOnDataLoss", str(fail_on_data_loss).lower())
        .load()
        .select("value", F.concat_ws(":", "topic", "partition", "offset").alias("source"))
    )


def transform(raw: DataFrame, window: int, publisher: FeaturePublisher | None = None) -> DataFrame:
    """Raw records -> ``PROCESSOR_COLUMNS`` rows: kind 'tick' (features null before W returns) or 'quarantine'.

    With a ``publisher``, feature rows are also published to Kafka as they are computed.
    """
    return parse_raw(raw).groupBy("product_id").transformWithStateInPandas(
        statefulProcessor=FeatureProcessor(window, publisher),
        outputStructType=struct_of(PROCESSOR_COLUMNS),
        outputMode="Append",
        timeMode="None",
    )


# Delta's own checkpoint would run inside a commit every 10 commits (1-3.5 s, the worst spike of
# the live latency); DeltaCheckpointer writes them in the background instead, and this interval
# only remains as a fallback. Statistics cover the leading key and time columns (data skipping
# for product/time filters) rather than all 26 feature columns.
TABLE_PROPERTIES = {
    "ticks": {"delta.checkpointInterval": "10000", "delta.dataSkippingNumIndexedCols": "7"},
    "features": {"delta.checkpointInterval": "10000", "delta.dataSkippingNumIndexedCols": "8"},
    "quarantine": {"delta.checkpointInterval": "10000"},
}


def table_frames(rows: DataFrame) -> dict[str, DataFrame]:
    """``PROCESSOR_COLUMNS`` rows -> what goes into each Delta table (``ticks``, ``features``, ``quarantine``)."""
    is_tick = F.col("kind") == "tick"
    return {
        "ticks": nullable_ints(rows.where(is_tick), TICK_COLUMNS),
        "features": nullable_ints(rows.where(is_tick & F.col("rolling_vol").isNotNull()), FEATURE_TABLE_COLUMNS),
        "quarantine": nullable_ints(rows.where(F.col("kind") == "quarantine"), QUARANTINE_COLUMNS)
        .withColumnRenamed("error", "reason"),
    }


def prepare_tables(spark: SparkSession, settings: Settings) -> None:
    """Creates the stream's tables (schema, ``TABLE_PROPERTIES``) if missing; sets missing properties."""
    from delta.tables import DeltaTable

    empty = spark.createDataFrame([], struct_of(PROCESSOR_COLUMNS))
    for name, frame in table_frames(empty).items():
        path = str(settings.delta_table(name))
        builder = DeltaTable.createIfNotExists(spark).location(path).addColumns(frame.schema)
        for key, value in TABLE_PROPERTIES[name].items():
            builder = builder.property(key, value)
        builder.execute()
        current = DeltaTable.forPath(spark, path).detail().first()["properties"]
        stale = {key: value for key, value in TABLE_PROPERTIES[name].items() if current.get(key) != value}
        if stale:
            pairs = ", ".join(f"'{key}' = '{value}'" for key, value in stale.items())
            spark.sql(f"ALTER TABLE delta.`{path}` SET TBLPROPERTIES ({pairs})")


class DeltaCheckpointer:
    """Writes the Delta log checkpoints of the stream's tables in a background thread.

    Readers replay the JSON commits since the last checkpoint, so checkpoints must keep coming,
    but not inside a micro-batch. A table is checkpointed once the stream has committed to it
    ``every_commits`` times since its last one (so ``quarantine``, rarely written, rarely is).
    There is no public API for it: this calls Delta's ``DeltaLog.checkpoint()`` (stable since
    Delta 0.x; tests/integration/test_stream.py checks it). A failure is logged and retried
    after the next commit; the query never waits for it.
    """

    def __init__(self, settings: Settings, every_commits: int) -> None:
        self.settings = settings
        self.every_commits = every_commits
        self._commits = dict.fromkeys(TABLE_PROPERTIES, 0)
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="delta-checkpoint")
        self._running: Future[None] | None = None

    def committed(self, spark: SparkSession, tables: list[str]) -> None:
        """Counts a commit to each of ``tables``; starts checkpointing the due ones unless a checkpoint runs."""
        for name in tables:
            self._commits[name] += 1
        due = [name for name, count in self._commits.items() if count >= self.every_commits]
        if due and (self._running is None or self._running.done()):
            self._running = self._pool.submit(self._checkpoint, spark, due)

    def _checkpoint(self, spark: SparkSession, tables: list[str]) -> None:
        began = time.perf_counter()
        delta_log = spark._jvm.org.apache.spark.sql.delta.DeltaLog  # type: ignore[union-attr]
        for name in tables:
            try:
                # The stream's own commits keep this (cached) log's snapshot current.
                delta_log.forTable(spark._jsparkSession, str(self.settings.delta_table(name))).checkpoint()
                self._commits[name] = 0
            except Exception:  # noqa: BLE001 - logged; retried after the next commit
                log.exception("Delta checkpoint failed table=%s", name)
        log.info("Delta checkpoints written tables=%s seconds=%.2f", ",".join(tables), time.perf_counter() - began)


class BatchWriter:
    """The ``foreachBatch`` sink of the three Delta tables, exactly once.

    Each Delta append records ``<app id> batch <batch id>`` as the commit's ``userMetadata``
    (see ``DESCRIBE HISTORY``). Only the first batch of a run can be one that a crashed run
    already wrote (Spark plans batch N+1 only after committing N), so only that batch looks
    the marker up and skips the tables that have it; later batches append without a lookup.
    Delta's own ``txnAppId``/``txnVersion`` would check every append, rebuilding the table
    state each time (0.4 s a commit here, docs/streaming.md).
    """

    def __init__(self, settings: Settings, tables_ready: Future[None]) -> None:
        self.settings = settings
        self.tables_ready = tables_ready
        self.checkpointer = DeltaCheckpointer(settings, settings.stream_delta_checkpoint_commits)
        self._app_id: str | None = None
        self._first_batch = True

    def app_id(self) -> str:
        """The query id persisted in the checkpoint: stable across restarts, new for a new checkpoint."""
        if self._app_id is None:
            meta = json.loads((self.settings.checkpoint("features") / "metadata").read_text())
            self._app_id = f"features-stream-{meta['id']}"
        return self._app_id

    def __call__(self, batch: DataFrame, batch_id: int) -> None:
        began = time.perf_counter()
        batch.persist()
        try:
            tables = table_frames(batch)
            counts = batch.agg(
                F.count_if(F.col("kind") == "tick").alias("ticks"),
                F.count_if((F.col("kind") == "tick") & F.col("rolling_vol").isNotNull()).alias("features"),
                F.count_if(F.col("kind") == "quarantine").alias("quarantine"),
            ).first()
            computed = time.perf_counter()
            self.tables_ready.result()  # raises what prepare_tables raised
            pending = [name for name in tables if counts[name]]
            if self._first_batch:
                pending = [name for name in pending if not self._written_before(batch.sparkSession, name, batch_id)]
            # Independent appends, run concurrently: a batch costs its slowest commit.
            writes = [functools.partial(self._append, name, tables[name], batch_id) for name in pending]
            with ThreadPoolExecutor(max_workers=max(1, len(writes))) as pool:
                for future in [pool.submit(write) for write in writes]:
                    future.result()
            self._first_batch = False
            log.info("batch written batch_id=%d ticks=%d features=%d quarantine=%d compute_s=%.2f delta_s=%.2f",
                     batch_id, counts["ticks"], counts["features"], counts["quarantine"], computed - began,
                     time.perf_counter() - computed)
        finally:
            batch.unpersist()
        self.checkpointer.committed(batch.sparkSession, pending)

    def _marker(self, batch_id: int) -> str:
        return f"{self.app_id()} batch {batch_id}"

    def _written_before(self, spark: SparkSession, name: str, batch_id: int) -> bool:
        """Whether this query's newest commit to table ``name`` is batch ``batch_id`` (or later)."""
        from delta.tables import DeltaTable

        path = str(self.settings.delta_table(name))
        if not DeltaTable.isDeltaTable(spark, path):
            return False
        table = DeltaTable.forPath(spark, path)
        ours = F.col("userMetadata").startswith(f"{self.app_id()} batch ")
        # This query is the table's usual writer: its newest commit is near the top of the log.
        newest = table.history(HISTORY_LOOKBACK).where(ours).first() or table.history().where(ours).first()
        if newest is None:
            return False
        last_batch = int(newest["userMetadata"].rsplit(" ", 1)[1])
        if last_batch >= batch_id:
            log.info("skipping Delta append already committed table=%s batch_id=%d", name, batch_id)
        return last_batch >= batch_id

    def _append(self, name: str, frame: DataFrame, batch_id: int) -> None:
        (frame.write.format("delta").mode("append")
         .option("userMetadata", self._marker(batch_id))
         .save(str(self.settings.delta_table(name))))

def write(rows: DataFrame, settings: Settings, *, trigger_seconds: float) -> StreamingQuery:
    """Starts the query: ``BatchWriter`` per micro-batch, checkpoint under ``settings.checkpoint('features')``.

    The tables are prepared while the first micro-batch computes: a cold JVM spends seconds on
    its first Delta operation, which need not delay reading and featurizing the backlog.
    """
    preparer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="prepare-tables")
    tables_ready = preparer.submit(prepare_tables, rows.sparkSession, settings)
    preparer.shutdown(wait=False)
    writer = rows.writeStream.queryName("features").foreachBatch(BatchWriter(settings, tables_ready))
    writer = writer.option("checkpointLocation", str(settings.checkpoint("features")))
    if trigger_seconds > 0:
        writer = writer.trigger(processingTime=f"{trigger_seconds} seconds")
    return writer.start()


def start(spark: SparkSession, settings: Settings, *, fail_on_data_loss: bool = True) -> StreamingQuery:
    """Read -> transform -> write with ``settings``; returns the running query."""
    raw = read_raw(spark, settings, fail_on_data_loss=fail_on_data_loss)
    publisher = FeaturePublisher(settings.kafka_bootstrap_servers, settings.kafka_output_topic,
                                 settings.producer_message_timeout_seconds)
    query = write(transform(raw, settings.feature_window_size, publisher), settings,
                  trigger_seconds=settings.stream_trigger_seconds)
    log.info("features stream started query_id=%s checkpoint=%s topic=%s window=%d", query.id,
             settings.checkpoint("features"), settings.kafka_input_topic, settings.feature_window_size)
    return query


def main(argv: list[str] | None = None) -> int:
    """Runs the stream until stopped (SIGTERM/SIGINT stop it between micro-batches)."""
    from volpipe.logs import configure_logging
    from volpipe.spark import build_spark_session

    parser = argparse.ArgumentParser(prog="spark_jobs.features_stream", description=__doc__.split("\n")[0])
    parser.add_argument("--bootstrap-servers", help="Kafka brokers (KAFKA_BOOTSTRAP_SERVERS)")
    parser.add_argument("--window", type=int, help="W, returns per window (FEATURE_WINDOW_SIZE)")
    parser.add_argument("--trigger-seconds", type=float, help="micro-batch interval, 0 = asap (STREAM_TRIGGER_SECONDS)")
    parser.add_argument("--max-offsets-per-trigger", type=int, help="(STREAM_MAX_OFFSETS_PER_TRIGGER)")
    parser.add_argument("--no-fail-on-data-loss", action="store_true",
                        help="keep running when Kafka deleted offsets the checkpoint still needs")
    parser.add_argument("--timeout-seconds", type=float, help="stop after this long (benchmarks); default: run forever")
    parser.add_argument("--ui", action="store_true", help="serve the Spark UI")
    args = parser.parse_args(argv)
    configure_logging()
    settings = Settings.from_env(
        kafka_bootstrap_servers=args.bootstrap_servers, feature_window_size=args.window,
        stream_trigger_seconds=args.trigger_seconds, stream_max_offsets_per_trigger=args.max_offsets_per_trigger,
    )
    spark = build_spark_session(settings, "volpipe-features-stream", ui=args.ui)
    query = start(spark, settings, fail_on_data_loss=not args.no_fail_on_data_loss)

    stop_requested = threading.Event()

    def request_stop(_signum: int, _frame: Any) -> None:
        # Only a flag: the main thread is inside a Py4J call (not re-entrant) or may hold a log lock.
        stop_requested.set()

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)
    deadline = time.monotonic() + (args.timeout_seconds if args.timeout_seconds else float("inf"))
    while query.isActive and not stop_requested.is_set() and time.monotonic() < deadline:
        query.awaitTermination(1.0)
    if query.isActive:
        log.info("stopping features stream signal_received=%s", stop_requested.is_set())
        query.stop()
    failure = query.exception()
    if failure is not None:
        log.error("features stream failed: %s", failure)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
