"""Walk-forward evaluation: is a model better than "volatility persists", beyond noise?

Inputs: the ``features`` rows of a range (as training reads them) and the label settings.
Output: for each model (baseline, logistic regression, boosting) the test PR-AUC of every
expanding-window fold, the PR-AUC on the pooled test rows, and a moving-block bootstrap 95%
CI of its pooled PR-AUC minus the baseline's; printed as a table and logged to MLflow as one
run. Fold k trains on every segment before k and tests on segment k, with the H-tick
embargo at each boundary and tau from its own training rows::

    .venv/bin/python -m volpipe.modeling.evaluate --start 2026-01-01 --end 2026-01-07 --folds 5
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import json
import logging
import sys
from collections.abc import Iterator
from typing import Any

import numpy as np
import pandas as pd

from volpipe.config import Settings
from volpipe.errors import TrainingDataError
from volpipe.modeling import label as L
from volpipe.modeling import models as M
from volpipe.tables import FEATURES

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class WalkForward:
    """Per-fold PR-AUC by model, pooled PR-AUC, the bootstrap CI of the gain over the baseline, and
    the pooled test rows (``exchange_ts_ns``, ``y``, each model's score) in time order."""

    folds: list[dict[str, Any]]
    pooled: dict[str, float]
    gain: dict[str, tuple[float, float, float]]  # model -> (pooled diff, CI low, CI high)
    block: int
    scores: pd.DataFrame

    def table(self) -> str:
        """The result as a fixed-width text table."""
        head = ["model", *(f"fold{f['fold']}" for f in self.folds), "pooled", "minus baseline [95% CI]"]
        lines = ["  ".join(f"{h:>10}" for h in head[:-1]) + "  " + head[-1]]
        lines.append("  ".join(f"{v:>10}" for v in ("positives", *(f"{f['positive_rate']:.3f}" for f in self.folds),
                                                      f"{self.pooled['positive_rate']:.3f}")))
        for name in M.MODEL_NAMES:
            cells = [name[:10], *(f"{f[name]:.3f}" for f in self.folds), f"{self.pooled[name]:.3f}"]
            diff, low, high = self.gain.get(name, (0.0, 0.0, 0.0))
            gain = "" if name == M.BASELINE else f"{diff:+.3f} [{low:+.3f}, {high:+.3f}]"
            lines.append("  ".join(f"{c:>10}" for c in cells) + "  " + gain)
        return "\n".join(lines)


def weighted_pr_auc(order: np.ndarray, tie_end: np.ndarray, y: np.ndarray, weights: np.ndarray) -> float:
    """Average precision with sample weights, for rows pre-sorted by descending score.

    ``order`` sorts the rows; ``tie_end`` marks (in sorted order) the last row of each group of
    equal scores. Equals ``average_precision_score(y, s, sample_weight=weights)`` in O(n).
    """
    w = weights[order]
    tp = np.cumsum(w * y[order])[tie_end]
    seen = np.cumsum(w)[tie_end]
    if tp[-1] <= 0:
        return float("nan")
    precision = np.divide(tp, seen, out=np.zeros_like(tp), where=seen > 0)
    recall = tp / tp[-1]
    return float(np.sum(np.diff(recall, prepend=0.0) * precision))


def block_resample(rng: np.random.Generator, n: int, block: int) -> np.ndarray:
    """Row indices of one moving-block resample of n rows: runs of ``block`` consecutive rows from
    random starts, ceil(n / block) of them, cut to n."""
    starts = rng.integers(0, n - block + 1, size=-(-n // block))
    return (starts[:, None] + np.arange(block)).ravel()[:n]


def block_bootstrap_gain(y: np.ndarray, scores: dict[str, np.ndarray], block: int, samples: int,
                         seed: int) -> dict[str, tuple[float, float, float]]:
    """Moving-block bootstrap of PR-AUC(model) - PR-AUC(baseline) over rows in time order.

    Blocks of ``block`` consecutive rows keep the autocorrelation of overlapping label windows.
    Paired: every model and the baseline are scored on the same resampled rows.

    Returns:
        model -> (difference on the rows as they are, 2.5th and 97.5th bootstrap percentiles).
    """
    n = len(y)
    prepared = {}
    for name, s in scores.items():
        clean = np.nan_to_num(s, nan=-np.inf)
        order = np.argsort(-clean, kind="stable")
        ranked = clean[order]
        prepared[name] = (order, np.concatenate((ranked[1:] != ranked[:-1], [True])))
    ones = np.ones(n)
    point = {name: weighted_pr_auc(*prepared[name], y, ones) for name in scores}
    rng = np.random.default_rng(seed)
    block = min(block, n)
    diffs: dict[str, list[float]] = {name: [] for name in scores if name != M.BASELINE}
    for _ in range(samples):
        weights = np.bincount(block_resample(rng, n, block), minlength=n).astype(np.float64)
        base = weighted_pr_auc(*prepared[M.BASELINE], y, weights)
        for name in diffs:
            diffs[name].append(weighted_pr_auc(*prepared[name], y, weights) - base)
    return {name: (point[name] - point[M.BASELINE], *np.nanpercentile(values, [2.5, 97.5]).tolist())
            for name, values in diffs.items()}


def fold_splits(frame: pd.DataFrame, spec: L.LabelSpec, folds: int) -> Iterator[tuple[int, pd.DataFrame, pd.DataFrame]]:
    """Fold k's labelled training rows (segments 0..k-1) and test rows (segment k), k = 1..``folds``,
    each with its column ``y``; folds whose training or test rows lack a class are left out.

    The segments hold equal row counts by exchange time, with the H-tick embargo at each boundary;
    a fitted tau (``forward``, ``current``) comes from the fold's own training rows.
    """
    ts = frame["exchange_ts_ns"].to_numpy(np.int64)
    segments = L.assign_segments(ts, L.window_end_ts(frame, spec.horizon),
                                 L.time_cuts(ts, [k / (folds + 1) for k in range(1, folds + 1)]))
    target = L.label_target(frame, spec)
    for k in range(1, folds + 1):
        train_mask = (segments >= 0) & (segments < k)
        y = L.make_labels(frame, target, spec, L.training_tau(target, train_mask, spec))
        train = frame[train_mask & np.isfinite(y)].assign(y=y[train_mask & np.isfinite(y)])
        test = frame[(segments == k) & np.isfinite(y)].assign(y=y[(segments == k) & np.isfinite(y)])
        if train["y"].nunique() < 2 or test["y"].nunique() < 2:
            log.warning("fold skipped fold=%d train_rows=%d test_rows=%d: one class", k, len(train), len(test))
            continue
        yield k, train, test


def walk_forward(frame: pd.DataFrame, spec: L.LabelSpec, folds: int, seed: int, samples: int) -> WalkForward:
    """Expanding-window folds over ``frame`` (``order_rows`` order); see the module docstring.

    Raises:
        TrainingDataError: Fewer than one fold has both classes in its train and test rows.
    """
    results, pooled_parts = [], []
    for k, train, test in fold_splits(frame, spec, folds):
        row = {"fold": k, "train_rows": len(train), "test_rows": len(test), "positive_rate": float(test["y"].mean())}
        scored = test[["exchange_ts_ns", "y"]].copy()
        for name in M.MODEL_NAMES:
            model = M.fit(name, train, train["y"].to_numpy(), seed)
            scored[name] = M.score(name, model, test)
            row[name] = M.pr_auc(test["y"].to_numpy(), scored[name].to_numpy())
        results.append(row)
        pooled_parts.append(scored)
        log.info("fold done fold=%d %s", k, " ".join(f"{n}={row[n]:.4f}" for n in M.MODEL_NAMES))
    if not results:
        raise TrainingDataError(f"no walk-forward fold of {folds} has both classes in train and test")
    pooled = pd.concat(pooled_parts).sort_values("exchange_ts_ns", kind="stable")
    y = pooled["y"].to_numpy()
    # Rows of all products interleave in time: a block of H x products rows spans ~H ticks of each.
    block = spec.horizon * max(1, frame["product_id"].nunique())
    gain = block_bootstrap_gain(y, {n: pooled[n].to_numpy() for n in M.MODEL_NAMES}, block, samples, seed)
    summary = {name: M.pr_auc(y, pooled[name].to_numpy()) for name in M.MODEL_NAMES}
    return WalkForward(results, {**summary, "positive_rate": float(y.mean()), "rows": float(len(y))}, gain, block,
                       pooled)


def log_result(settings: Settings, spec: L.LabelSpec, result: WalkForward, delta_version: int) -> str:
    """Logs the evaluation as one MLflow run; returns its id."""
    import mlflow

    mlflow.set_tracking_uri(settings.mlflow_tracking_uri)
    mlflow.set_experiment(settings.mlflow_experiment)
    with mlflow.start_run(run_name=f"walk-forward-{spec.mode}") as run:
        mlflow.log_params({**L.definition_params(spec), "folds": settings.walk_forward_folds,
                           "bootstrap_samples": settings.bootstrap_samples, "block_rows": result.block,
                           "seed": settings.model_seed, "delta_version": delta_version})
        for fold in result.folds:
            mlflow.log_metrics({f"{n}_fold{fold['fold']}_pr_auc": fold[n] for n in M.MODEL_NAMES})
            mlflow.log_metric(f"positive_rate_fold{fold['fold']}", fold["positive_rate"])
        mlflow.log_metrics({f"{n}_pooled_pr_auc": result.pooled[n] for n in M.MODEL_NAMES})
        for name, (diff, low, high) in result.gain.items():
            mlflow.log_metrics({f"{name}_minus_baseline": diff, f"{name}_minus_baseline_ci_low": low,
                                f"{name}_minus_baseline_ci_high": high})
        mlflow.log_text(result.table(), "walk_forward.txt")
        mlflow.log_dict({"folds": result.folds, "pooled": result.pooled, "gain": result.gain}, "walk_forward.json")
    return run.info.run_id


def run(settings: Settings, *, start_ns: int | None = None, end_ns: int | None = None,
        products: list[str] | None = None, log_to_mlflow: bool = True) -> WalkForward:
    """Reads the range, evaluates walk-forward, logs the run (unless told not to), returns the result."""
    from volpipe.modeling.dataset import read_window

    spec = L.label_spec(settings)
    data = read_window(settings.delta_table(FEATURES), L.required_columns(spec), start_ns, end_ns, products)
    if data.frame.empty:
        raise TrainingDataError("no feature rows in the requested range and products")
    result = walk_forward(data.frame, spec, settings.walk_forward_folds, settings.model_seed,
                          settings.bootstrap_samples)
    if log_to_mlflow:
        log_result(settings, spec, result, data.version)
    return result


def main(argv: list[str] | None = None) -> int:
    from volpipe.logs import configure_logging
    from volpipe.dates import optional_bounds_ns

    parser = argparse.ArgumentParser(prog="python -m volpipe.modeling.evaluate", description=__doc__.split("\n")[0])
    parser.add_argument("--start", type=dt.date.fromisoformat, help="first UTC date, YYYY-MM-DD (default: all)")
    parser.add_argument("--end", type=dt.date.fromisoformat, help="last UTC date (default: --start, or all)")
    parser.add_argument("--products", type=lambda s: [p for p in s.split(",") if p], help="comma-separated")
    parser.add_argument("--folds", type=int, help="WALK_FORWARD_FOLDS")
    parser.add_argument("--samples", type=int, help="BOOTSTRAP_SAMPLES")
    L.add_arguments(parser)
    parser.add_argument("--seed", type=int, help="MODEL_SEED")
    parser.add_argument("--no-mlflow", action="store_true", help="print only, log nothing")
    args = parser.parse_args(argv)
    configure_logging()
    settings = Settings.from_env(walk_forward_folds=args.folds, bootstrap_samples=args.samples,
                                 model_seed=args.seed, **L.overrides(args))
    start_ns, end_ns = optional_bounds_ns(args.start, args.end)
    result = run(settings, start_ns=start_ns, end_ns=end_ns, products=args.products, log_to_mlflow=not args.no_mlflow)
    print(result.table())
    print(json.dumps({"block_rows": result.block, "pooled": result.pooled}, default=float))
    return 0


if __name__ == "__main__":
    sys.exit(main())
