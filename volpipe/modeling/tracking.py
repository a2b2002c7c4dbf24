"""MLflow side of training: parent and child runs, model logging, registration, promotion.

Inputs: the fitted models and labelled splits from ``volpipe.modeling.train``. Outputs: runs
on the tracking server, one registered version of the candidate (registered once every run
is logged, with its decision tags), the ``champion`` alias moved last when the candidate
wins, and the summary dict that ``train.run`` returns.

Contract with monitoring (docs/modeling.md): each model's child run logs ``train_start_ns``,
``train_end_ns`` (half-open exchange-time bounds of the training rows), ``products``,
``feature_columns`` (comma-separated) and ``label_mode``; the registered version's run is
that child run.
"""

from __future__ import annotations

import logging
import socket
from typing import Any

import numpy as np

from volpipe.config import Settings
from volpipe.modeling import label as L
from volpipe.modeling import models as M
from volpipe.modeling import registry
from volpipe.modeling.dataset import FeatureData

log = logging.getLogger(__name__)
SPLITS = ("train", "validation", "test")
# Tag of a model version whose training was killed before it ended (value: its parent run id).
KILLED_TRAINING_TAG = "volpipe.training_killed"


def common_params(settings: Settings, spec: L.LabelSpec, data: FeatureData, prepared: Any) -> dict[str, Any]:
    """Parameters shared by the parent and every child run."""
    products = sorted(set().union(*(set(part["product_id"]) for part in prepared.splits.values())))
    params = {
        **L.definition_params(spec), "tau": prepared.tau, "products": ",".join(products),
        "delta_table": str(data.table), "delta_version": data.version, "seed": settings.model_seed,
    }
    for split in SPLITS:
        prefix = "train" if split == "train" else ("val" if split == "validation" else "test")
        params[f"{prefix}_start_ns"] = prepared.bounds[split]["start_ns"]
        params[f"{prefix}_end_ns"] = prepared.bounds[split]["end_ns"]
    return params


def pip_requirements() -> list[str]:
    """The packages a logged model needs, pinned to the versions that trained it."""
    from importlib.metadata import version

    return [f"{package}=={version(package)}" for package in ("mlflow", "scikit-learn", "skops", "numpy", "pandas")]


def _log_figure(fig: Any, path: str) -> None:
    """Logs a matplotlib figure as a PNG artifact and frees it (pyplot keeps figures open)."""
    import matplotlib.pyplot as plt
    import mlflow

    mlflow.log_figure(fig, path)
    plt.close(fig)


def _log_child(name: str, trained: Any, prepared: Any, params: dict[str, Any], seed: int) -> str | None:
    """One model's child run; returns the logged model's URI (None for the baseline, which logs no model)."""
    import mlflow
    import mlflow.sklearn
    from mlflow.models import infer_signature

    features = list(M.FEATURES[name])
    mlflow.log_params({**params, "model": name, "feature_columns": ",".join(features),
                       registry.THRESHOLD_PARAM: trained.threshold,
                       **{f"hp_{k}": v for k, v in M.hyperparameters(name, trained.model).items()}})
    mlflow.log_metrics({f"{split}_{key}": value for split in SPLITS
                        for key, value in trained.metrics[split].items()})
    val = prepared.splits["validation"]
    val_y, test_y = val["y"].to_numpy(int), prepared.splits["test"]["y"].to_numpy(int)
    curves = {"validation": (val_y, trained.scores["validation"]), "test": (test_y, trained.scores["test"])}
    _log_figure(M.pr_curve_figure(curves, f"{name}: precision-recall"), "pr_curve.png")
    mlflow.log_dict(prepared.bounds, "split_bounds.json")
    if name == M.BASELINE:
        return None
    _log_figure(M.calibration_figure(test_y, trained.scores["test"], f"{name}: calibration (test)"),
                "calibration.png")
    _log_figure(M.importance_figure(name, trained.model, val, val_y, seed), "importance.png")
    example = prepared.splits["train"][features].head(200)
    info = mlflow.sklearn.log_model(
        trained.model, name="model", signature=infer_signature(example, trained.model.predict_proba(example)),
        input_example=example.head(3), pyfunc_predict_fn="predict_proba",
        # Inferring them runs a subprocess that re-imports the model (~8 s each): they are known.
        pip_requirements=pip_requirements(),
        skops_trusted_types=registry.SKOPS_TRUSTED_TYPES,
    )
    return info.model_uri


def champion_score(settings: Settings, prepared: Any) -> tuple[Any, float | None, str]:
    """The current champion, its PR-AUC re-scored on this training's validation rows, and a note.

    A champion that reads a column these rows lack cannot be compared: its score is None and
    the note says why (the candidate then takes over, as it would from no champion).
    """
    current = registry.champion(settings.mlflow_tracking_uri, settings.model_name)
    if current is None:
        return None, None, "no champion"
    model, _ = registry.load(settings.mlflow_tracking_uri, settings.model_name, current.version)
    val = prepared.splits["validation"]
    columns = registry.input_columns(model)
    missing = [column for column in columns if column not in val]
    if missing:
        return current, None, f"champion reads columns absent here: {missing}"
    with M.single_threaded():
        probabilities = np.asarray(model.predict(val[columns]))[:, 1]
    return current, M.pr_auc(val["y"].to_numpy(int), probabilities), "re-scored on the same validation rows"


def owner_tags() -> dict[str, str]:
    """The host and process of this training, as run tags (read by ``close_abandoned_runs``)."""
    import psutil

    me = psutil.Process()
    return {"volpipe.host": socket.gethostname(), "volpipe.pid": str(me.pid),
            "volpipe.pid_started": repr(me.create_time())}


def close_abandoned_runs(tracking_uri: str, experiment_id: str) -> list[str]:
    """Marks KILLED the runs left RUNNING by a training of this host whose process is gone, and
    tags ``KILLED_TRAINING_TAG`` on the versions those trainings registered.

    MLflow has no heartbeat: a training killed (SIGKILL, OOM, a lost worker) or cut off from
    the server never ends its runs, which would show as RUNNING forever. The retry closes them.
    Runs of another host, or of a process still alive, are left alone. A version of a killed
    training is complete (registered last, with its tags) but may say ``promoted`` without
    being the champion (killed before the alias moved): the tag tells why.

    Returns:
        The ids of the runs it closed.
    """
    import psutil

    client = registry.client(tracking_uri)
    running = client.search_runs([experiment_id], "attributes.status = 'RUNNING' and "
                                 f"tags.`volpipe.host` = '{socket.gethostname()}'", max_results=1000)
    closed = []
    for run in running:
        try:
            started = repr(psutil.Process(int(run.data.tags["volpipe.pid"])).create_time())
        except psutil.NoSuchProcess:
            started = None
        if started != run.data.tags["volpipe.pid_started"]:  # gone, or its pid taken by another process
            client.set_terminated(run.info.run_id, "KILLED")
            closed.append(run.info.run_id)
    for run_id in closed:
        family = [run_id, *(child.info.run_id for child in client.search_runs(
            [experiment_id], f"tags.mlflow.parentRunId = '{run_id}'", max_results=1000))]
        for version in client.search_model_versions(f"run_id IN ({','.join(map(repr, family))})"):
            client.set_model_version_tag(version.name, version.version, KILLED_TRAINING_TAG, run_id)
    if closed:
        log.warning("runs of a killed training marked KILLED run_ids=%s", ",".join(closed))
    return closed


def log_training(settings: Settings, spec: L.LabelSpec, data: FeatureData, prepared: Any,
                 trained: dict[str, Any], candidate: str, commit: str) -> dict[str, Any]:
    """Logs the parent and child runs, registers ``candidate`` and decides the promotion.

    Returns:
        The training summary (see ``volpipe.modeling.train.run``).
    """
    import mlflow

    mlflow.set_tracking_uri(settings.mlflow_tracking_uri)
    mlflow.set_registry_uri(settings.mlflow_tracking_uri)
    experiment = mlflow.set_experiment(settings.mlflow_experiment)
    close_abandoned_runs(settings.mlflow_tracking_uri, experiment.experiment_id)
    params = common_params(settings, spec, data, prepared)
    tags = {"mlflow.source.git.commit": commit, "delta_version": str(data.version), **owner_tags()}
    # Before any logging: a champion that fails to load stops the training with nothing registered.
    current, old_score, note = champion_score(settings, prepared)
    model_uris, child_runs = {}, {}
    with mlflow.start_run(run_name=f"train-{spec.mode}", tags=tags) as parent:
        mlflow.log_params({**params, "candidate": candidate})
        mlflow.log_dict(prepared.bounds, "split_bounds.json")
        for name in M.MODEL_NAMES:
            with mlflow.start_run(run_name=name, nested=True, tags=tags) as child:
                model_uris[name] = _log_child(name, trained[name], prepared, params, settings.model_seed)
                child_runs[name] = child.info.run_id
            for split in ("validation", "test"):
                mlflow.log_metric(f"{name}_{split}_pr_auc", trained[name].metrics[split]["pr_auc"])
        new_score = trained[candidate].metrics["validation"]["pr_auc"]
        promoted = old_score is None or new_score > old_score
        decision = {
            "promotion.decision": "promoted" if promoted else "kept_champion",
            "promotion.candidate_validation_pr_auc": f"{new_score:.6f}",
            "promotion.champion_version_before": str(current.version) if current else "none",
            "promotion.champion_validation_pr_auc": "none" if old_score is None else f"{old_score:.6f}",
            "promotion.note": note,
        }
        mlflow.set_tags(decision)
        registry.client(settings.mlflow_tracking_uri).set_tag(child_runs[candidate], "promotion.decision",
                                                              decision["promotion.decision"])
        # Registered only now, with its decision tags in the same request (one transaction on the
        # server): a version never exists without its artifacts, metrics and tags. The alias moves
        # last, so a process killed before it leaves the champion where it was (docs/reliability.md).
        version = mlflow.register_model(model_uris[candidate], settings.model_name, tags=decision).version
        mlflow.set_tag("promotion.candidate_version", str(version))
        if promoted:
            registry.promote(settings.mlflow_tracking_uri, settings.model_name, version, {})
    log.info("promotion model=%s version=%s decision=%s candidate_val_pr_auc=%.4f champion_val_pr_auc=%s",
             settings.model_name, version, decision["promotion.decision"], new_score, old_score)
    test = prepared.splits["test"]
    return {
        # Plain JSON (Airflow returns it as an XCom): relative mode's NaN tau becomes null.
        "run_id": parent.info.run_id, "label_mode": spec.mode, "tau": None if np.isnan(prepared.tau) else prepared.tau,
        "delta_version": data.version,
        "rows": {split: len(prepared.splits[split]) for split in SPLITS},
        "positive_rate": {split: float(prepared.splits[split]["y"].mean()) for split in SPLITS},
        "models": {name: {"validation_pr_auc": trained[name].metrics["validation"]["pr_auc"],
                          "test_pr_auc": trained[name].metrics["test"]["pr_auc"], "run_id": child_runs[name]}
                   for name in M.MODEL_NAMES},
        "test_rows": len(test), "candidate": candidate, "model_name": settings.model_name,
        "registered_version": str(version), "promoted": promoted,
        "candidate_validation_pr_auc": new_score, "champion_validation_pr_auc": old_score,
        "champion_version": str(version) if promoted else str(current.version),
        "test_pr_auc_vs_baseline": trained[candidate].metrics["test"]["pr_auc"]
        - trained[M.BASELINE].metrics["test"]["pr_auc"],
    }
