"""Batch inference throughput: N synthetic feature rows (default 1,000,000) -> champion -> Delta.

Builds the rows with the kernel and writes them to Delta, trains and registers a champion on
them (not timed), starts a SparkSession and warms it with the whole job on the first day
into a scratch table (cold Spark excluded), then times ``spark_jobs.batch_inference.run``
over every day of the data twice (the second run replaces the first: same row count) and
prints rows/s, with scoring + Delta write apart from the realised metrics::

    .venv/bin/python bench/inference_throughput.py --ticks 1000000
"""

from __future__ import annotations

import dataclasses
import logging
import sys
import time

from bench_args import synthetic_data_parser, train_champion

from spark_jobs import batch_inference
from volpipe.dates import DateRange, day_of_ns
from volpipe.modeling.synthetic import synthetic_features, write_features
from volpipe.ops.sandbox import scratch_settings
from volpipe.ops.services import MLFLOW, running
from volpipe.spark import build_spark_session
from volpipe.tables import FEATURES


def main(argv: list[str] | None = None) -> int:
    parser = synthetic_data_parser(__doc__)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    with scratch_settings("bench-inference-") as settings:
        rows = synthetic_features(args.ticks, args.products, seed=3)
        write_features(settings.delta_table(FEATURES), rows)
        first, last = (day_of_ns(int(ns)) for ns in rows["exchange_ts_ns"].agg(["min", "max"]))
        with running(settings, MLFLOW):
            spark = build_spark_session(settings, "bench-inference", extra_conf=batch_inference.SPARK_CONF)
            summary = train_champion(settings)
            print(
                f"setup: {len(rows):,} rows over {first}..{last}; champion={summary['candidate']} "
                f"version={summary['champion_version']} (not timed)"
            )
            # Warm the JVM on the whole job (read, score, Delta write, metrics) for one day, into a scratch
            # table beside the features: the timed first run still creates its own predictions table.
            scratch = dataclasses.replace(settings, delta_dir=settings.data_dir / "warm-up")
            scratch.delta_dir.mkdir()
            scratch.delta_table(FEATURES).symlink_to(settings.delta_table(FEATURES))
            batch_inference.run(spark, scratch, DateRange(first, first))
            for attempt in ("first run", "re-run (replaces)"):
                began = time.perf_counter()
                out = batch_inference.run(spark, settings, DateRange(first, last))
                elapsed = time.perf_counter() - began
                print(
                    f"inference {attempt}: {out['rows']:,} rows scored and written in {elapsed:.1f} s = "
                    f"{out['rows'] / elapsed:,.0f} rows/s (incl. realised metrics + MLflow run; "
                    f"{settings.spark_master}, warm session); scoring + Delta write alone "
                    f"{out['score_write_seconds']:.1f} s = {out['rows'] / out['score_write_seconds']:,.0f} rows/s, "
                    f"realised metrics {out['metrics_seconds']:.1f} s"
                )
            spark.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
