"""Training: ``features`` (Delta) -> labels -> baseline, logistic regression, boosting -> MLflow.

Inputs: ``Settings`` (label, model name, seed, tracking URI), an exchange-time range and
products. Outputs: one parent MLflow run with a child run per model (params, metrics on
train/validation/test, PR curve, calibration, importances, split bounds), the best of the
two learned models by validation PR-AUC registered under ``MODEL_NAME`` with the promotion
gate's verdict, the ``champion`` alias moved only when that version beats the persistence
baseline beyond noise and the current champion on the same test rows
(``evaluate.decide_promotion``), and a summary dict (what the Airflow task returns). Bad data
raises ``TrainingDataError`` before anything is logged, registered or promoted.
docs/modeling.md explains the choices::

    .venv/bin/python -m volpipe.modeling.train --start 2026-01-01 --end 2026-01-07
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import subprocess
import sys
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from volpipe.config import PROJECT_ROOT, Settings
from volpipe.errors import TrackingUnavailable, TrainingDataError
from volpipe.modeling import label as L
from volpipe.modeling import models as M
from volpipe.modeling.dataset import FeatureData, add_window_arguments, read_window
from volpipe.tables import FEATURES

log = logging.getLogger(__name__)
SPLITS = ("train", "validation", "test")


@dataclasses.dataclass(frozen=True)
class Prepared:
    """Labelled rows of the three splits (column ``y``), tau and the split bounds."""

    splits: dict[str, pd.DataFrame]
    tau: float
    bounds: dict[str, Any]


def _bounds(ts: np.ndarray) -> dict[str, int]:
    # Half-open [start_ns, end_ns): every row of the split satisfies start_ns <= exchange_ts_ns < end_ns.
    return {"start_ns": int(ts.min()), "end_ns": int(ts.max()) + 1}


def prepare(frame: pd.DataFrame, spec: L.LabelSpec, min_rows: int) -> Prepared:
    """Labels ``frame`` (``order_rows`` order), splits it 60/20/20 with the embargo, checks it.

    Raises:
        TrainingDataError: No rows, no labelled rows, fewer than ``min_rows``, or a split
            that is empty or has one class.
    """
    if frame.empty:
        raise TrainingDataError("no feature rows in the requested range and products")
    target = L.label_target(frame, spec)
    split = L.chronological_split(frame, spec.horizon)
    tau = L.training_tau(target, split == L.TRAIN, spec)
    y, threshold = L.labels_and_thresholds(frame, target, spec, tau)
    keep = (split != L.EMBARGO) & np.isfinite(y)
    if not keep.any():
        raise TrainingDataError(f"no labelled rows among {len(frame)} (label_mode={spec.mode}, H={spec.horizon})")
    if keep.sum() < min_rows:
        raise TrainingDataError(f"too few labelled rows: {int(keep.sum())} < TRAIN_MIN_ROWS={min_rows}")
    labelled = frame.assign(y=y, split=split, **{M.THRESHOLD_COLUMN: threshold})[keep]
    embargoed = int((split == L.EMBARGO).sum())
    splits, bounds = {}, {"label_mode": spec.mode, "horizon": spec.horizon, "embargo_rows": embargoed}
    for code, name in L.SPLIT_NAMES.items():
        part = labelled[labelled["split"] == code].drop(columns="split").reset_index(drop=True)
        classes = sorted(set(part["y"].astype(int)))
        if classes != [0, 1]:
            raise TrainingDataError(f"the {name} split has {len(part)} rows and classes {classes}: need both 0 and 1")
        splits[name] = part
        bounds[name] = {
            **_bounds(part["exchange_ts_ns"].to_numpy()),
            "rows": len(part),
            "positives": int(part["y"].sum()),
        }
    return Prepared(splits, tau, bounds)


@dataclasses.dataclass
class Trained:
    """One fitted model with its decision threshold, scores and metrics per split."""

    model: Any
    threshold: float
    scores: dict[str, np.ndarray]
    metrics: dict[str, dict[str, float]]


def train_models(prepared: Prepared, seed: int) -> dict[str, Trained]:
    """Fits the three models on train; thresholds from validation (F1), metrics on every split."""
    out = {}
    train = prepared.splits["train"]
    for name in M.MODEL_NAMES:
        model = M.fit(name, train, train["y"].to_numpy(), seed)
        scores = {split: M.score(name, model, prepared.splits[split]) for split in SPLITS}
        val_y = prepared.splits["validation"]["y"].to_numpy()
        threshold = model.threshold if name == M.BASELINE else M.f1_threshold(val_y, scores["validation"])
        metrics = {
            split: M.metrics(prepared.splits[split]["y"].to_numpy(), scores[split], threshold) for split in SPLITS
        }
        out[name] = Trained(model, threshold, scores, metrics)
        log.info(
            "model trained name=%s validation_pr_auc=%.4f test_pr_auc=%.4f",
            name,
            metrics["validation"]["pr_auc"],
            metrics["test"]["pr_auc"],
        )
    return out


def git_commit() -> str:
    """The checkout's HEAD commit ("unknown" outside a git checkout)."""
    try:
        return subprocess.run(
            ["git", "-C", str(PROJECT_ROOT), "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
            timeout=10,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def run(
    settings: Settings,
    *,
    start_ns: int | None = None,
    end_ns: int | None = None,
    products: Sequence[str] | None = None,
) -> dict[str, Any]:
    """Reads, labels, trains, logs, registers the candidate and decides the promotion.

    Args:
        settings: Label, model and MLflow settings.
        start_ns: First exchange time of the data (inclusive); None = all.
        end_ns: End of the data (exclusive); None = all.
        products: Products to train on; None = every product in the table.

    Returns:
        The summary: rows, tau, positive rates, each model's validation/test PR-AUC, the
        candidate and its registered version, the promotion gate's ``decision`` (promoted,
        no_skill, kept_champion), its ``reason`` in words and its figures (``gate``), and the
        champion after it (None when there is none).

    Raises:
        TrainingDataError: The data cannot train a model (nothing is logged or registered).
        TrackingUnavailable: MLflow stopped answering: nothing promoted; the runs it had started
            stay RUNNING until the next training on this host closes them (docs/reliability.md).
    """
    from mlflow.exceptions import MlflowException

    from volpipe.modeling import registry
    from volpipe.modeling.evaluate import decide_promotion
    from volpipe.modeling.tracking import log_training, rescore_champion

    spec = L.label_spec(settings)
    data: FeatureData = read_window(
        settings.delta_table(FEATURES), L.required_columns(spec), start_ns, end_ns, products
    )
    prepared = prepare(data.frame, spec, settings.train_min_rows)
    trained = train_models(prepared, settings.model_seed)
    # Validation chooses the candidate (and each model's threshold); the test split, which chose
    # nothing, decides the promotion.
    candidate = max((M.LOGISTIC, M.BOOSTING), key=lambda name: trained[name].metrics["validation"]["pr_auc"])
    test = prepared.splits["test"]
    try:
        # Before any logging: a champion that fails to load stops the training with nothing registered.
        champion = rescore_champion(settings, test)
        promotion = decide_promotion(
            test,
            {name: trained[name].scores["test"] for name in M.MODEL_NAMES},
            candidate,
            champion,
            spec.horizon,
            settings.bootstrap_samples,
            settings.model_seed,
        )
        with M.single_threaded():  # logging predicts too (the input example)
            summary = log_training(settings, spec, data, prepared, trained, promotion, git_commit())
    except (MlflowException, OSError) as exc:
        if registry.reachable(settings.mlflow_tracking_uri):
            raise
        # MLflow's own message is a long urllib3 chain: its start is enough as the cause.
        raise TrackingUnavailable(
            f"MLflow tracking server {settings.mlflow_tracking_uri} is unreachable: training stopped, "
            f"nothing promoted ({' '.join(str(exc).split())[:300]})"
        ) from None
    log.info("training done %s", " ".join(f"{k}={v}" for k, v in summary.items() if not isinstance(v, dict)))
    return summary


def describe(summary: dict[str, Any]) -> str:
    """A training summary as the lines a person reads in a task log: each model's test PR-AUC
    beside the baseline's and the positive rate, the promotion gate's decision and why, and
    where the champion is."""
    rate = summary["positive_rate"]["test"]
    tau = "per row" if summary["tau"] is None else f"{summary['tau']:.3g}"
    lines = [
        f"test rows={summary['test_rows']} positive rate={rate:.3f} tau={tau} label={summary['label_mode']}",
        f"{'model':<24} {'val PR-AUC':>10} {'test PR-AUC':>11}",
    ]
    lines += [
        f"{name:<24} {m['validation_pr_auc']:>10.3f} {m['test_pr_auc']:>11.3f}" for name, m in summary["models"].items()
    ]
    champion = (
        f"v{summary['champion_version']}" if summary["champion_version"] else "none (live and batch scoring wait)"
    )
    lines += [
        f"decision: {summary['decision']}: {summary['reason']}",
        f"registered {summary['model_name']} v{summary['registered_version']} ({summary['candidate']}, tagged "
        f"promotion.decision={summary['decision']}); champion: {champion}",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    from volpipe.dates import optional_bounds_ns
    from volpipe.logs import configure_logging

    parser = argparse.ArgumentParser(prog="python -m volpipe.modeling.train", description=__doc__.split("\n")[0])
    add_window_arguments(parser)
    L.add_arguments(parser)
    parser.add_argument("--model-name", help="MODEL_NAME")
    parser.add_argument("--min-rows", type=int, help="TRAIN_MIN_ROWS")
    parser.add_argument("--seed", type=int, help="MODEL_SEED")
    parser.add_argument("--tracking-uri", help="MLFLOW_TRACKING_URI")
    args = parser.parse_args(argv)
    configure_logging()
    settings = Settings.from_env(
        **L.overrides(args),
        model_name=args.model_name,
        train_min_rows=args.min_rows,
        model_seed=args.seed,
        mlflow_tracking_uri=args.tracking_uri,
    )
    start_ns, end_ns = optional_bounds_ns(args.start, args.end)
    try:
        summary = run(settings, start_ns=start_ns, end_ns=end_ns, products=args.products)
    except TrackingUnavailable as exc:
        log.error("training failed: %s", exc)
        return 1
    print(json.dumps(summary, indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
