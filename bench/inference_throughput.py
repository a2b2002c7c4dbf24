"""Batch inference throughput: N synthetic feature rows (default 1,000,000) -> champion -> Delta.

Builds the rows with the kernel and writes them to Delta, trains and registers a champion on
them (not timed), starts a SparkSession and warms it on one hour of rows (cold Spark
excluded), then times ``spark_jobs.batch_inference.run`` over every day of the data twice
(the second run replaces the first: same row count) and prints rows/s::

    .venv/bin/python bench/inference_throughput.py --ticks 1000000
"""

from __future__ import annotations

import argparse
import datetime as dt
import logging
import shutil
import sys
import tempfile
import time
from pathlib import Path

from spark_jobs import batch_inference
from volpipe.config import Settings
from volpipe.modeling import train
from volpipe.modeling.synthetic import synthetic_features, write_features
from volpipe.services import mlflow_server
from volpipe.services.process import free_port
from volpipe.spark import build_spark_session


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--ticks", type=int, default=1_000_000)
    parser.add_argument("--products", default="BTC-USD,ETH-USD")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    root = Path(tempfile.mkdtemp(prefix="bench-inference-"))
    settings = Settings.from_env(
        {"PIPELINE_DATA_DIR": str(root), "MLFLOW_TRACKING_URI": f"http://127.0.0.1:{free_port()}"}
    )
    rows = synthetic_features(args.ticks, tuple(args.products.split(",")), seed=3)
    write_features(settings.delta_table("features"), rows)
    bounds = rows["exchange_ts_ns"].agg(["min", "max"])
    first, last = (dt.datetime.fromtimestamp(ns / 1e9, dt.UTC).date() for ns in bounds)
    mlflow_server.start(settings)
    spark = build_spark_session(settings, "bench-inference", extra_conf=batch_inference.SPARK_CONF)
    try:
        summary = train.run(settings)
        print(f"setup: {len(rows):,} rows over {first}..{last}; champion={summary['candidate']} "
              f"version={summary['champion_version']} (not timed)")
        warm = rows[rows["exchange_ts_ns"] < rows["exchange_ts_ns"].min() + 3600 * 10**9]
        spark.range(1).count()
        batch_inference.transform(batch_inference.read(spark, settings, 0, int(warm["exchange_ts_ns"].max()) + 1),
                                  settings.mlflow_tracking_uri, batch_inference.resolve_model(settings, None)[0],
                                  batch_inference.resolve_model(settings, None)[1]).count()
        for attempt in ("first run", "re-run (replaces)"):
            began = time.perf_counter()
            out = batch_inference.run(spark, settings, first, last)
            elapsed = time.perf_counter() - began
            print(f"inference {attempt}: {out['rows']:,} rows scored and written in {elapsed:.1f} s = "
                  f"{out['rows'] / elapsed:,.0f} rows/s (incl. realised metrics + MLflow run; "
                  f"{settings.spark_master}, warm session)")
    finally:
        spark.stop()
        mlflow_server.stop(settings)
        shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
