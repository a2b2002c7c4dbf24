"""Is a model better than "volatility persists", beyond noise? Walk-forward and the promotion gate.

Inputs: the ``features`` rows of a range (as training reads them) and the label settings.
Output: for each model (baseline, logistic regression, boosting) the test PR-AUC of every
expanding-window fold, the PR-AUC on the pooled test rows, and a moving-block bootstrap 95%
CI of its pooled PR-AUC minus the baseline's; printed as a table and logged to MLflow as one
run. Fold k trains on every segment before k and tests on segment k, with the H-tick
embargo at each boundary and tau from its own training rows. The same paired bootstrap is
the promotion gate training applies before the ``champion`` alias moves
(``decide_promotion``)::

    .venv/bin/python -m volpipe.modeling.evaluate --start 2026-01-01 --end 2026-01-07 --folds 5
"""

from __future__ import annotations

import argparse
import dataclasses
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
        lines.append(
            "  ".join(
                f"{v:>10}"
                for v in (
                    "positives",
                    *(f"{f['positive_rate']:.3f}" for f in self.folds),
                    f"{self.pooled['positive_rate']:.3f}",
                )
            )
        )
        for name in M.MODEL_NAMES:
            cells = [name[:10], *(f"{f[name]:.3f}" for f in self.folds), f"{self.pooled[name]:.3f}"]
            diff, low, high = self.gain.get(name, (0.0, 0.0, 0.0))
            gain = "" if name == M.BASELINE else f"{diff:+.3f} [{low:+.3f}, {high:+.3f}]"
            lines.append("  ".join(f"{c:>10}" for c in cells) + "  " + gain)
        return "\n".join(lines)


@dataclasses.dataclass(frozen=True)
class Ranking:
    """Rows ranked by one model's scores, prepared once for average precision under many sample
    weightings (the bootstrap's resamples).

    Only tie groups that hold a positive row move recall, so only they are visited: per
    weighting one gather and one cumulative sum over all rows (the weight seen down to each
    group), the rest over the positives (a few percent of the rows).
    """

    order: np.ndarray  # rows by descending score
    group_end: np.ndarray  # rank of the last row of each tie group that holds a positive
    positives: np.ndarray  # the positive rows, in rank order
    group_last: np.ndarray  # for each such group, the index (in ``positives``) of its last positive

    @classmethod
    def of(cls, order: np.ndarray, tie_end: np.ndarray, y: np.ndarray) -> Ranking:
        """``order`` sorts the rows by descending score; ``tie_end`` marks (in sorted order) the last
        row of each group of equal scores; ``y`` the 0/1 labels."""
        ranked_positive = np.flatnonzero(y[order] > 0)
        ends = np.flatnonzero(tie_end)
        group_of = np.searchsorted(ends, ranked_positive)  # the tie group of each positive
        last = np.flatnonzero(np.append(group_of[1:] != group_of[:-1], True)) if len(group_of) else group_of
        return cls(order, ends[group_of[last]], order[ranked_positive], last)

    def pr_auc(self, weights: np.ndarray) -> float:
        """Average precision with these sample weights; NaN when no positive weighs anything."""
        tp = np.cumsum(weights[self.positives])[self.group_last]
        if not len(tp) or tp[-1] <= 0:
            return float("nan")
        seen = np.cumsum(weights[self.order])[self.group_end]
        precision = np.divide(tp, seen, out=np.zeros_like(tp), where=seen > 0)
        return float(np.sum(np.diff(tp, prepend=0.0) * precision) / tp[-1])


def block_resample(rng: np.random.Generator, n: int, block: int) -> np.ndarray:
    """Row indices of one moving-block resample of n rows: runs of ``block`` consecutive rows from
    random starts, ceil(n / block) of them, cut to n."""
    starts = rng.integers(0, n - block + 1, size=-(-n // block))
    return (starts[:, None] + np.arange(block)).ravel()[:n]


def weighted_pr_auc(order: np.ndarray, tie_end: np.ndarray, y: np.ndarray, weights: np.ndarray) -> float:
    """Average precision with sample weights, for rows pre-sorted by descending score (``Ranking``).

    Equals ``average_precision_score(y, s, sample_weight=weights)`` in O(n).
    """
    return Ranking.of(order, tie_end, y).pr_auc(weights)


def bootstrap_differences(
    y: np.ndarray, scores: dict[str, np.ndarray], block: int, samples: int, seed: int, reference: str = M.BASELINE
) -> tuple[dict[str, float], dict[str, np.ndarray]]:
    """Moving-block bootstrap of PR-AUC(name) - PR-AUC(``reference``) over rows in time order.

    Blocks of ``block`` consecutive rows keep the autocorrelation of overlapping label windows.
    Every score is re-weighted by the same resamples (paired), so the difference of two
    differences (a candidate minus a champion) is itself a paired resample.

    Returns:
        (name -> difference on the rows as they are, name -> the ``samples`` resampled
        differences), for every name of ``scores`` but ``reference``.
    """
    n = len(y)
    rankings = {}
    for name, s in scores.items():
        clean = np.nan_to_num(s, nan=-np.inf)
        order = np.argsort(-clean, kind="stable")
        ranked = clean[order]
        rankings[name] = Ranking.of(order, np.concatenate((ranked[1:] != ranked[:-1], [True])), y)
    ones = np.ones(n)
    point = {name: rankings[name].pr_auc(ones) for name in scores}
    rng = np.random.default_rng(seed)
    block = min(block, n)
    others = [name for name in scores if name != reference]
    resampled = {name: np.empty(samples) for name in others}
    for sample in range(samples):
        weights = np.bincount(block_resample(rng, n, block), minlength=n).astype(np.float64)
        base = rankings[reference].pr_auc(weights)
        for name in others:
            resampled[name][sample] = rankings[name].pr_auc(weights) - base
    return {name: point[name] - point[reference] for name in others}, resampled


def interval(resampled: np.ndarray) -> tuple[float, float]:
    """The 95% percentile interval of bootstrap resamples (NaN resamples, e.g. no positive drawn, left out)."""
    low, high = np.nanpercentile(resampled, [2.5, 97.5])
    return float(low), float(high)


def block_bootstrap_gain(
    y: np.ndarray, scores: dict[str, np.ndarray], block: int, samples: int, seed: int
) -> dict[str, tuple[float, float, float]]:
    """PR-AUC(model) - PR-AUC(baseline) of each model with its 95% moving-block bootstrap CI
    (``bootstrap_differences``).

    Returns:
        model -> (difference on the rows as they are, 2.5th and 97.5th bootstrap percentiles).
    """
    point, resampled = bootstrap_differences(y, scores, block, samples, seed)
    return {name: (point[name], *interval(values)) for name, values in resampled.items()}


# The promotion gate's verdicts (``decide_promotion``), as tagged on the version and returned by training.
PROMOTED, NO_SKILL, KEPT_CHAMPION = "promoted", "no_skill", "kept_champion"
CHAMPION = "champion"  # the current champion's scores among the gate's


@dataclasses.dataclass(frozen=True)
class Champion:
    """The current champion re-scored on the gate's rows; ``scores`` is None when it cannot be
    (it reads a column these rows lack): ``note`` says why."""

    version: str
    scores: np.ndarray | None
    note: str


@dataclasses.dataclass(frozen=True)
class Promotion:
    """The promotion gate's verdict on a training's candidate and the figures behind it.

    ``gain`` is the candidate's PR-AUC minus the persistence baseline's on the gate's rows,
    ``gain_ci`` its 95% moving-block bootstrap interval; ``gain_over_champion`` (and its
    interval, from the same resamples) the candidate's minus the current champion's, when
    there is one that can be scored on those rows.
    """

    decision: str
    reason: str
    candidate: str
    rows: int
    positive_rate: float
    block_rows: int
    samples: int
    candidate_pr_auc: float
    baseline_pr_auc: float
    gain: float
    gain_ci: tuple[float, float]
    champion_version: str | None
    champion_pr_auc: float | None
    gain_over_champion: float | None
    gain_over_champion_ci: tuple[float, float] | None
    note: str

    @property
    def promoted(self) -> bool:
        return self.decision == PROMOTED

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON (an XCom): the split the gate scored, the figures, NaN as None."""

        def plain(value: Any) -> Any:
            if isinstance(value, tuple):
                return [plain(v) for v in value]
            return None if isinstance(value, float) and not np.isfinite(value) else value

        return {"rows_split": "test", **{f.name: plain(getattr(self, f.name)) for f in dataclasses.fields(self)}}

    def tags(self) -> dict[str, str]:
        """The verdict as MLflow tags (``promotion.*``) of the version and the training run."""

        def figure(value: float | None) -> str:
            return "none" if value is None else f"{value:.6f}"

        low, high = self.gain_ci
        over = self.gain_over_champion_ci or (None, None)
        return {
            "promotion.decision": self.decision,
            "promotion.reason": self.reason,
            "promotion.rows": f"test split: {self.rows} rows, blocks of {self.block_rows}, {self.samples} resamples",
            "promotion.positive_rate": figure(self.positive_rate),
            "promotion.candidate_test_pr_auc": figure(self.candidate_pr_auc),
            "promotion.baseline_test_pr_auc": figure(self.baseline_pr_auc),
            "promotion.gain": figure(self.gain),
            "promotion.gain_ci_low": figure(low),
            "promotion.gain_ci_high": figure(high),
            "promotion.champion_version_before": self.champion_version or "none",
            "promotion.champion_test_pr_auc": figure(self.champion_pr_auc),
            "promotion.gain_over_champion": figure(self.gain_over_champion),
            "promotion.gain_over_champion_ci_low": figure(over[0]),
            "promotion.gain_over_champion_ci_high": figure(over[1]),
            "promotion.note": self.note,
        }


def decide_promotion(
    rows: pd.DataFrame,
    scores: dict[str, np.ndarray],
    candidate: str,
    champion: Champion | None,
    horizon: int,
    samples: int,
    seed: int,
) -> Promotion:
    """The promotion gate: promote ``candidate`` only when it beats the persistence baseline beyond
    noise AND the current champion on the same rows (docs/modeling.md, "Promotion").

    Beyond noise: its PR-AUC minus the baseline's (``rolling_vol`` as the score) is positive and
    the 95% moving-block bootstrap interval of that gain lies above 0 (blocks of H x products
    rows in time order, ``bootstrap_differences``). The champion is beaten when the candidate's
    PR-AUC is strictly higher (a tie keeps it). The first version passes the same gate.

    Args:
        rows: The gate's rows, labelled (``y``), with ``exchange_ts_ns`` and ``product_id``:
            training passes its held-out test split, which chose neither the candidate nor
            its threshold.
        scores: Each row's score by model name: the baseline's and ``candidate``'s at least.
        candidate: The model to decide on.
        champion: The current champion re-scored on ``rows`` (None: there is none).
        horizon: H, the label's horizon in ticks (the block length per product).
        samples: Bootstrap resamples (BOOTSTRAP_SAMPLES).
        seed: The bootstrap's seed (MODEL_SEED).
    """
    order = np.argsort(rows["exchange_ts_ns"].to_numpy(np.int64), kind="stable")
    y = rows["y"].to_numpy(np.float64)[order]
    ranked = {M.BASELINE: scores[M.BASELINE][order], candidate: scores[candidate][order]}
    champion_scores = None if champion is None else champion.scores
    champion_version = None if champion is None else champion.version
    comparable = champion_scores is not None
    if champion_scores is not None:
        ranked[CHAMPION] = champion_scores[order]
    block = horizon * max(1, rows["product_id"].nunique())
    point, resampled = bootstrap_differences(y, ranked, block, samples, seed)
    pr_auc = {name: M.pr_auc(y, values) for name, values in ranked.items()}
    gain, gain_ci = point[candidate], interval(resampled[candidate])
    over, over_ci = (None, None)
    if comparable:
        over, over_ci = point[candidate] - point[CHAMPION], interval(resampled[candidate] - resampled[CHAMPION])
    figures = (
        f"{candidate} test PR-AUC {pr_auc[candidate]:.3f} vs persistence baseline {pr_auc[M.BASELINE]:.3f}: "
        f"gain {gain:+.3f}, 95% CI [{gain_ci[0]:+.3f}, {gain_ci[1]:+.3f}], positive rate {y.mean():.3f}"
    )
    if not (gain > 0 and gain_ci[0] > 0):
        decision, reason = NO_SKILL, f"no model beat the persistence baseline beyond noise ({figures})"
    elif comparable and not pr_auc[candidate] > pr_auc[CHAMPION]:
        decision, reason = (
            KEPT_CHAMPION,
            (
                f"champion v{champion_version} kept: it scores {pr_auc[CHAMPION]:.3f} on the "
                f"same test rows, the candidate beats the baseline but not it ({figures})"
            ),
        )
    else:
        beaten = (
            f" and champion v{champion_version} ({pr_auc[CHAMPION]:.3f} on the same rows)"
            if comparable
            else "; no champion before"
            if champion is None
            else f"; champion v{champion.version} not comparable"
        )
        decision, reason = PROMOTED, f"promoted: beats the persistence baseline beyond noise{beaten} ({figures})"
    return Promotion(
        decision=decision,
        reason=reason,
        candidate=candidate,
        rows=len(y),
        positive_rate=float(y.mean()),
        block_rows=block,
        samples=samples,
        candidate_pr_auc=pr_auc[candidate],
        baseline_pr_auc=pr_auc[M.BASELINE],
        gain=gain,
        gain_ci=gain_ci,
        champion_version=champion.version if champion else None,
        champion_pr_auc=pr_auc.get(CHAMPION),
        gain_over_champion=over,
        gain_over_champion_ci=over_ci,
        note=champion.note if champion else "no champion",
    )


def fold_splits(frame: pd.DataFrame, spec: L.LabelSpec, folds: int) -> Iterator[tuple[int, pd.DataFrame, pd.DataFrame]]:
    """Fold k's labelled training rows (segments 0..k-1) and test rows (segment k), k = 1..``folds``,
    each with its column ``y``; folds whose training or test rows lack a class are left out.

    The segments hold equal row counts by exchange time, with the H-tick embargo at each boundary;
    a fitted tau (``forward``, ``current``) comes from the fold's own training rows.
    """
    ts = frame["exchange_ts_ns"].to_numpy(np.int64)
    segments = L.assign_segments(
        ts, L.window_end_ts(frame, spec.horizon), L.time_cuts(ts, [k / (folds + 1) for k in range(1, folds + 1)])
    )
    target = L.label_target(frame, spec)
    for k in range(1, folds + 1):
        train_mask = (segments >= 0) & (segments < k)
        y, threshold = L.labels_and_thresholds(frame, target, spec, L.training_tau(target, train_mask, spec))
        labelled = frame.assign(y=y, **{M.THRESHOLD_COLUMN: threshold})
        train = labelled[train_mask & np.isfinite(y)]
        test = labelled[(segments == k) & np.isfinite(y)]
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
    return WalkForward(
        results, {**summary, "positive_rate": float(y.mean()), "rows": float(len(y))}, gain, block, pooled
    )


def log_result(settings: Settings, spec: L.LabelSpec, result: WalkForward, delta_version: int) -> str:
    """Logs the evaluation as one MLflow run; returns its id."""
    import mlflow

    mlflow.set_tracking_uri(settings.mlflow_tracking_uri)
    mlflow.set_experiment(settings.mlflow_experiment)
    with mlflow.start_run(run_name=f"walk-forward-{spec.mode}") as run:
        mlflow.log_params(
            {
                **L.definition_params(spec),
                "folds": settings.walk_forward_folds,
                "bootstrap_samples": settings.bootstrap_samples,
                "block_rows": result.block,
                "seed": settings.model_seed,
                "delta_version": delta_version,
            }
        )
        for fold in result.folds:
            mlflow.log_metrics({f"{n}_fold{fold['fold']}_pr_auc": fold[n] for n in M.MODEL_NAMES})
            mlflow.log_metric(f"positive_rate_fold{fold['fold']}", fold["positive_rate"])
        mlflow.log_metrics({f"{n}_pooled_pr_auc": result.pooled[n] for n in M.MODEL_NAMES})
        for name, (diff, low, high) in result.gain.items():
            mlflow.log_metrics(
                {
                    f"{name}_minus_baseline": diff,
                    f"{name}_minus_baseline_ci_low": low,
                    f"{name}_minus_baseline_ci_high": high,
                }
            )
        mlflow.log_text(result.table(), "walk_forward.txt")
        mlflow.log_dict({"folds": result.folds, "pooled": result.pooled, "gain": result.gain}, "walk_forward.json")
    return run.info.run_id


def run(
    settings: Settings,
    *,
    start_ns: int | None = None,
    end_ns: int | None = None,
    products: list[str] | None = None,
    log_to_mlflow: bool = True,
) -> WalkForward:
    """Reads the range, evaluates walk-forward, logs the run (unless told not to), returns the result."""
    from volpipe.modeling.dataset import read_window

    spec = L.label_spec(settings)
    data = read_window(settings.delta_table(FEATURES), L.required_columns(spec), start_ns, end_ns, products)
    if data.frame.empty:
        raise TrainingDataError("no feature rows in the requested range and products")
    result = walk_forward(
        data.frame, spec, settings.walk_forward_folds, settings.model_seed, settings.bootstrap_samples
    )
    if log_to_mlflow:
        log_result(settings, spec, result, data.version)
    return result


def main(argv: list[str] | None = None) -> int:
    from volpipe.dates import optional_bounds_ns
    from volpipe.logs import configure_logging
    from volpipe.modeling.dataset import add_window_arguments

    parser = argparse.ArgumentParser(prog="python -m volpipe.modeling.evaluate", description=__doc__.split("\n")[0])
    add_window_arguments(parser)
    parser.add_argument("--folds", type=int, help="WALK_FORWARD_FOLDS")
    parser.add_argument("--samples", type=int, help="BOOTSTRAP_SAMPLES")
    L.add_arguments(parser)
    parser.add_argument("--seed", type=int, help="MODEL_SEED")
    parser.add_argument("--no-mlflow", action="store_true", help="print only, log nothing")
    args = parser.parse_args(argv)
    configure_logging()
    settings = Settings.from_env(
        walk_forward_folds=args.folds, bootstrap_samples=args.samples, model_seed=args.seed, **L.overrides(args)
    )
    start_ns, end_ns = optional_bounds_ns(args.start, args.end)
    result = run(settings, start_ns=start_ns, end_ns=end_ns, products=args.products, log_to_mlflow=not args.no_mlflow)
    print(result.table())
    print(json.dumps({"block_rows": result.block, "pooled": result.pooled}, default=float))
    return 0


if __name__ == "__main__":
    sys.exit(main())
