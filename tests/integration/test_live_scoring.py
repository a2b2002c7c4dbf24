"""Live scoring in the stream with real Kafka, Spark, Delta and MLflow: one prediction per feature
row, a champion swapped without a restart, scoring that starts on its own, and the same bits as
batch inference."""

from __future__ import annotations

import dataclasses
import json
import time

import numpy as np
import pandas as pd
import pytest

from spark_jobs import batch_inference, features_stream
from spark_jobs.live_scoring import LiveScoring
from tests.spark.pipeline_helpers import consume, pipeline_settings, produce, register_versions, same_bits
from volpipe.dates import DateRange
from volpipe.market import synthetic_raw_records
from volpipe.modeling import registry
from volpipe.modeling.models import LinearScorer
from volpipe.ops.harness import ExchangeProcess, IngestorProcess, ingestor_env, wait_until
from volpipe.tables import FEATURES, PREDICTION_MESSAGE_COLUMNS, PREDICTIONS, PREDICTIONS_LIVE, table_columns

pytestmark = [pytest.mark.integration, pytest.mark.spark]
KEYS = ["product_id", "ingest_seq", "ticker_idx"]


def table(spark, settings, name) -> pd.DataFrame:
    return spark.read.format("delta").load(str(settings.delta_table(name))).toPandas()


def wait_for(predicate, seconds=60.0) -> None:
    deadline = time.monotonic() + seconds
    while not predicate():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.2)


@pytest.fixture
def live(spark, kafka_broker, mlflow_server, tmp_path, request):
    """Stream settings with their own topics, tables and registered model name; refresh every second."""
    settings = dataclasses.replace(
        pipeline_settings(kafka_broker, tmp_path, window=5),
        mlflow_tracking_uri=mlflow_server.mlflow_tracking_uri,
        model_name=f"live-{request.node.name[:40]}",
        model_refresh_seconds=1.0,
    )
    scoring = LiveScoring(spark, settings)
    yield settings, scoring
    scoring.stop()


def register_both_scoring_paths(settings) -> tuple[str, str]:
    """A logistic regression (scored from its arrays, ``LinearScorer``) and a boosting model (scored
    by its own ``predict_proba``), fitted as training fits them and registered with the parameters
    scoring reads; neither is champion. Returns their versions."""
    from tests.model.skill import skilled_rows
    from tests.model.test_training import register_champion
    from volpipe.modeling import models as M

    rows = skilled_rows(4_000)
    y = (rows["trade_intensity"] > rows["trade_intensity"].quantile(0.9)).to_numpy(int)
    versions = []
    for name in (M.LOGISTIC, M.BOOSTING):
        columns = list(M.FEATURES[name])
        versions.append(
            register_champion(settings, M.fit(name, rows, y, seed=0), columns, rows.head(200), threshold=0.5)
        )
    client = registry.client(settings.mlflow_tracking_uri)
    client.delete_registered_model_alias(settings.model_name, registry.CHAMPION)
    return versions[0], versions[1]


def test_every_feature_row_scored_once_swapped_without_restart_equal_to_batch_on_both_paths(spark, live):
    settings, scoring = live
    linear, boosting = register_both_scoring_paths(settings)
    registry.promote(settings.mlflow_tracking_uri, settings.model_name, linear, {"reason": "test"})
    records = list(synthetic_raw_records(3000, ("BTC-USD", "ETH-USD"), seed=21))
    scoring.start()
    assert scoring.model is not None and scoring.model.version == linear
    assert json.loads(scoring._current[1])["linear"] is not None  # the workers score from its arrays
    produce(settings, records[:1500])
    query = features_stream.start(spark, settings, scoring=scoring)
    try:
        query.processAllAvailable()
        registry.promote(settings.mlflow_tracking_uri, settings.model_name, boosting, {"reason": "test"})
        wait_for(lambda: scoring.model.version == boosting)
        assert json.loads(scoring._current[1])["linear"] is None  # the workers load the estimator itself
        produce(settings, records[1500:])
        query.processAllAvailable()
        assert query.isActive and query.exception() is None  # no restart
    finally:
        query.stop()

    features = table(spark, settings, FEATURES)
    live_rows = table(spark, settings, PREDICTIONS_LIVE)
    assert tuple(live_rows.columns) == table_columns(PREDICTIONS_LIVE)
    assert len(live_rows) == len(features) > 2500
    assert not live_rows.duplicated(KEYS).any()
    assert set(map(tuple, live_rows[KEYS].to_numpy())) == set(map(tuple, features[KEYS].to_numpy()))
    by_version = live_rows.groupby("model_version")["ingest_seq"].agg(["min", "max", "count"])
    assert set(by_version.index) == {linear, boosting}
    assert by_version.loc[linear, "max"] < 1500 <= by_version.loc[boosting, "min"]  # swapped between batches
    assert scoring.metrics.swaps._value.get() == 2 and scoring.metrics.rows_scored._value.get() == len(live_rows)
    assert scoring.metrics.batch_scoring_seconds._sum.get() > 0  # model time reported back by the workers

    messages = pd.DataFrame(consume(settings, settings.kafka_predictions_topic, expected=len(live_rows)))
    assert list(messages.columns) == list(PREDICTION_MESSAGE_COLUMNS)
    assert len(messages.drop_duplicates(KEYS)) == len(live_rows)
    joined = messages.drop_duplicates(KEYS).merge(live_rows, on=KEYS, suffixes=("_kafka", ""))
    np.testing.assert_array_equal(joined["probability_kafka"].to_numpy(), joined["probability"].to_numpy())
    assert (joined["model_version_kafka"] == joined["model_version"]).all()

    # Batch inference of the same rows with the same version: the same probabilities, bit for bit,
    # on either path (the batch job takes the linear path for a logistic regression as well).
    day = pd.to_datetime(features["exchange_ts_ns"].min(), unit="ns", utc=True).date()
    for version in (linear, boosting):
        estimator = registry.load_estimator(
            settings.mlflow_tracking_uri,
            registry.scoring_model(settings.mlflow_tracking_uri, settings.model_name, version),
        )
        assert (LinearScorer.of(estimator) is None) == (version == boosting)
        batch_inference.run(spark, settings, DateRange(day, day), model_version=version)
        batch = table(spark, settings, PREDICTIONS)
        assert len(batch) == len(features) and set(batch["model_version"]) == {version}
        both = live_rows[live_rows["model_version"] == version].merge(batch, on=KEYS, suffixes=("_live", "_batch"))
        assert len(both) == by_version.loc[version, "count"] > 0
        assert same_bits(both["probability_live"], both["probability_batch"]), version
        assert (both["predicted_label_live"] == both["predicted_label_batch"]).all()


def test_scoring_starts_on_its_own_when_a_champion_appears(spark, live):
    settings, scoring = live
    records = list(synthetic_raw_records(2000, ("BTC-USD",), seed=22))
    scoring.start()
    assert scoring.model is None and scoring.metrics.usable._value.get() == 0
    produce(settings, records[:1000])
    query = features_stream.start(spark, settings, scoring=scoring)
    try:
        query.processAllAvailable()
        assert len(table(spark, settings, FEATURES)) > 900  # features flow without a model
        (version,) = register_versions(settings, 1)  # the first training promotes its candidate
        wait_for(lambda: scoring.model is not None)
        produce(settings, records[1000:])
        query.processAllAvailable()
    finally:
        query.stop()
    live_rows = table(spark, settings, PREDICTIONS_LIVE)
    assert set(live_rows["model_version"]) == {version}
    assert live_rows["ingest_seq"].min() >= 1000 and len(live_rows) == 1000
    assert scoring.metrics.usable._value.get() == 1


def test_a_champion_reading_columns_the_kernel_lacks_is_refused(spark, live, monkeypatch):
    settings, scoring = live
    (version,) = register_versions(settings, 1)
    monkeypatch.setattr("spark_jobs.live_scoring.FEATURE_COLUMNS", ("rolling_vol",))  # a kernel without the rest
    scoring.check()
    assert scoring.model is None and scoring.metrics.usable._value.get() == 0
    monkeypatch.undo()
    scoring.check()
    assert scoring.model.version == version


def test_a_champion_whose_estimator_does_not_load_is_refused_before_any_batch_pins_it(spark, live, monkeypatch, caplog):
    settings, scoring = live
    (version,) = register_versions(settings, 1)

    def corrupt(path):
        raise ValueError(f"{path}: not a skops archive")

    monkeypatch.setattr(registry, "load_estimator_file", corrupt)
    scoring.check()
    assert scoring.model is None and scoring.metrics.usable._value.get() == 0
    assert f"models:/{settings.model_name}/{version} cannot be loaded" in caplog.text
    monkeypatch.undo()
    scoring.check()
    assert scoring.model.version == version


def test_exchange_to_ingestor_to_stream_gives_each_feature_row_one_prediction(spark, live):
    """The live path end to end: local exchange -> ingestor -> Kafka -> stream with a champion."""
    settings, scoring = live
    settings = dataclasses.replace(settings, product_ids=("BTC-USD", "ETH-USD"))
    (version,) = register_versions(settings, 1)
    scoring.start()
    exchange = ExchangeProcess("--speed", "0", "--max-ticks", "1500", "--products", ",".join(settings.product_ids))
    ingestor = IngestorProcess(ingestor_env(settings, exchange.url), settings.data_dir / "ingest.log")
    try:
        wait_until(lambda: exchange.stats()["tickers_sent"] >= 1500, 120, "the exchange to serve 1500 ticks")
        stored = int(ingestor.stop()["tickers"])
    finally:
        if ingestor.proc.poll() is None:
            ingestor.proc.kill()
        exchange.stop()
    query = features_stream.start(spark, settings, scoring=scoring)
    try:
        query.processAllAvailable()
    finally:
        query.stop()
    features = table(spark, settings, FEATURES)
    live_rows = table(spark, settings, PREDICTIONS_LIVE)
    assert stored == 1500 and len(features) == stored - 2 * settings.feature_window_size
    assert len(live_rows) == len(features) and not live_rows.duplicated(KEYS).any()
    assert set(live_rows["model_version"]) == {version}
    messages = pd.DataFrame(consume(settings, settings.kafka_predictions_topic, expected=len(live_rows)))
    assert set(map(tuple, messages[KEYS].to_numpy())) == set(map(tuple, features[KEYS].to_numpy()))
