"""Model quality: walk-forward PR-AUC on the synthetic market with regime shifts and on real recordings.

Data sets: for each market seed, the synthetic market as it is and with its volatility level
doubling and halving after 70% of its ticks (``quality_data.shifted_market``); every real
recording present in ``REAL_TICKS_DIR`` (skipped when absent). Each is evaluated as
``python -m volpipe.modeling.evaluate`` does (``evaluate.walk_forward``: expanding folds,
embargo, the label's settings, moving-block bootstrap) and printed as: the walk-forward table
(each fold's positive rate and each model's PR-AUC, pooled PR-AUC, gain over the persistence
baseline with its 95% CI), then one summary line per data set with the challenger's gain over
logistic regression (same bootstrap, paired) and the positive rate of the 60/20/20 training
split's train and test rows; last, the mean pooled PR-AUC over the synthetic data sets (the
line ``bench/run_all.py`` reads). No MLflow, no Spark::

    REAL_TICKS_DIR=../shared/real-ticks .venv/bin/python bench/model_quality.py --ticks 300000 --seeds 1,2,3
"""

from __future__ import annotations

import argparse
import logging
import sys
import time

import numpy as np
import pandas as pd
import quality_data
from label_stability import split_rates

from volpipe.config import Settings
from volpipe.errors import TrainingDataError
from volpipe.modeling import label as L
from volpipe.modeling import models as M
from volpipe.modeling.evaluate import block_bootstrap_gain, walk_forward
from volpipe.modeling.synthetic import synthetic_features


def data_sets(ticks: int, seeds: list[int], shifts: list[float]) -> dict[str, pd.DataFrame]:
    """Every recording present, then per seed the market as it is and shifted by each factor."""
    sets = {f"real {path.stem}": quality_data.recording_features(path) for path in quality_data.recordings()}
    for seed in seeds:
        sets[f"synthetic seed {seed}"] = L.order_rows(synthetic_features(ticks, seed=seed))
        for factor in shifts:
            sets[f"synthetic seed {seed} x{factor:g}"] = quality_data.shifted_market(ticks, factor, seed)
    return sets


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--ticks", type=int, default=300_000, help="synthetic ticks per data set (300000)")
    parser.add_argument("--seeds", default="1,2,3", help="market seeds (1,2,3)")
    parser.add_argument("--shifts", default="2,0.5", help="volatility level factors after 70%% of the ticks")
    parser.add_argument("--folds", type=int, default=5, help="walk-forward folds of a synthetic data set")
    parser.add_argument(
        "--real-folds",
        type=int,
        default=10,
        help="folds of a recording (10: a 20-minute recording has too few positives for 5)",
    )
    parser.add_argument("--samples", type=int, default=200)
    L.add_arguments(parser)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.ERROR)
    spec = L.label_spec(Settings.from_env({}, **L.overrides(args)))
    sets = data_sets(
        args.ticks, [int(s) for s in args.seeds.split(",") if s], [float(f) for f in args.shifts.split(",") if f]
    )
    print(f"label: {spec}")
    summary = [
        "| data set | folds | pos. rate train / test split | pos. rate folds | baseline | LR | LR - baseline "
        "[95% CI] | HGB | HGB - baseline [95% CI] | HGB - LR [95% CI] |",
        "|---" * 10 + "|",
    ]
    means: list[tuple[str, dict[str, float]]] = []
    for name, rows in sets.items():
        began = time.perf_counter()
        folds = args.real_folds if name.startswith("real") else args.folds
        try:
            result = walk_forward(rows, spec, folds, 42, args.samples)
        except TrainingDataError as exc:
            print(f"\n{name}: {exc}")
            continue
        scores = result.scores
        versus_lr = block_bootstrap_gain(
            scores["y"].to_numpy(),
            {M.BASELINE: scores[M.LOGISTIC].to_numpy(), M.BOOSTING: scores[M.BOOSTING].to_numpy()},
            result.block,
            args.samples,
            42,
        )[M.BOOSTING]
        rates = split_rates(rows, spec)
        print(f"\n{name}: {len(rows):,} rows, {time.perf_counter() - began:.0f} s\n{result.table()}")

        def ci(gain: tuple[float, float, float]) -> str:
            return f"{gain[0]:+.3f} [{gain[1]:+.3f}, {gain[2]:+.3f}]"

        pooled = result.pooled
        means.append((name, pooled))
        summary.append(
            f"| {name} | {','.join(str(f['fold']) for f in result.folds)} of {folds} | {rates['train']:.3f} / "
            f"{rates['test']:.3f} | {min(f['positive_rate'] for f in result.folds):.3f}-"
            f"{max(f['positive_rate'] for f in result.folds):.3f} | {pooled[M.BASELINE]:.3f} | "
            f"{pooled[M.LOGISTIC]:.3f} | {ci(result.gain[M.LOGISTIC])} | {pooled[M.BOOSTING]:.3f} | "
            f"{ci(result.gain[M.BOOSTING])} | {ci(versus_lr)} |"
        )
    print("\n" + "\n".join(summary))
    synthetic = [pooled for name, pooled in means if not name.startswith("real")]
    if synthetic:
        print(
            f"model quality: mean pooled PR-AUC over {len(synthetic)} synthetic data sets: "
            + ", ".join(f"{model}={np.mean([p[model] for p in synthetic]):.3f}" for model in M.MODEL_NAMES)
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
