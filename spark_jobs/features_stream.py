"""The streaming job: Kafka ``ticks.raw`` -> features and live predictions -> Delta + Kafka.

Inputs: raw records in Kafka (docs/record-format.md) and the registered ``champion`` model.
Outputs: the Delta tables ``ticks``, ``features``, ``quarantine`` and ``predictions_live``
under ``settings.delta_dir`` (exactly once, written by ``spark_jobs.delta_sink``), and feature
rows and predictions as JSON in Kafka ``ticks.features`` and ``ticks.predictions`` (at least
once, published by the processor as soon as they are computed: ``spark_jobs.kafka_rows``).
Scoring: ``spark_jobs.live_scoring``.

Read -> transform -> write. ``transform`` parses with ``volpipe.schema.parse_raw`` and
runs a thin ``transformWithStateInPandas`` processor around ``volpipe.features``, the same
code the replay runs. Start it with (docs/streaming.md)::

    source .venv/bin/activate && spark-submit $(python -m volpipe.spark submit-args) spark_jobs/features_stream.py
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pandas as pd
from prometheus_client import start_http_server
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.streaming import StatefulProcessor, StatefulProcessorHandle, StreamingQuery
from pyspark.sql.types import ArrayType, DoubleType, LongType, StringType, StructField, StructType

from spark_jobs.delta_sink import BatchWriter, prepare_tables
from spark_jobs.kafka_rows import RowPublisher
from spark_jobs.live_scoring import LiveScorer, LiveScoring
from volpipe.config import Settings
from volpipe.errors import PipelineError
from volpipe.features import FEATURE_COLUMNS, INPUT_COLUMNS, WindowState, featurize_frame
from volpipe.schema import parse_raw, struct_of
from volpipe.tables import (
    FEATURE_TABLE_COLUMNS,
    KERNEL_TABLES,
    PREDICTION_KEYS,
    PREDICTION_MESSAGE_COLUMNS,
    PROCESSOR_COLUMNS,
    STREAM_TABLES,
    check_table,
)

log = logging.getLogger(__name__)

WINDOW_STATE = StructType([StructField("mids", ArrayType(DoubleType())), StructField("ts_ns", ArrayType(LongType()))])
DEDUPE_STATE = StructType(
    [
        StructField("last_ingest_seq", LongType()),
        StructField("last_ticker_idx", LongType()),
        StructField("last_conn_id", StringType()),
        StructField("max_sequence_num", LongType()),
    ]
)


def tick_output(rows: pd.DataFrame) -> pd.DataFrame:
    """Kernel output (``featurize_frame``) -> ``PROCESSOR_COLUMNS`` rows of kind 'tick' (unscored).

    Built column by column without consolidating pandas blocks: ``assign`` and a column
    selection copied the whole frame twice, per 500k-row catch-up batch a measurable share.
    """
    n = len(rows)
    added = {
        "kind": np.full(n, "tick", object),
        "produced_ns": np.full(n, time.time_ns(), np.int64),
        "probability": np.full(n, np.nan),
        "predicted_label": np.full(n, -1, np.int32),
        "error": np.full(n, None, object),
        "raw": np.full(n, None, object),
        "source": np.full(n, None, object),
    }
    return pd.DataFrame(
        {name: added[name] if name in added else rows[name].to_numpy() for name in PROCESSOR_COLUMNS}, copy=False
    )


def quarantine_output(rows: pd.DataFrame) -> pd.DataFrame:
    """Parsed bad rows -> ``PROCESSOR_COLUMNS`` rows of kind 'quarantine' (features null)."""
    out = rows.assign(
        kind="quarantine",
        produced_ns=np.full(len(rows), time.time_ns(), np.int64),
        probability=np.nan,
        predicted_label=np.int32(-1),
    )
    for name in FEATURE_COLUMNS:
        out[name] = False if name == "mid_fallback" else np.nan
    return out[list(PROCESSOR_COLUMNS)]


def _spread(values: np.ndarray, mask: np.ndarray, fill: float) -> np.ndarray:
    """``values`` at the positions where ``mask`` is true, ``fill`` elsewhere."""
    if mask.all():
        return values
    out = np.full(len(mask), fill, values.dtype)
    out[mask] = values
    return out


class FeatureProcessor(StatefulProcessor):
    """Per-product state around the pure kernel; passes quarantine rows (null key) through.

    Feature rows are scored with the batch's pinned model (``live_scoring``), and both go
    straight to Kafka from here (``kafka_rows``), before the batch's Delta commits, because
    those are the latency-sensitive outputs. Features are published before scoring starts.
    """

    def __init__(self, window: int, publisher: RowPublisher, topics: tuple[str, str], scorer: LiveScorer) -> None:
        self.window = window
        self.publisher = publisher
        self.features_topic, self.predictions_topic = topics
        self.scorer = scorer

    def init(self, handle: StatefulProcessorHandle) -> None:
        self.window_state = handle.getValueState("window", WINDOW_STATE)
        self.dedupe_state = handle.getValueState("dedupe", DEDUPE_STATE)
        self.publisher.open()
        self.scorer.open()

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
            output = tick_output(out)
            ready = out["ready"].to_numpy()
            features = output if ready.all() else output[ready]  # after a product's first W rows: all of them
            self.publisher.produce(self.features_topic, features, FEATURE_TABLE_COLUMNS)
            scored = self.scorer.score(features) if ready.any() else None
            model = self.scorer.model  # set whenever score() returns scores
            if scored is not None and model is not None:
                probability, label = scored
                output["probability"] = _spread(probability, ready, np.nan)
                output["predicted_label"] = _spread(label, ready, -1)
                self.publisher.produce(
                    self.predictions_topic,
                    pd.DataFrame(
                        {
                            **{name: features[name].to_numpy() for name in PREDICTION_KEYS},
                            "probability": probability,
                            "predicted_label": label,
                            "threshold": model.threshold,
                            "model_name": model.name,
                            "model_version": model.version,
                        }
                    ),
                    PREDICTION_MESSAGE_COLUMNS,
                )
            self.publisher.flush()
            yield output

    def _load(self) -> WindowState:
        window, dedupe = self.window_state.get(), self.dedupe_state.get()
        if window is None or dedupe is None:  # a new product (handleInputRows writes both or neither)
            return WindowState()
        mids, ts_ns = window
        seq, idx, conn, max_seq = dedupe
        return WindowState(np.array(mids, np.float64), np.array(ts_ns, np.int64), seq, idx, conn, max_seq)

    def close(self) -> None:
        """Nothing to release: state lives in the RocksDB store. Products that stop ticking keep
        their (small, bounded) state, so a product that resumes continues its window."""


def read_raw(spark: SparkSession, settings: Settings, *, fail_on_data_loss: bool = True) -> DataFrame:
    """The Kafka source: raw record bytes in ``value``, ``topic:partition:offset`` in ``source``."""
    return (
        spark.readStream.format("kafka")
        .options(**settings.spark_kafka_options())
        .option("subscribe", settings.kafka_input_topic)
        .option("startingOffsets", "earliest")
        .option("maxOffsetsPerTrigger", settings.stream_max_offsets_per_trigger)
        .option("failOnDataLoss", str(fail_on_data_loss).lower())
        .load()
        .select("value", F.concat_ws(":", "topic", "partition", "offset").alias("source"))
    )


def transform(
    raw: DataFrame, window: int, publisher: RowPublisher, topics: tuple[str, str], scorer: LiveScorer
) -> DataFrame:
    """Raw records -> ``PROCESSOR_COLUMNS`` rows: kind 'tick' (features null before W returns) or 'quarantine'.

    Feature rows and their predictions are also published to Kafka ``topics`` (features,
    predictions) by ``publisher`` as they are computed.
    """
    return (
        parse_raw(raw)
        .groupBy("product_id")
        .transformWithStateInPandas(
            statefulProcessor=FeatureProcessor(window, publisher, topics, scorer),
            outputStructType=struct_of(PROCESSOR_COLUMNS),
            outputMode="Append",
            timeMode="None",
        )
    )


def write(
    rows: DataFrame, settings: Settings, *, trigger_seconds: float, scoring: LiveScoring | None = None
) -> StreamingQuery:
    """Starts the query: ``BatchWriter`` per micro-batch, checkpoint under ``settings.checkpoint('features')``.

    The tables are prepared while the first micro-batch computes: a cold JVM spends seconds on
    its first Delta operation, which need not delay reading and featurizing the backlog.
    """
    preparer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="prepare-tables")
    tables_ready = preparer.submit(prepare_tables, rows.sparkSession, settings)
    preparer.shutdown(wait=False)
    writer = rows.writeStream.queryName("features").foreachBatch(BatchWriter(settings, tables_ready, scoring))
    writer = writer.option("checkpointLocation", str(settings.checkpoint("features")))
    if trigger_seconds > 0:
        writer = writer.trigger(processingTime=f"{trigger_seconds} seconds")
    return writer.start()


def start(
    spark: SparkSession, settings: Settings, *, fail_on_data_loss: bool = True, scoring: LiveScoring | None = None
) -> StreamingQuery:
    """Read -> transform -> write with ``settings``; returns the running query.

    With ``scoring`` (started by the caller), feature rows are scored live with the model it pins.

    Raises:
        KernelMismatch: ``features`` holds rows of another W or kernel version.
        TableLayoutError: A table of the stream has an older layout.
    """
    for table in STREAM_TABLES:  # delta-rs reads, milliseconds: refuse before anything runs
        check_table(settings.delta_table(table), settings.feature_window_size if table in KERNEL_TABLES else None)
    raw = read_raw(spark, settings, fail_on_data_loss=fail_on_data_loss)
    publisher = RowPublisher(settings.kafka_client_config(), settings.producer_message_timeout_seconds)
    topics = (settings.kafka_output_topic, settings.kafka_predictions_topic)
    scorer = scoring.scorer() if scoring else LiveScorer(None)
    query = write(
        transform(raw, settings.feature_window_size, publisher, topics, scorer),
        settings,
        trigger_seconds=settings.stream_trigger_seconds,
        scoring=scoring,
    )
    log.info(
        "features stream started query_id=%s checkpoint=%s topic=%s window=%d scoring=%s",
        query.id,
        settings.checkpoint("features"),
        settings.kafka_input_topic,
        settings.feature_window_size,
        "on" if scoring else "off",
    )
    return query


class _JvmSignalForwarder:
    """A JVM SIGTERM handler (``sun.misc.SignalHandler``, called back over Py4J) that asks for a stop.

    Under spark-submit the JVM is the parent: a SIGTERM to it would run its shutdown hooks,
    which stop the SparkContext and abort the micro-batch in flight, then leave this Python
    driver orphaned. Replacing its handler turns the signal into the same flag the driver's
    own handler sets.
    """

    def __init__(self, stop: threading.Event) -> None:
        self.stop = stop

    def handle(self, sig: Any) -> None:
        log.info("features stream: the JVM received SIG%s", sig.getName())
        self.stop.set()

    class Java:
        implements: ClassVar[list[str]] = ["sun.misc.SignalHandler"]


def _forward_jvm_signals(spark: SparkSession, stop: threading.Event) -> None:
    """SIGTERM to the JVM asks this driver for a stop; SIGINT is ignored by the JVM and so by the
    Python workers it starts from now on (ignored dispositions are inherited). A terminal's
    Ctrl-C reaches the whole process group: this driver takes it, and a worker the JVM was
    just starting (transformWithState's) must not die of it and fail the batch in flight."""
    from pyspark.java_gateway import ensure_callback_server_started

    gateway = spark.sparkContext._gateway
    ensure_callback_server_started(gateway)
    jvm = spark.sparkContext._jvm
    if jvm is None:  # set while a context runs
        raise RuntimeError("the SparkContext has no JVM view: stopped?")
    jvm.sun.misc.Signal.handle(jvm.sun.misc.Signal("TERM"), _JvmSignalForwarder(stop))
    jvm.sun.misc.Signal.handle(jvm.sun.misc.Signal("INT"), jvm.sun.misc.SignalHandler.SIG_IGN)


def _last_batch(folder: Path) -> int:
    ids = [int(path.name) for path in folder.glob("[0-9]*") if path.name.isdigit()]
    return max(ids, default=-1)


def _stop_after_batch_in_flight(query: StreamingQuery, settings: Settings) -> bool:
    """Lets the micro-batch in flight commit, then stops the query.

    ``query.stop()`` interrupts a running batch, which could leave some of its Delta tables
    committed and others not until the next start. A batch is in flight when the checkpoint
    has its ``offsets/`` file but not yet its ``commits/`` file (written after every table of
    it committed). After STREAM_STOP_TIMEOUT_SECONDS it is interrupted anyway.

    The interrupt cancels the batch's Spark job. A batch whose job has returned its rows is
    past that point: its Delta appends run in this driver's Python (delta-rs), which a JVM
    interrupt does not reach, so they finish and Spark still writes ``commits/N``.

    Returns:
        Whether a batch was interrupted (redone on the next start).
    """
    checkpoint = settings.checkpoint("features")
    in_flight = _last_batch(checkpoint / "offsets")
    deadline = time.monotonic() + settings.stream_stop_timeout_seconds
    while query.isActive and _last_batch(checkpoint / "commits") < in_flight:
        if time.monotonic() > deadline:
            log.warning(
                "batch_id=%d still running after STREAM_STOP_TIMEOUT_SECONDS=%.0f: interrupting it",
                in_flight,
                settings.stream_stop_timeout_seconds,
            )
            query.stop()
            if _last_batch(checkpoint / "commits") >= in_flight:
                log.info("batch_id=%d was already writing its Delta tables: it committed before the stop", in_flight)
                return False
            return True
        time.sleep(0.1)
    # A batch planned after the check is interrupted in its first moments, before any Delta
    # commit (those come after its compute): it is redone on the next start.
    query.stop()
    return False


def main(argv: list[str] | None = None) -> int:
    """Runs the stream until stopped (SIGTERM/SIGINT: the batch in flight commits, then it stops)."""
    from volpipe.logs import configure_logging
    from volpipe.spark import build_spark_session

    parser = argparse.ArgumentParser(prog="spark_jobs.features_stream", description=__doc__.split("\n")[0])
    parser.add_argument("--bootstrap-servers", help="Kafka brokers (KAFKA_BOOTSTRAP_SERVERS)")
    parser.add_argument("--window", type=int, help="W, returns per window (FEATURE_WINDOW_SIZE)")
    parser.add_argument("--trigger-seconds", type=float, help="micro-batch interval, 0 = asap (STREAM_TRIGGER_SECONDS)")
    parser.add_argument("--max-offsets-per-trigger", type=int, help="(STREAM_MAX_OFFSETS_PER_TRIGGER)")
    parser.add_argument(
        "--no-fail-on-data-loss",
        action="store_true",
        help="keep running when Kafka deleted offsets the checkpoint still needs",
    )
    parser.add_argument("--timeout-seconds", type=float, help="stop after this long (benchmarks); default: run forever")
    parser.add_argument("--ui", action="store_true", help="serve the Spark UI")
    parser.add_argument("--no-scoring", action="store_true", help="features only, no live predictions (STREAM_SCORING)")
    parser.add_argument(
        "--stop-timeout-seconds",
        type=float,
        help="how long a stop waits for the batch in flight (STREAM_STOP_TIMEOUT_SECONDS)",
    )
    args = parser.parse_args(argv)
    configure_logging()
    settings = Settings.from_env(
        kafka_bootstrap_servers=args.bootstrap_servers,
        feature_window_size=args.window,
        stream_trigger_seconds=args.trigger_seconds,
        stream_max_offsets_per_trigger=args.max_offsets_per_trigger,
        stream_scoring=False if args.no_scoring else None,
        stream_stop_timeout_seconds=args.stop_timeout_seconds,
    )
    spark = build_spark_session(settings, "volpipe-features-stream", ui=args.ui)
    scoring = LiveScoring(spark, settings) if settings.stream_scoring else None
    if scoring:
        scoring.start()
        if settings.stream_metrics_port:
            start_http_server(settings.stream_metrics_port, addr="127.0.0.1", registry=scoring.metrics.registry)
            log.info("stream metrics on 127.0.0.1:%d", settings.stream_metrics_port)
    stop_requested = threading.Event()

    def request_stop(_signum: int, _frame: Any) -> None:
        # Only a flag: the main thread is inside a Py4J call (not re-entrant) or may hold a log lock.
        stop_requested.set()

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)
    _forward_jvm_signals(spark, stop_requested)  # before the query starts its Python workers
    try:
        query = start(spark, settings, fail_on_data_loss=not args.no_fail_on_data_loss, scoring=scoring)
    except PipelineError as exc:
        log.error("features stream not started: %s", exc)
        spark.stop()
        return 1

    deadline = time.monotonic() + (args.timeout_seconds if args.timeout_seconds else float("inf"))
    while query.isActive and not stop_requested.is_set() and time.monotonic() < deadline:
        query.awaitTermination(1)
    if query.isActive:
        log.info("stopping features stream signal_received=%s", stop_requested.is_set())
        interrupted = _stop_after_batch_in_flight(query, settings)
    else:
        interrupted = False
    if scoring:
        scoring.stop()
    failure = query.exception()
    if failure is not None and interrupted:
        # The stop asked for it: the interrupted batch is redone on the next start.
        log.warning(
            "features stream stopped mid-batch; the batch is redone on the next start (%s)",
            str(failure).splitlines()[0],
        )
    elif failure is not None:
        log.error("features stream failed: %s", failure)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
