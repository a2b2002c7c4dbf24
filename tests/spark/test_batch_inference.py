"""Batch inference with real Spark, Delta and MLflow: schema, idempotent re-runs, same probabilities."""

from __future__ import annotations

import dataclasses
import datetime as dt

import numpy as np
import pandas as pd
import pytest

from spark_jobs import batch_inference
from volpipe.dates import DateRange
from volpipe.errors import ModelRegistryError
from volpipe.modeling import label as L
from volpipe.modeling import registry, train
from volpipe.modeling.models import decide, probabilities
from volpipe.modeling.synthetic import synthetic_features, write_features
from volpipe.tables import PREDICTIONS, table_columns

pytestmark = [pytest.mark.integration, pytest.mark.spark]
DAY = dt.date(2026, 1, 1)  # the synthetic market starts at 2026-01-01T00:00Z


@pytest.fixture(scope="module")
def trained(mlflow_server, tmp_path_factory):
    """A features table of one synthetic day (~40 minutes) and a champion trained on it."""
    settings = dataclasses.replace(mlflow_server, delta_dir=tmp_path_factory.mktemp("inference") / "delta",
                                   model_name="vol-inference", train_min_rows=1000)
    rows = synthetic_features(20_000, seed=4, calm_seconds=120.0, burst_seconds=60.0, burst_multiplier=5.0)
    write_features(settings.delta_table("features"), rows)
    summary = train.run(settings)
    return settings, rows, summary


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
    model = registry.scoring_model(settings.mlflow_tracking_uri, settings.model_name)
    estimator = registry.load_estimator(settings.mlflow_tracking_uri, model)
    features = rows.sort_values(["product_id", "ingest_seq", "ticker_idx"])[list(model.columns)]
    # Scored seven rows at a time here, in Arrow batches there: the same bits whatever the batching.
    expected = np.concatenate([probabilities(estimator, features[i:i + 7]) for i in range(0, len(features), 7)])
    np.testing.assert_array_equal(predictions["probability"].to_numpy(), expected)
    # The registry's own pyfunc (predict_proba) agrees to rounding.
    pyfunc, version = registry.load(settings.mlflow_tracking_uri, settings.model_name)
    np.testing.assert_allclose(np.asarray(pyfunc.predict(features))[:, 1], expected, rtol=1e-12, atol=1e-15)
    threshold = registry.decision_threshold(settings.mlflow_tracking_uri, version)
    assert (predictions["threshold"] == threshold).all() and model.threshold == threshold
    np.testing.assert_array_equal(predictions["predicted_label"].to_numpy(), decide(expected, threshold))
    assert (predictions["predicted_label"] == (expected >= threshold)).all()
    assert set(predictions["model_version"]) == {version.version} and set(predictions["run_id"]) == {version.run_id}
    assert set(predictions["label_mode"]) == {"trailing"} and set(predictions["model_name"]) == {settings.model_name}

    # The range was labelled (complete horizons): its realised metrics are an MLflow run.
    evaluation = registry.client(settings.mlflow_tracking_uri).get_run(again["evaluation_run_id"])
    assert evaluation.data.tags["model_version"] == version.version
    assert 0 < evaluation.data.metrics["realised_pr_auc"] <= 1
    # Minus, per product, the incomplete horizons at the end and the first rows, before a trailing tau exists.
    spec = L.label_spec(settings)
    assert evaluation.data.metrics["realised_rows"] == len(rows) - 2 * (
        spec.horizon + spec.trailing_min_rows + spec.horizon - 1)


def test_a_named_version_and_an_empty_range(spark, trained):
    settings, _, summary = trained
    other_day = DAY + dt.timedelta(days=3)
    out = batch_inference.run(spark, settings, DateRange(other_day, other_day), model_version=summary["registered_version"])
    assert out["rows"] == 0 and out["evaluation_run_id"] is None
    assert len(read_predictions(settings)) in (0, len(trained[1]))  # other ranges untouched


def test_no_champion_fails_before_writing(spark, trained, tmp_path):
    settings = dataclasses.replace(trained[0], model_name="vol-never-trained", delta_dir=tmp_path / "delta")
    with pytest.raises(ModelRegistryError, match="vol-never-trained"):
        batch_inference.run(spark, settings, DateRange(DAY, DAY))
    assert not settings.delta_table("predictions").exists()
