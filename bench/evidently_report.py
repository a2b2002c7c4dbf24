"""Evidently report time: N reference + N current feature rows (and as many predictions).

Builds seeded synthetic rows shaped like the ``features`` and ``predictions`` tables (the
monitoring tests' generator, ``volpipe.monitoring.synthetic``; the current window is shifted so
the drift path does its full work), then times each step of a monitoring run except MLflow: the data-drift, data-quality
and prediction-drift reports (``volpipe.monitoring.drift``) and saving each as HTML and JSON.
Prints one line per step and the total; ``--repeat`` runs it several times in one process.

    PYTHONPATH=. .venv/bin/python bench/evidently_report.py --rows 100000 --repeat 3
"""

from __future__ import annotations

import argparse
import logging
import shutil
import sys
import tempfile
import time
from pathlib import Path

from volpipe.features import FEATURE_COLUMNS
from volpipe.monitoring import drift
from volpipe.monitoring.synthetic import T0_NS, feature_rows, prediction_rows


def one_run(reference, current, ref_scores, cur_scores, folder: Path) -> dict[str, float]:
    """Seconds per step of one report set."""
    times: dict[str, float] = {}
    began = time.perf_counter()
    snapshots = {}
    snapshots["data_drift"], summary = drift.data_drift(reference, current, drift.drift_columns(FEATURE_COLUMNS), 0.5)
    times["data_drift"] = time.perf_counter() - began
    mark = time.perf_counter()
    snapshots["data_quality"], _ = drift.data_quality(reference, current, list(FEATURE_COLUMNS))
    times["data_quality"] = time.perf_counter() - mark
    mark = time.perf_counter()
    snapshots["prediction_drift"], _ = drift.prediction_drift(ref_scores, cur_scores, 0.5)
    times["prediction_drift"] = time.perf_counter() - mark
    mark = time.perf_counter()
    for name, snapshot in snapshots.items():
        snapshot.save_html(str(folder / f"{name}.html"))
        snapshot.save_json(str(folder / f"{name}.json"))
    times["save_html_json"] = time.perf_counter() - mark
    times["total"] = time.perf_counter() - began
    times["drifted_features"] = summary.drifted_count
    return times


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=100_000, help="rows per window (reference and current)")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    reference = feature_rows(args.rows, seed=1)
    current = feature_rows(args.rows, seed=2, start_ns=T0_NS + 86_400 * 10**9, vol=1.3, imbalance=0.1)
    ref_scores, cur_scores = prediction_rows(reference, seed=3), prediction_rows(current, seed=4, shift=0.05)
    folder = Path(tempfile.mkdtemp(prefix="bench-evidently-"))
    try:
        for run in range(1, args.repeat + 1):
            times = one_run(reference, current, ref_scores, cur_scores, folder)
            sizes = ", ".join(f"{p.name} {p.stat().st_size / 1e6:.1f} MB" for p in sorted(folder.iterdir()))
            steps = " ".join(f"{k}={v:.2f}s" for k, v in times.items() if k not in ("drifted_features",))
            print(f"run {run}: {args.rows:,} + {args.rows:,} rows: {steps} drifted={times['drifted_features']}")
        print(f"files: {sizes}")
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
