"""The streaming job killed hard (SIGKILL of its process group) and restarted: no duplicate, no gap."""

from __future__ import annotations

import dataclasses
import os
import signal
import subprocess
import sys
import time

import pytest

from tests.spark.pipeline_helpers import pipeline_settings, produce, reference_features, register_versions, same_bits
from volpipe.config import PROJECT_ROOT
from volpipe.features import FEATURE_COLUMNS
from volpipe.market import synthetic_raw_records

pytestmark = [pytest.mark.integration, pytest.mark.spark]


def _env(settings) -> dict[str, str]:
    return {
        **os.environ, "PIPELINE_DATA_DIR": str(settings.data_dir), "KAFKA_BOOTSTRAP_SERVERS": settings.kafka_bootstrap_servers,
        "KAFKA_INPUT_TOPIC": settings.kafka_input_topic, "KAFKA_OUTPUT_TOPIC": settings.kafka_output_topic,
        "KAFKA_DEADLETTER_TOPIC": settings.kafka_deadletter_topic, "FEATURE_WINDOW_SIZE": "5",
        "KAFKA_PREDICTIONS_TOPIC": settings.kafka_predictions_topic, "MLFLOW_TRACKING_URI": settings.mlflow_tracking_uri,
        "MODEL_NAME": settings.model_name, "STREAM_METRICS_PORT": "0",
        "STREAM_MAX_OFFSETS_PER_TRIGGER": "1000", "SPARK_SHUFFLE_PARTITIONS": "2", "SPARK_DRIVER_MEMORY": "1g",
        "METRICS_PORT": "0",
    }


def _launch(settings, log_path):
    with log_path.open("ab") as log:
        return subprocess.Popen([sys.executable, "-m", "spark_jobs.features_stream"], cwd=PROJECT_ROOT, env=_env(settings),
                                stdout=log, stderr=subprocess.STDOUT, start_new_session=True)


def _wait(what, predicate, proc, log_path, timeout=240.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        if proc.poll() is not None:
            break
        time.sleep(0.5)
    pytest.fail(f"{what} not reached (exit={proc.poll()}); job log:\n{log_path.read_text()[-4000:]}")


def _commits(settings, table) -> int:
    log_dir = settings.delta_table(table) / "_delta_log"
    return len(list(log_dir.glob("*.json"))) if log_dir.exists() else 0


def test_sigkill_mid_stream_then_restart_leaves_no_duplicate_and_no_gap(spark, kafka_broker, mlflow_server, tmp_path):
    settings = dataclasses.replace(pipeline_settings(kafka_broker, tmp_path, window=5),
                                   mlflow_tracking_uri=mlflow_server.mlflow_tracking_uri, model_name="crash-live")
    (version,) = register_versions(settings, 1)  # a champion: the killed stream scores live too
    records = list(synthetic_raw_records(9000, ("BTC-USD", "ETH-USD"), seed=21))
    produce(settings, records[:6000])
    log_path = tmp_path / "stream.log"

    proc = _launch(settings, log_path)
    try:
        _wait("three committed batches", lambda: _commits(settings, "features") >= 3, proc, log_path)
        os.killpg(proc.pid, signal.SIGKILL)  # mid-stream: batches are still pending
        proc.wait(30)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert _commits(settings, "features") < 6, "the job finished before it was killed: kill earlier"
    produce(settings, records[6000:])

    def count(table):
        return spark.read.format("delta").load(str(settings.delta_table(table))).count()

    proc = _launch(settings, log_path)
    try:
        _wait("all rows written", lambda: count("ticks") >= 9000 and count("features") >= 9000 - 10, proc, log_path)
        proc.send_signal(signal.SIGTERM)  # the polite stop, to the driver only: the job exits cleanly
        assert proc.wait(90) == 0, log_path.read_text()[-4000:]
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)

    ticks = spark.read.format("delta").load(str(settings.delta_table("ticks"))).toPandas()
    assert len(ticks) == 9000 and sorted(ticks["ingest_seq"]) == list(range(9000))
    features = (spark.read.format("delta").load(str(settings.delta_table("features"))).toPandas()
                .sort_values(["product_id", "ingest_seq"]).reset_index(drop=True))
    expected = reference_features(records, window=5)
    assert features["ingest_seq"].tolist() == expected["ingest_seq"].tolist()
    for column in FEATURE_COLUMNS:
        assert same_bits(features[column].astype(float), expected[column].astype(float)), column
    # Exactly one live prediction per feature row, across the kill and the restart.
    predictions = spark.read.format("delta").load(str(settings.delta_table("predictions_live"))).toPandas()
    assert len(predictions) == len(features) and set(predictions["model_version"]) == {version}
    assert not predictions.duplicated(["product_id", "ingest_seq", "ticker_idx"]).any()


def _run_until_caught_up(spark, settings) -> None:
    from spark_jobs import features_stream

    query = features_stream.start(spark, settings)
    try:
        query.processAllAvailable()
    finally:
        query.stop()


def test_batch_rerun_after_its_delta_commits_is_not_written_twice(spark, kafka_broker, tmp_path):
    """The narrowest crash window, made deterministic: Delta has batch N, the commit log does not."""
    from delta.tables import DeltaTable

    settings = pipeline_settings(kafka_broker, tmp_path, window=5)
    records = list(synthetic_raw_records(2000, ("BTC-USD", "ETH-USD"), seed=5))
    produce(settings, records[:1200])
    _run_until_caught_up(spark, settings)
    # Forget that the last batch committed, as a crash between its Delta appends and Spark's
    # commit-log write would: the restart re-runs it with the same offsets and state.
    commits = settings.checkpoint("features") / "commits"
    last = max(int(f.name) for f in commits.iterdir() if f.name.isdigit())
    (commits / str(last)).unlink()
    (commits / f".{last}.crc").unlink(missing_ok=True)
    produce(settings, records[1200:])
    _run_until_caught_up(spark, settings)

    ticks = spark.read.format("delta").load(str(settings.delta_table("ticks"))).toPandas()
    assert len(ticks) == 2000 and sorted(ticks["ingest_seq"]) == list(range(2000))
    features = spark.read.format("delta").load(str(settings.delta_table("features"))).toPandas()
    assert not features.duplicated(["product_id", "ingest_seq", "ticker_idx"]).any()
    assert len(features) == len(reference_features(records, window=5))
    history = DeltaTable.forPath(spark, str(settings.delta_table("ticks"))).history().orderBy("version").collect()
    batches = [int(row["userMetadata"].rsplit(" ", 1)[1]) for row in history if row["userMetadata"]]
    assert batches == sorted(set(batches)) and last in batches and batches[-1] > last, batches
