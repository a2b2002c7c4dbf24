"""Wall time of a whole monitoring run: N reference + N current feature rows in Delta, predictions, MLflow.

Starts a private MLflow server (free port, temp dir), registers a trivial champion whose run
carries the training-window params, writes the ``features`` and ``predictions`` tables with
delta-rs (not timed), then times ``volpipe.monitoring.run.run_monitoring``: Delta reads,
sampling to ``--max-rows``, the Evidently reports, HTML/JSON and the MLflow run with its
artifacts. This is the work of the monitoring DAG's task.

    PYTHONPATH=. .venv/bin/python bench/monitoring_run.py --rows 1000000
"""

from __future__ import annotations

import argparse
import logging
import sys
import time

import pandas as pd

from volpipe.modeling.synthetic import write_features
from volpipe.monitoring.synthetic import (
    T0_NS,
    TICK_NS,
    contract_params,
    feature_rows,
    prediction_rows,
    register_champion,
)
from volpipe.ops.sandbox import scratch_settings
from volpipe.ops.services import MLFLOW, running
from volpipe.tables import FEATURES, PREDICTIONS


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000, help="rows per window (reference and current)")
    parser.add_argument("--max-rows", type=int, default=200_000, help="the run's sampling cap")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    with scratch_settings("bench-monitoring-") as settings, running(settings, MLFLOW):
        from volpipe.monitoring.run import run_monitoring

        name = "bench-champion"
        register_champion(settings, name, contract_params(T0_NS, T0_NS + args.rows * TICK_NS))
        current_start = T0_NS + args.rows * TICK_NS
        reference = feature_rows(args.rows, seed=1)
        current = feature_rows(args.rows, seed=2, start_ns=current_start, vol=1.3)
        write_features(settings.delta_table(FEATURES), pd.concat([reference, current], ignore_index=True))
        write_features(
            settings.delta_table(PREDICTIONS),
            pd.concat([prediction_rows(reference, 3, model_name=name), prediction_rows(current, 4, model_name=name)]),
        )
        began = time.perf_counter()
        verdict = run_monitoring(
            settings,
            name,
            current_start_ns=current_start,
            current_end_ns=current_start + args.rows * TICK_NS,
            max_rows=args.max_rows,
        )
        elapsed = time.perf_counter() - began
        print(
            f"monitoring run: {args.rows:,} reference + {args.rows:,} current rows (sampled to {args.max_rows:,}), "
            f"predictions for both: {elapsed:.1f} s; drifted {verdict.drifted_count}/{len(verdict.features)}, "
            f"prediction drift reference: {verdict.predictions[PREDICTIONS]['reference']}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
