"""Model quality on the synthetic market over several seeds: walk-forward PR-AUC with 95% CIs.

For each market seed, builds N feature rows with the kernel, runs the walk-forward
evaluation (``volpipe.modeling.evaluate.walk_forward``: expanding folds, embargo, tau per
fold, moving-block bootstrap) and prints each model's pooled test PR-AUC against the
positive rate and the baseline, with the CI of the gain. No MLflow, no Spark::

    .venv/bin/python bench/model_quality.py --ticks 300000 --seeds 1,2,3,4,5
"""

from __future__ import annotations

import argparse
import logging
import sys
import time

from volpipe.modeling import label as L
from volpipe.modeling import models as M
from volpipe.modeling.evaluate import walk_forward
from volpipe.modeling.synthetic import synthetic_features


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--ticks", type=int, default=300_000)
    parser.add_argument("--seeds", default="1,2,3,4,5")
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--samples", type=int, default=200)
    parser.add_argument("--label-mode", choices=L.LABEL_MODES, default="forward")
    parser.add_argument("--bursty", action="store_true", help="strong, rarer bursts (the behavioural test's market)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    market = {"calm_seconds": 300.0, "burst_seconds": 60.0, "burst_multiplier": 6.0} if args.bursty else {}
    spec = L.LabelSpec(mode=args.label_mode)
    print(f"market={'bursty' if args.bursty else 'default'} ticks={args.ticks:,} label={spec.mode} H={spec.horizon} "
          f"q={spec.quantile} folds={args.folds}")
    print(f"{'seed':>4} {'pos.rate':>8} {'baseline':>8} {'LR':>7} {'LR-base [95% CI]':>26} {'HGB':>7} "
          f"{'HGB-base [95% CI]':>26} {'s':>5}")
    pooled: dict[str, list[float]] = {M.BASELINE: [], M.LOGISTIC: [], M.BOOSTING: []}
    for seed in (int(s) for s in args.seeds.split(",")):
        began = time.perf_counter()
        rows = L.order_rows(synthetic_features(args.ticks, seed=seed, **market))
        result = walk_forward(rows, spec, args.folds, seed, args.samples)
        cells = []
        pooled[M.BASELINE].append(result.pooled[M.BASELINE])
        for name in (M.LOGISTIC, M.BOOSTING):
            pooled[name].append(result.pooled[name])
            diff, low, high = result.gain[name]
            cells.append(f"{result.pooled[name]:7.3f} {diff:+8.3f} [{low:+.3f}, {high:+.3f}]")
        print(f"{seed:>4} {result.pooled['positive_rate']:8.3f} {result.pooled[M.BASELINE]:8.3f} "
              f"{cells[0]:>34} {cells[1]:>34} {time.perf_counter() - began:5.0f}")
    print(f"model quality: mean pooled PR-AUC over {len(pooled[M.BASELINE])} seeds: "
          + ", ".join(f"{name}={sum(v) / len(v):.3f}" for name, v in pooled.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
