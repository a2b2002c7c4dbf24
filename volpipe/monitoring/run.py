"""One monitoring run: reference vs current window, Evidently reports on disk and in MLflow, a verdict.

Inputs: ``Settings`` (tables, REPORTS_DIR, MLflow, DRIFT_* settings), the registered model's
name (its champion gives the reference window, ``volpipe.monitoring.data``) and the current
window's ``exchange_ts_ns`` bounds. Outputs: under ``REPORTS_DIR/evidently/<date>/`` the HTML
and JSON of each report (``data_drift``, ``data_quality``, and per prediction table
``prediction_drift_<table>`` / ``classification_<table>`` when their inputs exist) plus
``verdict.json``; the same files as artifacts of a run in the MONITORING_EXPERIMENT, with the
drift share as a metric; a ``Verdict``.

Predictions are judged like with like: only the champion version's rows of ``predictions``
(batch) and ``predictions_live`` (the stream's), against that same version's earlier rows, and
labelled by that version's own logged label definition. Which versions a window holds is
reported beside them.

The verdict only says what to do (``should_fail``, ``retrain_window``); the caller acts, e.g.
``enforce(verdict)`` raises ``DriftDetected`` when DRIFT_ACTION is ``fail``.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import logging
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from volpipe.config import Settings
from volpipe.dates import day_of_ns, parse_range
from volpipe.errors import DriftDetected, MonitoringDataError
from volpipe.features import FEATURE_COLUMNS
from volpipe.modeling import label as L
from volpipe.modeling.dataset import logged_label, read_window
from volpipe.monitoring import data, drift
from volpipe.tables import FEATURES, PREDICTIONS, PREDICTIONS_LIVE, ROW_KEYS, table_properties

log = logging.getLogger(__name__)

DEFAULT_MAX_ROWS = 200_000
SAMPLE_SEED = 0
# Batch inference's predictions and the stream's live ones: the same columns, judged the same way.
PREDICTION_TABLES = (PREDICTIONS, PREDICTIONS_LIVE)
PREDICTION_READ = ("probability", "predicted_label", "threshold", "model_name", "model_version")


@dataclasses.dataclass
class Verdict:
    """What a monitoring run found and what the caller should do about it."""

    report_date: str
    model_name: str
    model_version: str
    reference_run_id: str
    products: list[str]
    reference: dict[str, int]
    current: dict[str, int]
    features: list[drift.ColumnDrift]
    drifted_count: int
    drift_share: float
    share_threshold: float
    drift_detected: bool
    action: str
    retrain_requested: bool
    quality: dict[str, Any]
    predictions: dict[str, dict[str, Any]]
    report_dir: str
    retrain_window: dict[str, Any] | None = None
    files: list[str] = dataclasses.field(default_factory=list)
    mlflow_run_id: str | None = None

    @property
    def should_fail(self) -> bool:
        """Drift reached the threshold and DRIFT_ACTION is ``fail``."""
        return self.drift_detected and self.action == "fail"

    def summary(self) -> str:
        """One line for logs and the Airflow task."""
        drifted = ",".join(f.column for f in self.features if f.drifted) or "none"
        return (
            f"date={self.report_date} model={self.model_name} version={self.model_version} "
            f"drifted={self.drifted_count}/{len(self.features)} share={self.drift_share:.2f} "
            f"threshold={self.share_threshold} drift_detected={self.drift_detected} action={self.action} "
            f"retrain_requested={self.retrain_requested} drifted_features={drifted} run_id={self.mlflow_run_id}"
        )

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (``verdict.json``, the task's return value)."""
        return {**dataclasses.asdict(self), "should_fail": self.should_fail}

    @classmethod
    def from_dict(cls, fields: dict[str, Any]) -> Verdict:
        """The verdict ``to_dict`` gave (an Airflow task's return value)."""
        own = {f.name for f in dataclasses.fields(cls)}
        values = {key: value for key, value in fields.items() if key in own}
        return cls(**{**values, "features": [drift.ColumnDrift(**column) for column in fields["features"]]})


def enforce(verdict: Verdict) -> Verdict:
    """Acts on DRIFT_ACTION: raises on ``fail``, logs a warning on ``warn``.

    Raises:
        DriftDetected: Drift reached the threshold and the action is ``fail``.
    """
    if verdict.should_fail:
        raise DriftDetected(f"data drift: {verdict.summary()} reports={verdict.report_dir}")
    if verdict.drift_detected:
        log.warning("data drift %s reports=%s", verdict.summary(), verdict.report_dir)
    return verdict


def retrain_window(start_ns: int, end_ns: int, products: tuple[str, ...]) -> dict[str, Any]:
    """``train_nightly``'s conf for a retrain on the drifted period: the UTC days the current
    window ``[start_ns, end_ns)`` touches, and its products (docs/monitoring.md says why only those)."""
    return {
        "start": day_of_ns(start_ns).isoformat(),
        "end": day_of_ns(end_ns - 1).isoformat(),
        "products": list(products),
    }


def _read_features(
    settings: Settings, start_ns: int, end_ns: int, products: tuple[str, ...], window: str
) -> pd.DataFrame:
    path = settings.delta_table(FEATURES)
    frame = read_window(path, None, start_ns, end_ns, products).frame
    if frame.empty:
        raise MonitoringDataError(
            f"{window} window is empty: table={path} start_ns={start_ns} end_ns={end_ns} products={','.join(products)}"
        )
    return frame


def _scored_rows(
    path: Path, model_name: str, version: str, start_ns: int, end_ns: int, products: tuple[str, ...]
) -> tuple[pd.DataFrame, dict[str, int]]:
    """Rows of ``version`` of ``model_name`` in the window, and the rows of each version of it there."""
    rows = read_window(path, PREDICTION_READ, start_ns, end_ns, products).frame
    rows = rows[rows["model_name"] == model_name]
    versions = {str(v): int(n) for v, n in rows["model_version"].value_counts().sort_index().items()}
    return rows[rows["model_version"] == version], versions


def _judge_predictions(
    settings: Settings,
    table: str,
    model_name: str,
    reference: data.ReferenceWindow,
    products: tuple[str, ...],
    start_ns: int,
    end_ns: int,
    labelled: pd.DataFrame,
    max_rows: int,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Prediction drift and classification quality of the champion version's rows of ``table``.

    The current rows are the champion version's; they are compared with the same version's
    rows in its training window (when batch inference scored it), else in the window of equal
    length just before. Returns (snapshots by report name, the table's summary for the verdict).
    """
    version = reference.model_version
    summary: dict[str, Any] = {"model_version": version}
    path = settings.delta_table(table)
    if table_properties(path) is None:
        return {}, {**summary, "rows": 0, "skipped": f"no table at {path}", "classification": None}
    current, versions = _scored_rows(path, model_name, version, start_ns, end_ns, products)
    summary.update(rows=len(current), versions=versions, classification=None)
    if current.empty:
        held = f": the window holds versions {versions}" if versions else ""
        return {}, {**summary, "skipped": f"no predictions of version {version} in the window{held}"}
    snapshots: dict[str, Any] = {}
    earlier = {
        "training window": (reference.start_ns, reference.end_ns),
        "previous window": (2 * start_ns - end_ns, start_ns),
    }
    for source, (low, high) in earlier.items():
        previous = _scored_rows(path, model_name, version, low, high, products)[0]
        if not previous.empty:
            summary["reference"] = source
            snapshots[f"prediction_drift_{table}"], pred = drift.prediction_drift(
                data.sample_rows(previous, max_rows, SAMPLE_SEED),
                data.sample_rows(current, max_rows, SAMPLE_SEED),
                settings.drift_share_threshold,
            )
            summary.update(share=pred.share, columns=[dataclasses.asdict(c) for c in pred.columns])
            break
    else:
        summary["skipped"] = f"no earlier predictions of version {version} to compare with ({' or '.join(earlier)})"
    result = drift.classification_quality(current.merge(labelled, on=list(ROW_KEYS), how="left"))
    if result is not None:
        snapshots[f"classification_{table}"], summary["classification"] = result
    return snapshots, summary


def run_monitoring(
    settings: Settings,
    model_name: str,
    *,
    current_start_ns: int,
    current_end_ns: int,
    report_date: str | None = None,
    products: tuple[str, ...] | None = None,
    max_rows: int = DEFAULT_MAX_ROWS,
) -> Verdict:
    """Builds the reports for ``[current_start_ns, current_end_ns)`` against the champion's training window.

    Args:
        settings: The pipeline settings.
        model_name: Registered model whose ``champion`` alias gives the reference (MODEL_NAME).
        current_start_ns: Inclusive start of the current window (``exchange_ts_ns``).
        current_end_ns: Exclusive end of the current window.
        report_date: Folder name under ``REPORTS_DIR/evidently`` (default: UTC date of the window's end).
        products: Products to compare (default: the champion's).
        max_rows: Each window is sampled (seeded) down to this many rows.

    Returns:
        The verdict; nothing is raised for drift itself (see ``enforce``).

    Raises:
        ReferenceWindowError: No champion or no training window in its run.
        MonitoringDataError: A features table or window is missing or empty.
    """
    import mlflow

    reference = data.reference_window(settings.mlflow_tracking_uri, model_name)
    products = tuple(products or reference.products)
    report_date = report_date or day_of_ns(current_end_ns - 1).isoformat()  # integers: a float rounds up to midnight
    ref_rows = _read_features(settings, reference.start_ns, reference.end_ns, products, "reference")
    cur_rows = _read_features(settings, current_start_ns, current_end_ns, products, "current")
    ref, cur = data.sample_rows(ref_rows, max_rows, SAMPLE_SEED), data.sample_rows(cur_rows, max_rows, SAMPLE_SEED)

    snapshots = {}
    snapshots["data_drift"], features = drift.data_drift(
        ref, cur, drift.drift_columns(reference.feature_columns), settings.drift_share_threshold
    )
    snapshots["data_quality"], quality = drift.data_quality(ref, cur, list(FEATURE_COLUMNS))
    # The champion's own label, on complete horizons inside the window (rows in the kernel's order).
    y = L.labels_as_trained(cur_rows, *logged_label(settings, reference.run_id))
    labelled = cur_rows[list(ROW_KEYS)].assign(y=y)
    predictions = {}
    for table in PREDICTION_TABLES:
        found, predictions[table] = _judge_predictions(
            settings, table, model_name, reference, products, current_start_ns, current_end_ns, labelled, max_rows
        )
        snapshots.update(found)

    drifted = features.share >= settings.drift_share_threshold
    retrain = drifted and settings.drift_trigger_retrain
    verdict = Verdict(
        report_date=report_date,
        model_name=model_name,
        model_version=reference.model_version,
        reference_run_id=reference.run_id,
        products=list(products),
        reference={"start_ns": reference.start_ns, "end_ns": reference.end_ns, "rows": len(ref_rows)},
        current={
            "start_ns": current_start_ns,
            "end_ns": current_end_ns,
            "rows": len(cur_rows),
            "labelled_rows": int(np.isfinite(y).sum()),
        },
        features=features.columns,
        drifted_count=features.drifted_count,
        drift_share=features.share,
        share_threshold=settings.drift_share_threshold,
        drift_detected=drifted,
        action=settings.drift_action,
        retrain_requested=retrain,
        quality=quality,
        predictions=predictions,
        retrain_window=retrain_window(current_start_ns, current_end_ns, products) if retrain else None,
        report_dir=str(settings.reports_dir / "evidently" / report_date),
    )
    mlflow.set_tracking_uri(settings.mlflow_tracking_uri)
    mlflow.set_experiment(settings.monitoring_experiment)
    with mlflow.start_run(run_name=f"monitoring {report_date}") as run:
        verdict.mlflow_run_id = run.info.run_id
        _write(Path(verdict.report_dir), snapshots, verdict)
        mlflow.log_params(
            {
                "model_name": model_name,
                "model_version": verdict.model_version,
                "reference_run_id": reference.run_id,
                "products": ",".join(products),
                "current_start_ns": current_start_ns,
                "current_end_ns": current_end_ns,
                "share_threshold": settings.drift_share_threshold,
                "action": settings.drift_action,
            }
        )
        mlflow.log_metrics(
            {
                "drift_share": features.share,
                "drifted_features": features.drifted_count,
                "reference_rows": len(ref_rows),
                "current_rows": len(cur_rows),
                **{f"drift_score.{c.column}": c.score for c in features.columns},
                **{
                    f"prediction_drift_share.{table}": found["share"]
                    for table, found in predictions.items()
                    if "share" in found
                },
            }
        )
        mlflow.set_tag("drift_detected", str(drifted).lower())
        mlflow.log_artifacts(verdict.report_dir, artifact_path=f"evidently/{report_date}")
    log.info("monitoring done %s", verdict.summary())
    return verdict


def _write(folder: Path, snapshots: dict[str, Any], verdict: Verdict) -> None:
    """Saves each snapshot as ``<name>.html`` and ``<name>.json``, then ``verdict.json``; sets ``verdict.files``."""
    folder.mkdir(parents=True, exist_ok=True)
    for stale in [*folder.glob("*.html"), *folder.glob("*.json")]:  # a re-run for the same date replaces them
        stale.unlink()
    files = []
    for name, snapshot in snapshots.items():
        snapshot.save_html(str(folder / f"{name}.html"))
        snapshot.save_json(str(folder / f"{name}.json"))
        files += [str(folder / f"{name}.html"), str(folder / f"{name}.json")]
    files.append(str(folder / "verdict.json"))
    verdict.files = files  # before the dump: verdict.json lists the files too
    (folder / "verdict.json").write_text(json.dumps(verdict.to_dict(), indent=2, default=str))


def monitor_window(
    settings: Settings,
    start: str | None,
    end: str | None,
    run_after: dt.datetime | None,
    *,
    products: tuple[str, ...] | None = None,
) -> Verdict:
    """The monitoring DAG's run: the days ``start``..``end``, or the MONITORING_WINDOW_HOURS before
    ``run_after``, against the champion's training window."""
    if start:
        low, high = parse_range(start, end).bounds_ns
    else:
        stop = run_after or dt.datetime.now(dt.UTC)
        high = int(stop.timestamp() * 1e6) * 1000
        low = high - int(settings.monitoring_window_hours * 3600) * 1_000_000_000
    return run_monitoring(settings, settings.model_name, current_start_ns=low, current_end_ns=high, products=products)
