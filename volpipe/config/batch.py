"""The settings of the batch side and of operations: MLflow, Airflow, modeling, the supervision of
the live path, monitoring and table maintenance.

Declarations only (variable, default, parser, help text, group); ``Settings`` adds them to
its fields, after those of ``LiveSettings``.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from volpipe.config.parsers import (
    _bool,
    _choice,
    _cron,
    _fraction,
    _label_mode,
    _name,
    _optional_path,
    _port,
    _positive_float,
    _positive_int,
    _share,
    _url,
    setting,
)


@dataclasses.dataclass(frozen=True)
class BatchSettings:
    """The fields of ``Settings`` that training, inference, monitoring and the supervisor read."""

    # MLflow.
    mlflow_tracking_uri: str = setting(
        "MLFLOW_TRACKING_URI",
        "http://localhost:5001",
        _url("http", "https"),
        "MLflow tracking server.",
        group="mlflow",
    )
    mlflow_backend_store_uri: str = setting(
        "MLFLOW_BACKEND_STORE_URI",
        "",
        str,
        "Server's backend store (default sqlite:///DATA_DIR/mlflow/mlflow.db).",
        group="mlflow",
    )

    # Airflow (the embedded scheduler, dag-processor, triggerer and api-server).
    airflow_port: int = setting("AIRFLOW_PORT", "8080", _port, "Airflow API server and UI port.", group="airflow")
    airflow_parallelism: int = setting(
        "AIRFLOW_PARALLELISM",
        "4",
        _positive_int,
        "Task slots; each LocalExecutor worker costs ~50 MB.",
        group="airflow",
    )

    # Modeling.
    label_mode: str = setting(
        "LABEL_MODE",
        "relative",
        _label_mode,
        "Label: relative (forward vol >= k x a trailing vol), trailing (tau from the product's recent past), "
        "forward (tau fixed in training), or current (a leak).",
        group="modeling",
    )
    label_horizon: int = setting(
        "LABEL_HORIZON",
        "60",
        _positive_int,
        "H: future returns (ticks) of the forward volatility; also the embargo.",
        group="modeling",
    )
    label_quantile: float = setting(
        "LABEL_QUANTILE",
        "0.95",
        _fraction,
        "tau = this quantile of the forward volatility: over the trailing rows (trailing) or the training split "
        "(forward).",
        group="modeling",
    )
    label_relative_k: float = setting(
        "LABEL_RELATIVE_K",
        "2.0",
        _positive_float,
        "relative mode: y = 1 when forward vol >= k x the trailing vol.",
        group="modeling",
    )
    label_relative_column: str = setting(
        "LABEL_RELATIVE_COLUMN",
        "vol_300t",
        _name,
        "relative mode: the trailing volatility column.",
        group="modeling",
    )
    label_trailing_rows: int = setting(
        "LABEL_TRAILING_ROWS",
        "1500",
        _positive_int,
        "trailing mode: S, the product's past rows whose forward volatilities set tau (half of them needed).",
        group="modeling",
    )
    label_max_gap_seconds: float = setting(
        "LABEL_MAX_GAP_SECONDS",
        "30",
        _positive_float,
        "Longest silence between two ticks of a product that a label window (or a row's trailing windows) may span.",
        group="modeling",
    )
    model_name: str = setting(
        "MODEL_NAME", "volpipe-volatility", _name, "Registered model name in MLflow.", group="modeling"
    )
    mlflow_experiment: str = setting(
        "MLFLOW_EXPERIMENT",
        "volpipe-volatility",
        _name,
        "Experiment of training and evaluation runs.",
        group="modeling",
    )
    train_min_rows: int = setting(
        "TRAIN_MIN_ROWS",
        "1000",
        _positive_int,
        "Labelled rows a training needs at least (else TrainingDataError).",
        group="modeling",
    )
    walk_forward_folds: int = setting(
        "WALK_FORWARD_FOLDS",
        "5",
        _positive_int,
        "Expanding-window folds of the walk-forward evaluation.",
        group="modeling",
    )
    bootstrap_samples: int = setting(
        "BOOTSTRAP_SAMPLES",
        "200",
        _positive_int,
        "Moving-block bootstrap resamples of the PR-AUC differences (walk-forward and the promotion gate).",
        group="modeling",
    )
    model_seed: int = setting("MODEL_SEED", "42", int, "Seed of the models and the bootstrap.", group="modeling")
    train_schedule: str = setting(
        "TRAIN_SCHEDULE", "0 2 * * *", _cron, "Cron schedule (UTC) of the train_nightly DAG.", group="modeling"
    )
    train_window_days: int = setting(
        "TRAIN_WINDOW_DAYS",
        "7",
        _positive_int,
        "Days of features before the run that train_nightly trains on.",
        group="modeling",
    )

    # Supervision of the live path (`python -m volpipe.ops.services up ingestor stream`).
    restart_initial_seconds: float = setting(
        "RESTART_INITIAL_SECONDS",
        "1",
        _positive_float,
        "Wait before restarting a supervised process (ingestor, stream) that exited; doubles per restart.",
        group="supervise",
    )
    restart_max_seconds: float = setting(
        "RESTART_MAX_SECONDS",
        "60",
        _positive_float,
        "Cap of the restart backoff.",
        group="supervise",
    )
    restart_reset_seconds: float = setting(
        "RESTART_RESET_SECONDS",
        "300",
        _positive_float,
        "A supervised process that ran this long before exiting is restarted after RESTART_INITIAL_SECONDS again.",
        group="supervise",
    )

    # Monitoring and maintenance.
    reports_dir: Path = setting(
        "REPORTS_DIR",
        "",
        _optional_path,
        "Reports: Evidently under evidently/<date>/ (default DATA_DIR/reports).",
        group="monitoring",
    )
    monitoring_experiment: str = setting(
        "MONITORING_EXPERIMENT",
        "volpipe-monitoring",
        _name,
        "MLflow experiment of the monitoring runs.",
        group="monitoring",
    )
    monitoring_window_hours: float = setting(
        "MONITORING_WINDOW_HOURS",
        "24",
        _positive_float,
        "Current window of the drift reports: hours before its end.",
        group="monitoring",
    )
    drift_share_threshold: float = setting(
        "DRIFT_SHARE_THRESHOLD",
        "0.5",
        _share,
        "Share of drifted features from which the data counts as drifted.",
        group="monitoring",
    )
    drift_action: str = setting(
        "DRIFT_ACTION",
        "warn",
        _choice("fail", "warn"),
        "What the monitoring run does on drift: fail or warn.",
        group="monitoring",
    )
    drift_trigger_retrain: bool = setting(
        "DRIFT_TRIGGER_RETRAIN",
        "false",
        _bool,
        "On drift, ask for an early retrain (train_nightly).",
        group="monitoring",
    )
    delta_vacuum_retention_hours: float = setting(
        "DELTA_VACUUM_RETENTION_HOURS",
        "168",
        _positive_float,
        "VACUUM deletes unreferenced data files older than this (Delta's default: 7 days).",
        group="monitoring",
    )
    delta_vacuum_min_retention_hours: float = setting(
        "DELTA_VACUUM_MIN_RETENTION_HOURS",
        "168",
        _positive_float,
        "Lowest retention maintenance accepts without --force (readers and the stream need the files).",
        group="monitoring",
    )
