"""Training and walk-forward time on N synthetic feature rows (default 1,000,000), real MLflow.

Builds the rows with the kernel from the seeded market and writes them to Delta (not timed),
starts an MLflow server under a temp dir, then times ``volpipe.modeling.train.run`` (read,
label, three models, the promotion gate, logging, registration, promotion; target < 60 s)
and ``volpipe.modeling.evaluate.run`` (5 expanding folds, bootstrap, MLflow run), and prints
the numbers::

    .venv/bin/python bench/train_throughput.py --ticks 1000000
"""

from __future__ import annotations

import logging
import sys
import time

from bench_args import synthetic_data_parser

from volpipe.modeling import evaluate, train
from volpipe.modeling.synthetic import synthetic_features, write_features
from volpipe.ops.sandbox import scratch_settings
from volpipe.ops.services import MLFLOW, running
from volpipe.tables import FEATURES


def main(argv: list[str] | None = None) -> int:
    parser = synthetic_data_parser(__doc__)
    parser.add_argument("--seed", type=int, default=3)
    parser.add_argument("--skip-walk-forward", action="store_true")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    with scratch_settings("bench-train-") as settings:
        began = time.perf_counter()
        rows = synthetic_features(args.ticks, args.products, seed=args.seed)
        write_features(settings.delta_table(FEATURES), rows)
        print(f"setup: {len(rows):,} feature rows built and written in {time.perf_counter() - began:.1f} s (not timed)")
        with running(settings, MLFLOW):
            began = time.perf_counter()
            summary = train.run(settings)
            elapsed = time.perf_counter() - began
            gate = summary["gate"]
            print(
                f"train: {len(rows):,} rows -> read, label, 3 models, promotion gate, MLflow logging + registration "
                f"in {elapsed:.1f} s = {len(rows) / elapsed:,.0f} rows/s; candidate={summary['candidate']} "
                f"version={summary['registered_version']} decision={summary['decision']}"
            )
            print(
                f"  gate: {gate['rows']:,} test rows, gain {gate['gain']:+.3f} [{gate['gain_ci'][0]:+.3f}, "
                f"{gate['gain_ci'][1]:+.3f}], positive rate {gate['positive_rate']:.3f}"
            )
            print(
                "  test PR-AUC: "
                + ", ".join(f"{n}={m['test_pr_auc']:.3f}" for n, m in summary["models"].items())
                + f"; test positive rate={summary['positive_rate']['test']:.3f}"
            )
            if not args.skip_walk_forward:
                began = time.perf_counter()
                result = evaluate.run(settings)
                elapsed = time.perf_counter() - began
                print(
                    f"walk-forward: {settings.walk_forward_folds} folds, "
                    f"{settings.bootstrap_samples} bootstrap samples, {len(rows):,} rows in {elapsed:.1f} s"
                )
                print(result.table())
    return 0


if __name__ == "__main__":
    sys.exit(main())
