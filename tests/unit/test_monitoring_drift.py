"""Monitoring without services: drift and quality verdicts, sampling, the verdict's actions."""

from __future__ import annotations

import dataclasses
import re

import numpy as np
import pandas as pd
import pytest

from volpipe.errors import DriftDetected, MonitoringDataError
from volpipe.features import FEATURE_COLUMNS
from volpipe.monitoring import data, drift
from volpipe.monitoring.run import Verdict, enforce, retrain_window
from volpipe.monitoring.synthetic import feature_rows, prediction_rows

N = 20_000


@pytest.fixture(scope="module")
def reference() -> pd.DataFrame:
    return feature_rows(N, seed=1)


def test_every_feature_has_a_drift_method_or_a_reason_not_to():
    assert set(drift.DRIFT_METHODS) | set(drift.NOT_DRIFT_TESTED) == set(FEATURE_COLUMNS)
    assert not set(drift.DRIFT_METHODS) & set(drift.NOT_DRIFT_TESTED)
    assert drift.drift_columns(["midprice", "imbalance_1t", "rolling_vol"]) == ["rolling_vol", "imbalance_1t"]
    with pytest.raises(MonitoringDataError, match="no drift-tested feature"):
        drift.drift_columns(["midprice", "mid_fallback"])


def test_quiet_on_a_window_from_the_reference_distribution(reference):
    columns = drift.drift_columns(FEATURE_COLUMNS)
    _, summary = drift.data_drift(reference, feature_rows(N, seed=2), columns, 0.5)
    assert [c.column for c in summary.columns] == columns
    assert summary.drifted_count == 0, summary
    for column in summary.columns:
        assert (column.method, column.threshold) == drift.DRIFT_METHODS[column.column]
        assert 0 <= column.score < column.threshold / 2, column


def test_flags_a_shifted_window(reference):
    columns = drift.drift_columns(FEATURE_COLUMNS)
    _, summary = drift.data_drift(reference, feature_rows(N, seed=3, vol=1.6, imbalance=0.3), columns, 0.5)
    drifted = {c.column for c in summary.columns if c.drifted}
    # The volatility regime moves every return/volatility feature, the book shift moves imbalance.
    assert drifted == {"midprice_return", "rolling_vol", "vol_300t", "abs_ret_mean_60t", "ret_mean_30t", "imbalance_1t"}
    assert summary.share == 6 / 8
    for column in summary.columns:
        assert column.drifted == (column.score >= column.threshold)


def test_scores_do_not_depend_on_the_unit_of_tiny_features(reference):
    """Evidently norms Wasserstein by max(std, 0.001): raw returns (~1e-4) would be normed by 0.001."""
    current = feature_rows(N, seed=3, vol=1.3)
    _, base = drift.data_drift(reference, current, ["rolling_vol"], 0.5)
    scaled = [frame.assign(rolling_vol=frame["rolling_vol"] * 7) for frame in (reference, current)]
    _, rescaled = drift.data_drift(*scaled, ["rolling_vol"], 0.5)
    assert base.columns[0].score == pytest.approx(rescaled.columns[0].score, rel=1e-9)
    # A 30% volatility rise is ~1 reference std: far above the threshold, as it should be.
    assert base.columns[0].score > 0.5


def test_data_quality_flags_missing_values_and_outliers(reference):
    columns = list(FEATURE_COLUMNS)
    _, clean = drift.data_quality(reference, feature_rows(N, seed=2), columns)
    assert clean["failed"] == []
    bad = feature_rows(N, seed=2)
    bad.loc[: N // 10, "trade_intensity"] = np.nan
    bad.loc[: N // 20, "spread_bps"] = 1e3
    _, report = drift.data_quality(reference, bad, columns)
    assert report["missing_share"]["trade_intensity"] == pytest.approx((N // 10 + 1) / N)
    assert report["outlier_share"]["spread_bps"] >= 0.05
    assert len(report["failed"]) == 2
    assert any("trade_intensity" in name and "missing" in name for name in report["failed"])
    assert any("spread_bps" in name and "out of range" in name for name in report["failed"])


def test_missing_column_or_empty_window_is_a_clear_error(reference):
    with pytest.raises(MonitoringDataError, match=r"current window lacks columns \['rolling_vol'\]"):
        drift.data_drift(reference, reference.drop(columns="rolling_vol"), ["rolling_vol"], 0.5)
    with pytest.raises(MonitoringDataError, match=r"current window has no values in \['rolling_vol'\] \(rows=0\)"):
        drift.data_drift(reference, reference.iloc[:0], ["rolling_vol"], 0.5)


def test_prediction_drift_and_classification_quality(reference):
    before, same, shifted = (prediction_rows(reference, seed=s, shift=d) for s, d in ((4, 0), (5, 0), (6, 0.15)))
    assert drift.prediction_drift(before, same, 0.5)[1].drifted_count == 0
    moved = drift.prediction_drift(before, shifted, 0.5)[1]
    assert {c.column for c in moved.columns if c.drifted} == {"probability", "predicted_label"}

    assert drift.classification_quality(same) is None  # no label column
    unknown = same.assign(y=np.nan)
    assert drift.classification_quality(unknown) is None  # labels not known yet
    rng = np.random.default_rng(7)
    labelled = same.assign(y=(rng.uniform(size=len(same)) < same["probability"]).astype(float))
    labelled.loc[labelled.index[-100:], "y"] = np.nan  # the end of the window has no future yet
    _, quality = drift.classification_quality(labelled)
    assert quality["rows"] == len(same) - 100
    assert quality["threshold"] == 0.2
    assert 0.5 < quality["RocAuc"] <= 1


def test_sample_rows_is_seeded_and_keeps_order(reference):
    first, second = data.sample_rows(reference, 1000, seed=0), data.sample_rows(reference, 1000, seed=0)
    assert first.index.equals(second.index) and first.index.is_monotonic_increasing and len(first) == 1000
    assert data.sample_rows(reference, N) is reference


def _verdict(**changes) -> Verdict:
    base = Verdict(
        report_date="2026-09-21",
        model_name="m",
        model_version="1",
        reference_run_id="r",
        products=["BTC-USD"],
        reference={},
        current={},
        features=[drift.ColumnDrift("rolling_vol", "wasserstein", 0.1, 0.4, True)],
        drifted_count=5,
        drift_share=0.625,
        share_threshold=0.5,
        drift_detected=True,
        action="warn",
        retrain_requested=False,
        quality={},
        predictions={},
        report_dir="/tmp/x",
    )
    return dataclasses.replace(base, **changes)


def test_enforce_fails_only_on_drift_with_the_fail_action(caplog):
    with pytest.raises(DriftDetected, match=re.escape("share=0.62 threshold=0.5")):
        enforce(_verdict(action="fail"))
    assert enforce(_verdict(action="warn")).should_fail is False
    assert "data drift" in caplog.text
    assert enforce(_verdict(action="fail", drift_detected=False, drift_share=0.1)).should_fail is False
    assert _verdict().to_dict()["should_fail"] is False


def test_the_retrain_window_is_the_days_the_drifted_window_touches():
    day = 86_400 * 10**9
    start = 20_454 * day + 4 * 3600 * 10**9  # 2026-01-01T04:00Z
    assert retrain_window(start, start + day, ("BTC-USD",)) == {
        "start": "2026-01-01",
        "end": "2026-01-02",
        "products": ["BTC-USD"],
    }
    # The end is exclusive: a window ending at midnight does not reach into the next day.
    assert retrain_window(20_454 * day, 20_455 * day, ("BTC-USD",))["end"] == "2026-01-01"


def test_a_verdict_survives_the_trip_through_an_airflow_return_value():
    import json

    verdict = _verdict(
        action="fail",
        retrain_requested=True,
        retrain_window={"start": "2026-01-01", "end": "2026-01-01", "products": ["BTC-USD"]},
    )
    back = Verdict.from_dict(json.loads(json.dumps(verdict.to_dict())))
    assert back == verdict and back.should_fail


def test_enforce_drift_fails_the_task_without_a_retry_and_says_what_it_triggered():
    from airflow.sdk.exceptions import AirflowFailException

    from volpipe.orchestration import enforce_drift

    window = {"start": "2026-01-02", "end": "2026-01-02", "products": ["BTC-USD"]}
    failing = _verdict(action="fail", retrain_requested=True, retrain_window=window).to_dict()
    with pytest.raises(AirflowFailException, match=r"retrain triggered on 2026-01-02..2026-01-02; a finding"):
        enforce_drift(failing)
    enforce_drift(_verdict(action="warn").to_dict())  # warns only
    enforce_drift(_verdict(action="fail", drift_detected=False).to_dict())
