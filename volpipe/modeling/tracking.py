"""MLflow side of training: parent and child runs, model logging, registration, promotion.

Inputs: the fitted models and labelled splits from ``volpipe.modeling.train`` and the
promotion gate's verdict (``volpipe.modeling.evaluate.decide_promotion``). Outputs: runs on
the tracking server, one registered version of the candidate (registered once every run is
logged, with the verdict as tags, whatever it is), the ``champion`` alias moved last and only
when the verdict is ``promoted``, and the summary dict that ``train.run`` returns.

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
        **L.definition_params(spec),
        "tau": prepared.tau,
        "products": ",".join(products),
        "delta_table": str(data.table),
        "delta_version": data.version,
        "seed": settings.model_seed,
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
    mlflow.log_params(
        {
            **params,
            "model": name,
            "feature_columns": ",".join(features),
            registry.THRESHOLD_PARAM: trained.threshold,
            **{f"hp_{k}": v for k, v in M.hyperparameters(name, trained.model).items()},
        }
    )
    mlflow.log_metrics({f"{split}_{key}": value for split in SPLITS for key, value in trained.metrics[split].items()})
    val = prepared.splits["validation"]
    val_y, test_y = val["y"].to_numpy(int), prepared.splits["test"]["y"].to_numpy(int)
    curves = {"validation": (val_y, trained.scores["validation"]), "test": (test_y, trained.scores["test"])}
    _log_figure(M.pr_curve_figure(curves, f"{name}: precision-recall"), "pr_curve.png")
    mlflow.log_dict(prepared.bounds, "split_bounds.json")
    if name == M.BASELINE:
        return None
    _log_figure(M.calibration_figure(test_y, trained.scores["test"], f"{name}: calibration (test)"), "calibration.png")
    _log_figure(M.importance_figure(name, trained.model, val, val_y, seed), "importance.png")
    example = prepared.splits["train"][features].head(200)
    info = mlflow.sklearn.log_model(
        trained.model,
        name="model",
        signature=infer_signature(example, trained.model.predict_proba(example)),
        input_example=example.head(3),
        pyfunc_predict_fn="predict_proba",
        # Inferring them runs a subprocess that re-imports the model (~8 s each): they are known.
        pip_requirements=pip_requirements(),
        skops_trusted_types=registry.SKOPS_TRUSTED_TYPES,
    )
    return info.model_uri


def rescore_champion(settings: Settings, rows: Any) -> Any:
    """The current champion (``evaluate.Champion``) with its P(y=1) on ``rows`` (the gate's rows),
    or None when there is none.

    A champion that reads a column these rows lack cannot be compared: its scores are None and
    the note says why (the gate then judges the candidate as it would with no champion).
    """
    from volpipe.modeling.evaluate import Champion

    current = registry.champion(settings.mlflow_tracking_uri, settings.model_name)
    if current is None:
        return None
    model, _ = registry.load(settings.mlflow_tracking_uri, settings.model_name, current.version)
    columns = registry.input_columns(model)
    missing = [column for column in columns if column not in rows]
    if missing:
        return Champion(str(current.version), None, f"champion reads columns absent here: {missing}")
    with M.single_threaded():
        probabilities = np.asarray(model.predict(rows[columns]))[:, 1]
    return Champion(str(current.version), probabilities, "re-scored on the same test rows")


def owner_tags() -> dict[str, str]:
    """The host and process of this training, as run tags (read by ``close_abandoned_runs``)."""
    import psutil

    me = psutil.Process()
    return {
        "volpipe.host": socket.gethostname(),
        "volpipe.pid": str(me.pid),
        "volpipe.pid_started": repr(me.create_time()),
    }


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
    running = client.search_runs(
        [experiment_id],
        f"attributes.status = 'RUNNING' and tags.`volpipe.host` = '{socket.gethostname()}'",
        max_results=1000,
    )
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
        family = [
            run_id,
            *(
                child.info.run_id
                for child in client.search_runs(
                    [experiment_id], f"tags.mlflow.parentRunId = '{run_id}'", max_results=1000
                )
            ),
        ]
        for version in client.search_model_versions(f"run_id IN ({','.join(map(repr, family))})"):
            client.set_model_version_tag(version.name, version.version, KILLED_TRAINING_TAG, run_id)
    if closed:
        log.warning("runs of a killed training marked KILLED run_ids=%s", ",".join(closed))
    return closed


def log_training(
    settings: Settings,
    spec: L.LabelSpec,
    data: FeatureData,
    prepared: Any,
    trained: dict[str, Any],
    promotion: Any,
    commit: str,
) -> dict[str, Any]:
    """Logs the parent and child runs, registers the candidate with the gate's verdict
    (``evaluate.Promotion``) as tags, and moves ``champion`` to it only when the verdict says so.

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
    candidate, decision = promotion.candidate, promotion.tags()
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
        low, high = promotion.gain_ci
        mlflow.log_metrics({"gate_gain": promotion.gain, "gate_gain_ci_low": low, "gate_gain_ci_high": high})
        mlflow.set_tags(decision)
        registry.client(settings.mlflow_tracking_uri).set_tag(
            child_runs[candidate], "promotion.decision", promotion.decision
        )
        # Registered whatever the verdict, with it as tags in the same request (one transaction on
        # the server): a version never exists without its artifacts, metrics and verdict, and one
        # that failed the gate is on record (MLflow UI, model page) yet never aliased. The alias
        # moves last, so a process killed before it leaves the champion where it was
        # (docs/reliability.md).
        version = mlflow.register_model(model_uris[candidate], settings.model_name, tags=decision).version
        mlflow.set_tag("promotion.candidate_version", str(version))
        if promotion.promoted:
            registry.promote(settings.mlflow_tracking_uri, settings.model_name, version, {})
    log.info(
        "promotion model=%s version=%s decision=%s gain=%.4f ci=[%.4f, %.4f] champion_before=%s",
        settings.model_name,
        version,
        promotion.decision,
        promotion.gain,
        low,
        high,
        promotion.champion_version,
    )
    return {
        # Plain JSON (Airflow returns it as an XCom): relative mode's NaN tau becomes null.
        "run_id": parent.info.run_id,
        "label_mode": spec.mode,
        "tau": None if np.isnan(prepared.tau) else prepared.tau,
        "delta_version": data.version,
        "rows": {split: len(prepared.splits[split]) for split in SPLITS},
        "positive_rate": {split: float(prepared.splits[split]["y"].mean()) for split in SPLITS},
        "models": {
            name: {
                "validation_pr_auc": trained[name].metrics["validation"]["pr_auc"],
                "test_pr_auc": trained[name].metrics["test"]["pr_auc"],
                "run_id": child_runs[name],
            }
            for name in M.MODEL_NAMES
        },
        "test_rows": len(prepared.splits["test"]),
        "candidate": candidate,
        "model_name": settings.model_name,
        "registered_version": str(version),
        "decision": promotion.decision,
        "promoted": promotion.promoted,
        "reason": promotion.reason,
        "gate": promotion.to_dict(),
        "champion_version": str(version) if promotion.promoted else promotion.champion_version,
    }
