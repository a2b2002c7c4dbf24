"""One monitoring run: reference vs current window, Evidently reports on disk and in MLflow, a verdict.

Inputs: ``Settings`` (tables, REPORTS_DIR, MLflow, DRIFT_* settings), the registered model's
name (its champion gives the reference window, ``volpipe.monitoring.data``) and the current
window's ``exchange_ts_ns`` bounds. Outputs: under ``REPORTS_DIR/evidently/<date>/`` the HTML
and JSON of each report (``data_drift``, ``data_quality``, and ``prediction_drift`` /
``classification`` when their inputs exist) plus ``verdict.json``; the same files as artifacts
of a run in the MONITORING_EXPERIMENT, with the drift share as a metric; a ``Verdict``.

The verdict only says what to do (``should_fail``, ``retrain_requested``); the caller acts,
e.g. ``enforce(verdict)`` raises ``DriftDetected`` when DRIFT_ACTION is ``fail``.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd

from volpipe.config import Settings
from volpipe.dates import day_of_ns, parse_range
from volpipe.errors import DriftDetected, MonitoringDataError
from volpipe.features import FEATURE_COLUMNS
from volpipe.monitoring import data, drift
from volpipe.tables import FEATURES, PREDICTIONS

log = logging.getLogger(__name__)

DEFAULT_MAX_ROWS = 200_000
SAMPLE_SEED = 0
PREDICTION_COLUMNS = ["product_id", "ingest_seq", "ticker_idx", "exchange_ts_ns", "probability", "predicted_label"]


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
    prediction_drift: dict[str, Any]
    classification: dict[str, Any] | None
    report_dir: str
    files: list[str] = dataclasses.field(default_factory=list)
    mlflow_run_id: str | None = None

    @property
    def should_fail(self) -> bool:
        """Drift reached the threshold and DRIFT_ACTION is ``fail``."""
        return self.drift_detected and self.action == "fail"

    def summary(self) -> str:
        """One line for logs and the Airflow task."""
        drifted = ",".join(f.column for f in self.features if f.drifted) or "none"
        return (f"date={self.report_date} model={self.model_name} version={self.model_version} "
                f"drifted={self.drifted_count}/{len(self.features)} share={self.drift_share:.2f} "
                f"threshold={self.share_threshold} drift_detected={self.drift_detected} action={self.action} "
                f"retrain_requested={self.retrain_requested} drifted_features={drifted} run_id={self.mlflow_run_id}")

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (``verdict.json``, the task's return value)."""
        return {**dataclasses.asdict(self), "should_fail": self.should_fail}


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


def _read_features(settings: Settings, start_ns: int, end_ns: int, products: tuple[str, ...],
                   window: str) -> pd.DataFrame:
    path = settings.delta_table(FEATURES)
    frame = data.read_window(path, start_ns, end_ns, products)
    if frame.empty:
        raise MonitoringDataError(f"{window} window is empty: table={path} start_ns={start_ns} end_ns={end_ns} "
                                  f"products={','.join(products)}")
    return frame


def _predictions(settings: Settings, model_name: str, products: tuple[str, ...], reference: data.ReferenceWindow,
                 start_ns: int, end_ns: int) -> tuple[pd.DataFrame, pd.DataFrame, str]:
    """Current predictions and the ones to compare them with: the training window's, else the previous window's."""
    path = settings.delta_table(PREDICTIONS)
    if not data.table_exists(path):
        return pd.DataFrame(), pd.DataFrame(), f"no predictions table at {path}"

    def read(lo: int, hi: int) -> pd.DataFrame:
        frame = data.read_window(path, lo, hi, products)
        return frame[frame["model_name"] == model_name] if "model_name" in frame.columns else frame

    current = read(start_ns, end_ns)
    previous = read(reference.start_ns, reference.end_ns)
    source = "training window"
    if previous.empty:
        previous, source = read(2 * start_ns - end_ns, start_ns), "previous window"
    return previous, current, source


def run_monitoring(
    settings: Settings, model_name: str, *, current_start_ns: int, current_end_ns: int,
    report_date: str | None = None, products: tuple[str, ...] | None = None,
    label_fn: Callable[[pd.DataFrame], pd.Series] | None = None, max_rows: int = DEFAULT_MAX_ROWS,
) -> Verdict:
    """Builds the reports for ``[current_start_ns, current_end_ns)`` against the champion's training window.

    Args:
        settings: The pipeline settings.
        model_name: Registered model whose ``champion`` alias gives the reference (MODEL_NAME).
        current_start_ns: Inclusive start of the current window (``exchange_ts_ns``).
        current_end_ns: Exclusive end of the current window.
        report_date: Folder name under ``REPORTS_DIR/evidently`` (default: UTC date of the window's end).
        products: Products to compare (default: the champion's).
        label_fn: Optional labeller: current feature rows (sorted by key) -> 0/1 labels, NaN where
            unknown. With it, scored rows get a classification-quality report.
        max_rows: Each window is sampled (seeded) down to this many rows.

    Returns:
        The verdict; nothing is raised for drift itself (see ``enforce``).

    Raises:
        ReferenceWindowError: No champion or no training window in its run.
        MonitoringDataError: A features table or window is missing or empty.
    """
    import mlflow
    from mlflow.tracking import MlflowClient

    client = MlflowClient(settings.mlflow_tracking_uri)
    version = data.champion_version(client, model_name)
    reference = data.reference_window(client, model_name)
    products = tuple(products or reference.products)
    report_date = report_date or day_of_ns(current_end_ns - 1).isoformat()  # integers: a float rounds up to midnight
    ref_rows = _read_features(settings, reference.start_ns, reference.end_ns, products, "reference")
    cur_rows = _read_features(settings, current_start_ns, current_end_ns, products, "current")
    ref, cur = data.sample_rows(ref_rows, max_rows, SAMPLE_SEED), data.sample_rows(cur_rows, max_rows, SAMPLE_SEED)

    snapshots = {}
    snapshots["data_drift"], features = drift.data_drift(
        ref, cur, drift.drift_columns(reference.feature_columns), settings.drift_share_threshold)
    snapshots["data_quality"], quality = drift.data_quality(ref, cur, list(FEATURE_COLUMNS))
    previous, scored, source = _predictions(settings, model_name, products, reference, current_start_ns, current_end_ns)
    predictions: dict[str, Any] = {"reference": source, "rows": len(scored)}
    if not scored.empty and not previous.empty:
        snapshots["prediction_drift"], pred = drift.prediction_drift(
            data.sample_rows(previous, max_rows, SAMPLE_SEED), data.sample_rows(scored, max_rows, SAMPLE_SEED),
            settings.drift_share_threshold)
        predictions.update(share=pred.share, columns=[dataclasses.asdict(c) for c in pred.columns])
    else:
        predictions["skipped"] = "no current predictions" if scored.empty else f"no predictions to compare ({source})"
    classification = None
    if label_fn is not None and not scored.empty:
        labelled = cur_rows[list(data.ROW_KEY)].assign(y=label_fn(cur_rows).to_numpy())
        result = drift.classification_quality(scored.merge(labelled, on=list(data.ROW_KEY), how="left"))
        if result is not None:
            snapshots["classification"], classification = result

    drifted = features.share >= settings.drift_share_threshold
    verdict = Verdict(
        report_date=report_date, model_name=model_name, model_version=str(version.version),
        reference_run_id=version.run_id, products=list(products),
        reference={"start_ns": reference.start_ns, "end_ns": reference.end_ns, "rows": len(ref_rows)},
        current={"start_ns": current_start_ns, "end_ns": current_end_ns, "rows": len(cur_rows)},
        features=features.columns, drifted_count=features.drifted_count, drift_share=features.share,
        share_threshold=settings.drift_share_threshold, drift_detected=drifted, action=settings.drift_action,
        retrain_requested=drifted and settings.drift_trigger_retrain, quality=quality,
        prediction_drift=predictions, classification=classification,
        report_dir=str(settings.reports_dir / "evidently" / report_date),  # type: ignore[operator]
    )
    mlflow.set_tracking_uri(settings.mlflow_tracking_uri)
    mlflow.set_experiment(settings.monitoring_experiment)
    with mlflow.start_run(run_name=f"monitoring {report_date}") as run:
        verdict.mlflow_run_id = run.info.run_id
        _write(Path(verdict.report_dir), snapshots, verdict)
        mlflow.log_params({"model_name": model_name, "model_version": verdict.model_version,
                           "reference_run_id": version.run_id, "products": ",".join(products),
                           "current_start_ns": current_start_ns, "current_end_ns": current_end_ns,
                           "share_threshold": settings.drift_share_threshold, "action": settings.drift_action})
        mlflow.log_metrics({"drift_share": features.share, "drifted_features": features.drifted_count,
                            "reference_rows": len(ref_rows), "current_rows": len(cur_rows),
                            **{f"drift_score.{c.column}": c.score for c in features.columns}})
        if "share" in predictions:
            mlflow.log_metric("prediction_drift_share", predictions["share"])
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


def champion_labeller(settings: Settings) -> Callable[[pd.DataFrame], pd.Series] | None:
    """Labels current rows by the champion's own logged definition (mode, H, tau); None without one."""
    from volpipe.modeling import label as L
    from volpipe.modeling import registry

    version = registry.champion(settings.mlflow_tracking_uri, settings.model_name)
    if version is None:
        return None
    params = registry.client(settings.mlflow_tracking_uri).get_run(version.run_id).data.params
    spec, tau = L.logged_definition(params, L.label_spec(settings))

    def labels(rows: pd.DataFrame) -> pd.Series:
        ordered = rows.sort_values(list(L.ORDER_COLUMNS), kind="stable")  # the kernel's order per product
        labelled = L.labels_as_trained(ordered.reset_index(drop=True), spec, tau)
        return pd.Series(labelled, index=ordered.index).reindex(rows.index)

    return labels


def monitor_window(settings: Settings, start: str | None, end: str | None, run_after: dt.datetime | None, *,
                   products: tuple[str, ...] | None = None) -> Verdict:
    """The monitoring DAG's run: the days ``start``..``end``, or the MONITORING_WINDOW_HOURS before
    ``run_after``, against the champion's training window, labelled where horizons are complete."""
    if start:
        low, high = parse_range(start, end).bounds_ns
    else:
        stop = run_after or dt.datetime.now(dt.UTC)
        high = int(stop.timestamp() * 1e6) * 1000
        low = high - int(settings.monitoring_window_hours * 3600) * 1_000_000_000
    return run_monitoring(settings, settings.model_name, current_start_ns=low, current_end_ns=high,
                          products=products, label_fn=champion_labeller(settings))

