"""Pure scoring cost of each model type: time per row and per micro-batch, without Spark or Kafka.

Fits the logistic regression and the boosting challenger on synthetic feature rows (the
training code's ``volpipe.modeling.models.fit``), then times ``models.probabilities``, the
function live and batch scoring call, on frames of the sizes a micro-batch hands one product's
scorer: 1 row, 100 (a second at 100 ticks/s), 10,000 and 250,000 (a catch-up batch). Prints
the median of ``--repeats`` timings per size, per call and per row::

    .venv/bin/python bench/scoring_cost.py
"""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np

from volpipe.modeling import models
from volpipe.modeling.synthetic import synthetic_features

SIZES = (1, 100, 10_000, 250_000)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--train-rows", type=int, default=60_000, help="synthetic rows to fit on (60000)")
    parser.add_argument("--repeats", type=int, default=7, help="timings per size; the median is shown (7)")
    args = parser.parse_args(argv)
    rows = synthetic_features(
        max(args.train_rows, max(SIZES)), seed=5, calm_seconds=120.0, burst_seconds=60.0, burst_multiplier=5.0
    )
    vol = rows["rolling_vol"].to_numpy()
    y = (vol > np.nanquantile(vol, 0.9)).astype(np.int64)  # any two-class target: this times scoring, not skill
    print(f"{'model':<24} {'rows':>8} {'per call':>12} {'per row':>12}")
    one_row_ms = {}
    for name in (models.LOGISTIC, models.BOOSTING):
        fitted = models.fit(name, rows.iloc[: args.train_rows], y[: args.train_rows], seed=1)
        columns = list(models.FEATURES[name])
        for size in SIZES:
            frame = rows[columns].iloc[:size]
            timings = []
            for _ in range(args.repeats):
                began = time.perf_counter()
                models.probabilities(fitted, frame)
                timings.append(time.perf_counter() - began)
            call = float(np.median(timings))
            print(f"{name:<24} {size:>8} {call * 1e3:>9.3f} ms {call / size * 1e6:>9.3f} us", flush=True)
            if size == 1:
                one_row_ms[name] = call * 1e3
    # The live path scores one new row per product at a time: that call is the cost per prediction.
    print("scoring cost per prediction (1-row call): " + ", ".join(f"{n}={ms:.3f} ms" for n, ms in one_row_ms.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
