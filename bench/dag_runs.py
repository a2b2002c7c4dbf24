"""Wall time of each batch DAG on about 1,000,000 feature rows, run with ``dag.test()``.

Sets up under a temp dir, not timed: a private Kafka broker and MLflow server, N synthetic
ticks as the ingestor's daily NDJSON files and in Kafka, the feature stream caught up into
Delta, and a migrated Airflow metadata DB. Then runs, in a day's order and timed one by one,
``replay_validation``, ``train_nightly``, ``batch_inference``, ``monitoring_reports`` and
``delta_maintenance`` over every day of the data, the Spark tasks through real spark-submit::

    .venv/bin/python bench/dag_runs.py --ticks 1000000
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import BinaryIO

from bench_args import synthetic_data_parser
from features_throughput import produce_backlog

from spark_jobs import features_stream
from volpipe.config import PROJECT_ROOT
from volpipe.dates import daily_file_stem, day_of_ns
from volpipe.market import synthetic_raw_records
from volpipe.ops.sandbox import scratch_settings
from volpipe.ops.services import KAFKA, MLFLOW, running
from volpipe.spark import build_spark_session
from volpipe.tables import FEATURES, PREDICTIONS

DAGS = ("replay_validation", "train_nightly", "batch_inference", "monitoring_reports", "delta_maintenance")


def write_raw_files(raw_dir: Path, ticks: int, products: tuple[str, ...]) -> None:
    """The records ``produce_backlog`` sends, as the ingestor's daily files (same seed)."""
    raw_dir.mkdir(parents=True, exist_ok=True)
    handles: dict[str, BinaryIO] = {}
    try:
        for _, value in synthetic_raw_records(ticks, products, seed=3):
            recv_ns = int(value[value.index(b'"recv_ns":') + 10 : value.index(b',"conn_id"')])
            stem = daily_file_stem(recv_ns)
            if stem not in handles:
                handles[stem] = open(raw_dir / f"{stem}.ndjson", "ab")  # noqa: SIM115 - closed below
            handles[stem].write(value + b"\n")
    finally:
        for handle in handles.values():
            handle.close()


def main(argv: list[str] | None = None) -> int:
    parser = synthetic_data_parser(__doc__)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    with scratch_settings("bench-dags-") as settings, running(settings, KAFKA, MLFLOW):
        began = time.perf_counter()
        write_raw_files(settings.raw_dir, args.ticks, args.products)
        produce_backlog(settings, args.ticks, args.products)
        spark = build_spark_session(settings, "bench-dags")
        query = features_stream.start(spark, settings)
        query.processAllAvailable()
        query.stop()
        spark.stop()
        from deltalake import DeltaTable

        features = DeltaTable(str(settings.delta_table(FEATURES))).to_pyarrow_dataset()
        bounds = features.to_table(columns=["exchange_ts_ns"]).column(0)
        first = day_of_ns(min(bounds.to_pylist()))
        last = day_of_ns(max(bounds.to_pylist()))
        print(
            f"setup: {args.ticks:,} ticks -> {features.count_rows():,} feature rows over {first}..{last} "
            f"in {time.perf_counter() - began:.0f} s (not timed)",
            flush=True,
        )
        home = settings.data_dir / "airflow"
        home.mkdir()
        os.environ.update(
            {
                "PIPELINE_DATA_DIR": str(settings.data_dir),
                "MLFLOW_TRACKING_URI": settings.mlflow_tracking_uri,
                "AIRFLOW_HOME": str(home),
                "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
                "AIRFLOW__CORE__DAGS_FOLDER": str(PROJECT_ROOT / "dags"),
                "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home}/airflow.db",
                "AIRFLOW_CONN_SPARK_DEFAULT": json.dumps({"conn_type": "spark", "host": settings.spark_master}),
                "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
            }
        )
        subprocess.run(
            [str(Path(sys.executable).with_name("airflow")), "db", "migrate"],
            check=True,
            capture_output=True,
            timeout=300,
        )
        from airflow.dag_processing.dagbag import DagBag

        dags = DagBag(dag_folder=str(PROJECT_ROOT / "dags")).dags
        conf = {"start": str(first), "end": str(last)}
        for dag_id in DAGS:
            began = time.perf_counter()
            dag_run = dags[dag_id].test(run_conf={"dry_run": False} if dag_id == "delta_maintenance" else conf)
            states = {ti.task_id: ti.state for ti in dag_run.get_task_instances()}
            print(f"{dag_id}: {dag_run.state} in {time.perf_counter() - began:.1f} s {states}", flush=True)
        predictions = DeltaTable(str(settings.delta_table(PREDICTIONS))).to_pyarrow_dataset().count_rows()
        print(f"predictions: {predictions:,} rows", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
