"""Evidently 0.7 reports of the model's inputs and outputs, and what they conclude.

Inputs: pandas frames. Feature rows (columns of ``volpipe.features.FEATURE_COLUMNS``) for a
reference window (the champion's training window) and a current window; optionally
prediction rows (``probability``, ``predicted_label``, and a label ``y`` when one is known).
Outputs: Evidently snapshots (the caller saves them as HTML and JSON) and plain summaries
read from their explicit tests (``include_tests=True``: a drifted column is a ``FAIL``).
No I/O here; ``volpipe.monitoring.run`` reads the tables, writes the files and logs to MLflow.

The drift method of each feature is chosen on purpose (``DRIFT_METHODS``; docs/monitoring.md
gives the reasons): a normed Wasserstein distance for the unbounded, heavy-tailed and
autocorrelated features, PSI where equal-width bins over a fixed range mean something. No
K-S: on 10^5 autocorrelated rows its p-value flags differences too small to matter.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any

import pandas as pd

from volpipe.errors import MonitoringDataError

if TYPE_CHECKING:
    from evidently.core.report import Snapshot

# feature -> (Evidently method, threshold). Wasserstein (normed by the reference's std): drift
# when the distance exceeds the threshold. PSI: drift when the index exceeds it (0.2 is the
# usual "significant shift" cut; 0.1-0.2 is "moderate").
DRIFT_METHODS: dict[str, tuple[str, float]] = {
    "midprice_return": ("wasserstein", 0.1),
    "rolling_vol": ("wasserstein", 0.1),
    "vol_300t": ("wasserstein", 0.1),
    "abs_ret_mean_60t": ("wasserstein", 0.1),
    "ret_mean_30t": ("wasserstein", 0.1),
    "trade_intensity": ("wasserstein", 0.1),
    "spread_bps": ("wasserstein", 0.1),
    "imbalance_1t": ("psi", 0.2),
}
# Returns and volatilities are ~1e-4: Evidently norms the Wasserstein distance by
# max(reference std, 0.001), so in raw units the "normed" distance would be W / 0.001. The drift
# test sees them in basis points (x 1e4), where the std is well above 0.001; PSI and the normed
# distance do not depend on the unit otherwise.
BPS_COLUMNS = ("midprice_return", "rolling_vol", "vol_300t", "abs_ret_mean_60t", "ret_mean_30t")
# Feature columns left out of the drift test on purpose (still summarised in data quality).
NOT_DRIFT_TESTED = {
    "midprice": "price level: non-stationary, drifts by construction",
    "spread": "in price units, scales with the price level (spread_bps is its stationary form)",
    "mid_fallback": "boolean feed-quality flag: its share is a data-quality figure",
}
# Model outputs: bounded scores and a 0/1 label, where PSI over bins / categories is the classic test.
PREDICTION_METHODS: dict[str, tuple[str, float]] = {"probability": ("psi", 0.2), "predicted_label": ("psi", 0.2)}
# Outliers: values outside the reference's [0.1%, 99.9%] quantiles; expected share 0.2%, flagged above 1%.
OUTLIER_QUANTILES = (0.001, 0.999)
OUTLIER_SHARE_MAX = 0.01
# Missing values: flagged when the current share exceeds the reference's by more than this.
MISSING_SHARE_MARGIN = 0.01


@dataclasses.dataclass(frozen=True)
class ColumnDrift:
    """One column's drift test: method, threshold, Evidently's score and the verdict."""

    column: str
    method: str
    threshold: float
    score: float
    drifted: bool


@dataclasses.dataclass(frozen=True)
class DriftSummary:
    """Per-column drift results of one report and the share of drifted columns."""

    columns: list[ColumnDrift]

    @property
    def drifted_count(self) -> int:
        """Columns whose test failed."""
        return sum(c.drifted for c in self.columns)

    @property
    def share(self) -> float:
        """Drifted columns / tested columns."""
        return self.drifted_count / len(self.columns) if self.columns else 0.0


def drift_columns(feature_columns: list[str] | tuple[str, ...]) -> list[str]:
    """The model's feature columns that get a drift test, in ``DRIFT_METHODS`` order.

    Raises:
        MonitoringDataError: None of them has a drift method.
    """
    tested = [c for c in DRIFT_METHODS if c in feature_columns]
    if not tested:
        raise MonitoringDataError(f"no drift-tested feature among the model's columns {list(feature_columns)}")
    return tested


def _dataset(frame: pd.DataFrame, columns: list[str]):
    from evidently import DataDefinition, Dataset

    return Dataset.from_pandas(frame[columns], data_definition=DataDefinition(numerical_columns=columns))


def _numeric(frame: pd.DataFrame, columns: list[str], window: str) -> pd.DataFrame:
    """The columns as float64 (booleans and nullable ints included), checked to hold values."""
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise MonitoringDataError(f"{window} window lacks columns {missing}")
    out = frame[columns].astype("float64")
    empty = [c for c in columns if out[c].notna().sum() == 0]
    if empty:
        raise MonitoringDataError(f"{window} window has no values in {empty} (rows={len(out)})")
    return out


def _column_drift(snapshot: Snapshot) -> DriftSummary:
    """Reads the ``ValueDrift`` tests: score from the metric, drifted = test status FAIL."""
    result = snapshot.dict()
    scores = {m["id"]: m["value"] for m in result["metrics"]}
    columns = []
    for test in result["tests"]:
        params = test["metric_config"]["params"]
        if params.get("type") != "evidently:metric_v2:ValueDrift":
            continue
        columns.append(
            ColumnDrift(
                column=params["column"],
                method=params["method"],
                threshold=float(params["threshold"]),
                score=float(scores[test["metric_config"]["metric_id"]]),
                drifted=test["status"] == "FAIL",
            )
        )
    return DriftSummary(columns)


def _drift(
    reference: pd.DataFrame, current: pd.DataFrame, methods: dict[str, tuple[str, float]], share_threshold: float
) -> tuple[Snapshot, DriftSummary]:
    from evidently import Report
    from evidently.presets import DataDriftPreset

    columns = list(methods)
    ref, cur = _numeric(reference, columns, "reference"), _numeric(current, columns, "current")
    bps = [c for c in columns if c in BPS_COLUMNS]
    ref[bps], cur[bps] = ref[bps] * 1e4, cur[bps] * 1e4
    preset = DataDriftPreset(
        columns=columns,
        drift_share=share_threshold,
        per_column_method={c: m for c, (m, _) in methods.items()},
        per_column_threshold={c: t for c, (_, t) in methods.items()},
    )
    # Evidently's order: current first.
    snapshot = Report([preset], include_tests=True).run(_dataset(cur, columns), _dataset(ref, columns))
    return snapshot, _column_drift(snapshot)


def data_drift(
    reference: pd.DataFrame, current: pd.DataFrame, columns: list[str], share_threshold: float
) -> tuple[Snapshot, DriftSummary]:
    """Data drift of ``columns`` (each with its ``DRIFT_METHODS`` method) from reference to current.

    Args:
        reference: Feature rows of the reference window.
        current: Feature rows of the current window.
        columns: Columns to test, all keys of ``DRIFT_METHODS`` (see ``drift_columns``).
        share_threshold: Drift share at which Evidently's dataset-level test fails.

    Returns:
        The Evidently snapshot and the per-column results.

    Raises:
        MonitoringDataError: A column is absent or holds no value in one of the windows.
    """
    return _drift(reference, current, {c: DRIFT_METHODS[c] for c in columns}, share_threshold)


def prediction_drift(
    reference: pd.DataFrame, current: pd.DataFrame, share_threshold: float
) -> tuple[Snapshot, DriftSummary]:
    """Drift of the model's ``probability`` and ``predicted_label`` (PSI), same contract as ``data_drift``."""
    return _drift(reference, current, PREDICTION_METHODS, share_threshold)


def data_quality(reference: pd.DataFrame, current: pd.DataFrame, columns: list[str]) -> tuple[Snapshot, dict]:
    """Missing values, ranges and outliers of the current window, judged against the reference.

    The summary preset shows each column's count, missing values, min/max, mean, std and
    quartiles beside the reference's. Explicit tests decide: per column, the missing share may
    exceed the reference's by ``MISSING_SHARE_MARGIN`` at most; per drift-tested (stationary)
    column, at most ``OUTLIER_SHARE_MAX`` of the values may fall outside the reference's
    ``OUTLIER_QUANTILES``.

    Returns:
        The snapshot and ``{"failed": [test names], "missing_share": {col: share},
        "outlier_share": {col: share}}``.
    """
    from evidently import Report
    from evidently.metrics import OutRangeValueCount
    from evidently.presets import DataSummaryPreset
    from evidently.presets.dataset_stats import ValueStatsTests
    from evidently.tests import lte

    ref, cur = _numeric(reference, columns, "reference"), _numeric(current, columns, "current")
    metrics: list[Any] = []
    column_tests = {}
    for c in columns:
        allowed = (ref[c].isna().mean() + MISSING_SHARE_MARGIN) * len(cur)
        # Only the tests we decide on: Evidently's defaults (e.g. mean within 10% of the
        # reference's) fail on any zero-mean feature.
        column_tests[c] = ValueStatsTests(
            missing_values_count_tests=[lte(float(allowed))],
            row_count_tests=[],
            min_tests=[],
            max_tests=[],
            mean_tests=[],
            std_tests=[],
            q25_tests=[],
            q50_tests=[],
            q75_tests=[],
        )
        if c in DRIFT_METHODS:  # a non-stationary level (midprice) has no stable range
            low, high = ref[c].quantile(list(OUTLIER_QUANTILES))
            metrics.append(
                OutRangeValueCount(column=c, left=float(low), right=float(high), share_tests=[lte(OUTLIER_SHARE_MAX)])
            )
    no_tests: dict[str, list] = {
        name: []
        for name in (
            "column_count_tests",
            "duplicated_row_count_tests",
            "duplicated_column_count_tests",
            "almost_duplicated_column_count_tests",
            "almost_constant_column_count_tests",
            "empty_row_count_tests",
            "empty_column_count_tests",
            "constant_columns_count_tests",
            "dataset_missing_value_count_tests",
        )
    }
    preset = DataSummaryPreset(columns=columns, column_tests=column_tests, row_count_tests=[], **no_tests)
    snapshot = Report([preset, *metrics], include_tests=True).run(_dataset(cur, columns), _dataset(ref, columns))
    result = snapshot.dict()
    outliers = {
        m["config"]["column"]: float(m["value"]["share"])
        for m in result["metrics"]
        if m["config"]["type"] == "evidently:metric_v2:OutRangeValueCount"
    }
    summary = {
        "failed": [t["name"] for t in result["tests"] if t["status"] == "FAIL"],
        "missing_share": {c: float(cur[c].isna().mean()) for c in columns},
        "outlier_share": outliers,
    }
    return snapshot, summary


def classification_quality(predictions: pd.DataFrame, label: str = "y") -> tuple[Snapshot, dict] | None:
    """Binary classification quality of scored rows whose label is known.

    Args:
        predictions: Rows with ``probability``, ``threshold`` (optional) and the label column.
        label: Name of the 0/1 label column.

    Returns:
        The snapshot and ``{"rows", "positives", "threshold", metric name: value}``, or None when
        there is no label column, no labelled row (labels need the future, so recent rows have
        none) or a single class.
    """
    if label not in predictions.columns:
        return None
    rows = predictions.loc[predictions[label].notna(), ["probability", label]].astype({"probability": "float64"})
    rows[label] = rows[label].astype("int64")
    if rows.empty or rows[label].nunique() < 2:
        return None
    from evidently import BinaryClassification, DataDefinition, Dataset, Report
    from evidently.presets import ClassificationPreset

    thresholds = predictions["threshold"].dropna() if "threshold" in predictions.columns else pd.Series(dtype="float64")
    threshold = float(thresholds.iloc[0]) if len(thresholds) else None  # the model's decision threshold
    definition = DataDefinition(
        numerical_columns=["probability"],
        classification=[BinaryClassification(target=label, prediction_probas="probability", pos_label=1)],
    )
    snapshot = Report([ClassificationPreset(probas_threshold=threshold)]).run(
        Dataset.from_pandas(rows, data_definition=definition), None
    )
    summary: dict[str, Any] = {"rows": len(rows), "positives": int(rows[label].sum()), "threshold": threshold}
    for metric in snapshot.dict()["metrics"]:
        if isinstance(metric["value"], (int, float)):
            summary[metric["metric_name"].split("(")[0]] = float(metric["value"])
    return snapshot, summary
