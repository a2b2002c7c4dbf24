"""The one place a SparkSession is configured: jars, Delta, RocksDB state, UTC, partitions.

Inputs: ``Settings`` (SPARK_MASTER, SPARK_SHUFFLE_PARTITIONS, SPARK_DRIVER_MEMORY,
SPARK_JARS_DIR). Output: a session, or for ``spark-submit`` the same configuration as
command-line arguments::

    spark-submit $(python -m volpipe.spark submit-args) spark_jobs/features_stream.py
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from volpipe.config import PROJECT_ROOT, Settings
from volpipe.errors import SetupError
from volpipe.tables import ALL_TABLES, REPEATING_STRING_COLUMNS

if TYPE_CHECKING:
    from pyspark.sql import SparkSession


def spark_conf(settings: Settings, *, ui: bool = False) -> dict[str, str]:
    """Every Spark setting the pipeline relies on.

    Args:
        settings: The pipeline settings.
        ui: Serve the Spark UI (off in tests and batch jobs; on for the long-running stream).

    Returns:
        Spark configuration keys and values.

    Raises:
        SetupError: The jars are missing (``make setup`` fetches them).
    """
    jars = sorted(settings.spark_jars_dir.glob("*.jar"))
    if not any(jar.name.startswith("delta-spark") for jar in jars):
        raise SetupError(f"no Delta/Kafka jars in {settings.spark_jars_dir}: run `make setup`")
    utc = "-Duser.timezone=UTC"
    # The parallel (throughput) collector: on two cores G1's concurrent work took a warm
    # 500k-tick catch-up batch from 12.5 s to 14.5-15 s (docs/streaming.md). A separate key, as
    # `submit-args` values must not contain spaces.
    gc = "-XX:+UseParallelGC"
    # In local mode driver and executors share one JVM: its RPC and block-manager ports need
    # not be reachable from other machines (by default they bind the host name's address).
    # A cluster's executors must reach the driver, so there the defaults stay.
    loopback = {"spark.driver.bindAddress": "127.0.0.1", "spark.driver.host": "127.0.0.1"}
    return {
        **(loopback if settings.spark_master.startswith("local") else {}),
        "spark.master": settings.spark_master,
        "spark.jars": ",".join(str(jar) for jar in jars),
        "spark.driver.memory": settings.spark_driver_memory,
        "spark.driver.defaultJavaOptions": gc,
        "spark.executor.defaultJavaOptions": gc,
        "spark.driver.extraJavaOptions": utc,
        "spark.executor.extraJavaOptions": utc,
        "spark.sql.session.timeZone": "UTC",
        "spark.sql.extensions": "io.delta.sql.DeltaSparkSessionExtension",
        "spark.sql.catalog.spark_catalog": "org.apache.spark.sql.delta.catalog.DeltaCatalog",
        # transformWithStateInPandas requires RocksDB; it is also the right store for long runs.
        "spark.sql.streaming.stateStore.providerClass": (
            "org.apache.spark.sql.execution.streaming.state.RocksDBStateStoreProvider"
        ),
        "spark.sql.streaming.stateStore.rocksdb.changelogCheckpointing.enabled": "true",
        # The checkpoint (CHECKPOINT_DIR, a local or mounted folder) is written through Hadoop's
        # FileSystem API, not Spark's default FileContext one: without Hadoop's native library
        # FileContext's rename forks a `readlink` per file (24 per micro-batch: offsets, commits, state),
        # 60-70 ms of each micro-batch here (docs/streaming.md). A local rename is atomic either way.
        "spark.sql.streaming.checkpointFileManagerClass": (
            "org.apache.spark.sql.execution.streaming.checkpointing.FileSystemBasedCheckpointFileManager"
        ),
        # Frozen into a stateful query's checkpoint; 200 costs tens of seconds per micro-batch here.
        "spark.sql.shuffle.partitions": str(settings.spark_shuffle_partitions),
        "spark.sql.execution.arrow.pyspark.enabled": "true",
        # Python workers run in the interpreter that launched the job (the project virtualenv) and
        # import the project from this checkout: on a cluster both must exist at the same paths on
        # every node (docs/scaling.md). Local mode finds the checkout without it.
        "spark.pyspark.python": sys.executable,
        "spark.pyspark.driver.python": sys.executable,
        "spark.executorEnv.PYTHONPATH": str(PROJECT_ROOT),
        "spark.ui.enabled": str(ui).lower(),
        "spark.ui.showConsoleProgress": "false",
        "spark.databricks.delta.snapshotPartitions": str(settings.spark_shuffle_partitions),
        # Parquet dictionary encoding only for the string columns whose values repeat. On the
        # (unique) float and integer columns Parquet filled a dictionary per page only to fall
        # back to plain encoding: 70% of the stream's Parquet time (docs/streaming.md).
        "spark.hadoop.parquet.enable.dictionary": "false",
        **{f"spark.hadoop.parquet.enable.dictionary#{name}": "true" for name in REPEATING_STRING_COLUMNS},
    }


def submit_command(settings: Settings, job: str, *args: str) -> list[str]:
    """``spark-submit $(python -m volpipe.spark submit-args) spark_jobs/<job>.py ARGS``, as argv.

    The same command for every master: only SPARK_MASTER differs between local mode and a cluster.
    """
    conf = [arg for key, value in spark_conf(settings).items() for arg in ("--conf", f"{key}={value}")]
    return [
        str(Path(sys.executable).with_name("spark-submit")),
        *conf,
        str(PROJECT_ROOT / "spark_jobs" / f"{job}.py"),
        *args,
    ]


def add_conf_flag(parser: argparse.ArgumentParser) -> None:
    """Adds spark-submit's ``--conf KEY=VALUE`` (repeatable) to a command: ``dict(args.conf)`` is the overrides."""

    def pair(text: str) -> tuple[str, str]:
        key, sep, value = text.partition("=")
        if not sep or not key:
            raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
        return key, value

    parser.add_argument(
        "--conf",
        type=pair,
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="extra Spark setting, repeatable (try a tuning without editing volpipe/spark.py)",
    )


def build_spark_session(
    settings: Settings,
    app_name: str,
    *,
    ui: bool = False,
    extra_conf: Mapping[str, str] | None = None,
) -> SparkSession:
    """Builds (or returns the running) SparkSession with the pipeline's configuration.

    Args:
        settings: The pipeline settings.
        app_name: Name shown in the Spark UI and logs.
        ui: Serve the Spark UI.
        extra_conf: Settings that win over the defaults (tests, benchmarks).

    Returns:
        The session.
    """
    from pyspark.sql import SparkSession

    # Driver-side Python runners (transformWithStateInPandas' pre-init, foreachBatch) take the
    # interpreter from PYSPARK_PYTHON, not from spark.pyspark.python: default it to this venv.
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    builder = SparkSession.builder.appName(app_name)
    for key, value in {**spark_conf(settings, ui=ui), **(extra_conf or {})}.items():
        builder = builder.config(key, value)
    session = builder.getOrCreate()
    session.sparkContext.setLogLevel("WARN")
    return session


def table_views(settings: Settings) -> str:
    """``CREATE TEMPORARY VIEW`` statements naming each existing table, for ``spark-sql -i``.

    Delta addresses a table by an absolute path only (a relative ``delta.`data/...``` fails with
    UNSUPPORTED_DATASOURCE_FOR_DIRECT_QUERY): the views let a shell say ``FROM features``.
    """
    return "".join(
        f"CREATE OR REPLACE TEMPORARY VIEW {table} AS SELECT * FROM delta.`{settings.delta_table(table)}`;\n"
        for table in ALL_TABLES
        if (settings.delta_table(table) / "_delta_log").is_dir()
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m volpipe.spark",
        description="Print the project's Spark configuration as spark-submit or spark-sql arguments, or the "
        "views that name its tables in a spark-sql shell.",
        epilog="spark-sql $(python -m volpipe.spark submit-args) -i <(python -m volpipe.spark views)",
    )
    parser.add_argument(
        "what",
        choices=["submit-args", "views"],
        help="submit-args: `--conf k=v` arguments for spark-submit/spark-sql; "
        "views: CREATE TEMPORARY VIEW statements for spark-sql -i",
    )
    parser.add_argument("--ui", action="store_true", help="enable the Spark UI")
    args = parser.parse_args(argv)
    settings = Settings.from_env()
    if args.what == "views":
        print(table_views(settings), end="")
        return 0
    # Unquoted on purpose: the output is meant for $(...) word splitting in a shell.
    print(" ".join(f"--conf {key}={value}" for key, value in spark_conf(settings, ui=args.ui).items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
