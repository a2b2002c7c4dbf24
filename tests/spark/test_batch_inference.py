"""Batch inference with real Spark, Delta and MLflow: schema, idempotent re-runs, same probabilities."""

from __future__ import annotations

import dataclasses
import datetime as dt

import numpy as np
import pandas as pd
import pytest

from spark_jobs import batch_inference
from tests.model.skill import skilled_rows
from volpipe.dates import DateRange
from volpipe.errors import ModelRegistryError
from volpipe.modeling import label as L
from volpipe.modeling import models as M
from volpipe.modeling import registry, train
from volpipe.modeling.models import probabilities
from volpipe.modeling.synthetic import write_features
from volpipe.tables import PREDICTIONS, table_columns

pytestmark = [pytest.mark.integration, pytest.mark.spark]
DAY = dt.date(2026, 1, 1)  # the synthetic market starts at 2026-01-01T00:00Z


@pytest.fixture(scope="module")
def trained(mlflow_server, tmp_path_factory):
    """A features table of one synthetic day (~40 minutes) and a champion trained on it (rows a
    model predicts by construction: the promotion gate passes)."""
    settings = dataclasses.replace(
        mlflow_server,
        delta_dir=tmp_path_factory.mktemp("inference") / "delta",
        model_name="vol-inference",
        train_min_rows=1000,
    )
    rows = skilled_rows()
    # Ticks sharing a timestamp leave trade_intensity null in real feeds (never in the synthetic
    # market): some rows go through the logistic regression's median imputation.
    rows.loc[rows.index % 97 == 0, "trade_intensity"] = np.nan
    write_features(settings.delta_table("features"), rows)
    summary = train.run(settings)
    assert summary["promoted"], summary["reason"]
    return settings, rows, summary


def by_hand(estimator, x: pd.DataFrame) -> np.ndarray | None:
    """P(y=1) of the logistic-regression pipeline from its fitted steps' attributes, step by step
    (None for another model): median for NaN, standardise, linear function, logistic."""
    if M.LinearScorer.of(estimator) is None:
        return None
    impute, scale, linear = (step for _, step in estimator.steps)
    filled = x.to_numpy(np.float64, na_value=np.nan)
    filled = np.where(np.isnan(filled), impute.statistics_, filled)
    z = ((filled - scale.mean_) / scale.scale_) @ linear.coef_[0] + linear.intercept_[0]
    return 1.0 / (1.0 + np.exp(-z))


def read_predictions(settings) -> pd.DataFrame:
    from deltalake import DeltaTable

    return DeltaTable(str(settings.delta_table("predictions"))).to_pandas()


def test_predictions_schema_rerun_and_probabilities(spark, trained):
    from deltalake import DeltaTable

    settings, rows, summary = trained
    first = batch_inference.run(spark, settings, DateRange(DAY, DAY))
    written = spark.read.format("delta").load(str(settings.delta_table("predictions")))
    assert tuple(written.columns) == table_columns(PREDICTIONS)
    assert DeltaTable(str(settings.delta_table(PREDICTIONS))).metadata().partition_columns == ["date"]
    assert dict(written.dtypes)["predicted_label"] == "int" and dict(written.dtypes)["probability"] == "double"
    assert first["rows"] == len(rows) and first["model_version"] == summary["champion_version"]

    again = batch_inference.run(spark, settings, DateRange(DAY, DAY))
    assert again["rows"] == first["rows"] == written.count()  # replaced, not duplicated

    predictions = read_predictions(settings).sort_values(["product_id", "ingest_seq", "ticker_idx"])
    written = predictions["probability"].to_numpy()
    model = registry.scoring_model(settings.mlflow_tracking_uri, settings.model_name)
    estimator = registry.load_estimator(settings.mlflow_tracking_uri, model)
    features = rows.sort_values(["product_id", "ingest_seq", "ticker_idx"])[list(model.columns)]
    # Expected values computed apart from the job's scoring function: scikit-learn's own
    # predict_proba, the registry's pyfunc, and for a logistic regression its arithmetic by hand.
    expected = estimator.predict_proba(features)[:, 1]
    np.testing.assert_allclose(written, expected, rtol=1e-12, atol=1e-15)
    pyfunc, version = registry.load(settings.mlflow_tracking_uri, settings.model_name)
    np.testing.assert_allclose(written, np.asarray(pyfunc.predict(features))[:, 1], rtol=1e-12, atol=1e-15)
    hand = by_hand(estimator, features)
    assert (hand is not None) == (summary["candidate"] == M.LOGISTIC)
    if hand is not None:
        np.testing.assert_allclose(written, hand, rtol=1e-12, atol=1e-15)
    # A row's bits do not depend on the rows scored with it (seven at a time here, Arrow batches there).
    chunked = np.concatenate([probabilities(estimator, features[i : i + 7]) for i in range(0, len(features), 7)])
    np.testing.assert_array_equal(written, chunked)
    threshold = registry.decision_threshold(settings.mlflow_tracking_uri, version)
    assert (predictions["threshold"] == threshold).all() and model.threshold == threshold
    assert 0 < predictions["predicted_label"].sum() < len(predictions)  # the threshold splits the rows
    clear = np.abs(expected - threshold) > 1e-9  # rows not within rounding of the threshold
    np.testing.assert_array_equal(predictions["predicted_label"].to_numpy()[clear], (expected >= threshold)[clear])
    assert set(predictions["model_version"]) == {version.version} and set(predictions["run_id"]) == {version.run_id}
    assert set(predictions["label_mode"]) == {settings.label_mode} and set(predictions["model_name"]) == {
        settings.model_name
    }

    # The range was labelled (complete horizons): its realised metrics are an MLflow run.
    evaluation = registry.client(settings.mlflow_tracking_uri).get_run(again["evaluation_run_id"])
    assert evaluation.data.tags["model_version"] == version.version
    assert 0 < evaluation.data.metrics["realised_pr_auc"] <= 1
    # Minus, per product, the incomplete horizon at the end and the first rows, before vol_300t (the
    # relative label's threshold) exists.
    spec = L.label_spec(settings)
    assert spec.mode == "relative"
    no_threshold = int(rows[spec.relative_column].isna().sum())
    assert no_threshold > 0
    assert evaluation.data.metrics["realised_rows"] == len(rows) - no_threshold - 2 * spec.horizon


def test_a_named_version_and_an_empty_range(spark, trained):
    settings, _, summary = trained
    other_day = DAY + dt.timedelta(days=3)
    out = batch_inference.run(
        spark, settings, DateRange(other_day, other_day), model_version=summary["registered_version"]
    )
    assert out["rows"] == 0 and out["evaluation_run_id"] is None
    assert len(read_predictions(settings)) in (0, len(trained[1]))  # other ranges untouched


def test_no_champion_fails_before_writing(spark, trained, tmp_path):
    settings = dataclasses.replace(trained[0], model_name="vol-never-trained", delta_dir=tmp_path / "delta")
    with pytest.raises(ModelRegistryError, match="vol-never-trained"):
        batch_inference.run(spark, settings, DateRange(DAY, DAY))
    assert not settings.delta_table("predictions").exists()
