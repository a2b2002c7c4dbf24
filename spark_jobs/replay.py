"""The replay: NDJSON raw files for a date range -> Delta ``features_replay``, as the stream would.

Inputs: ``settings.raw_dir/YYYYMMDD.ndjson`` (UTC receipt dates, docs/record-format.md).
Output: the rows of ``features_replay`` whose ``recv_ns`` falls in [start, end + 1 day),
replaced idempotently (Delta ``replaceWhere``): running it twice leaves one copy.

Same parsing (``volpipe.schema.parse_raw``), same ordering, dedupe and kernel
(``volpipe.features.featurize_frame``) as the stream; here ``applyInPandas`` hands the kernel
a product's whole history at once. The stream carries its state across days, so the replay
first reads ``--warmup-days`` earlier files (default 1) to rebuild the window, and emits only
rows of the range. Run as a module or with spark-submit::

    .venv/bin/python -m spark_jobs.replay --start 2026-01-01 --end 2026-01-01
    source .venv/bin/activate && spark-submit $(python -m volpipe.spark submit-args) spark_jobs/replay.py --start ...
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path

import pandas as pd
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from spark_jobs.delta_tables import ensure_table
from spark_jobs.entry import job_parser, run_job
from volpipe.config import Settings
from volpipe.dates import DateRange, file_stem
from volpipe.features import INPUT_COLUMNS, WindowState, featurize_frame
from volpipe.schema import nullable_ints, parse_raw, struct_of, with_layout
from volpipe.tables import FEATURE_TABLE_COLUMNS, FEATURES_REPLAY

log = logging.getLogger(__name__)


def raw_files(settings: Settings, dates: DateRange, warmup_days: int) -> list[Path]:
    """Existing daily files from ``warmup_days`` before the range to its end, in date order."""
    paths = (settings.raw_dir / f"{file_stem(day)}.ndjson" for day in dates.days(before=warmup_days))
    return [path for path in paths if path.exists()]


def read_raw(spark: SparkSession, files: list[Path]) -> DataFrame:
    """NDJSON lines as ``value`` with the file path as ``source`` (the shape ``parse_raw`` takes)."""
    if not files:
        return spark.createDataFrame([], "value string, source string")
    return spark.read.text([str(path) for path in files]).select("value", F.col("_metadata.file_path").alias("source"))


def transform(raw: DataFrame, window: int, dates: DateRange) -> DataFrame:
    """Raw lines -> ``features_replay`` rows received (``recv_ns``) in ``dates``."""
    start_ns, end_ns = dates.bounds_ns

    def replay_product(rows: pd.DataFrame) -> pd.DataFrame:
        out, _ = featurize_frame(rows, WindowState(), window)
        out = out[out["ready"] & (out["recv_ns"] >= start_ns) & (out["recv_ns"] < end_ns)]
        return out.assign(produced_ns=time.time_ns())[list(FEATURE_TABLE_COLUMNS)]

    ticks = parse_raw(raw).where(F.col("error").isNull()).select(*INPUT_COLUMNS)
    features = ticks.groupBy("product_id").applyInPandas(replay_product, struct_of(FEATURE_TABLE_COLUMNS))
    return with_layout(nullable_ints(features, FEATURE_TABLE_COLUMNS), FEATURES_REPLAY)


def write(features: DataFrame, settings: Settings, dates: DateRange) -> None:
    """Replaces the range in ``features_replay`` (created with its layout and kernel parameters first).

    Raises:
        KernelMismatch: The table holds rows of another W or kernel version.
    """
    ensure_table(features.sparkSession, settings, FEATURES_REPLAY, features.schema)
    (
        features.write.format("delta")
        .mode("overwrite")
        .option("replaceWhere", dates.where_ns("recv_ns"))
        .save(str(settings.delta_table(FEATURES_REPLAY)))
    )


def run(spark: SparkSession, settings: Settings, dates: DateRange, *, warmup_days: int = 1) -> int:
    """Replays ``dates`` into ``features_replay``.

    Returns:
        The number of feature rows written for the range.
    """
    files = raw_files(settings, dates, warmup_days)
    write(transform(read_raw(spark, files), settings.feature_window_size, dates), settings, dates)
    written = (
        spark.read.format("delta")
        .load(str(settings.delta_table(FEATURES_REPLAY)))
        .where(dates.where_ns("recv_ns"))
        .count()
    )
    log.info(
        "replay written range=%s files=%d rows=%d table=%s",
        dates,
        len(files),
        written,
        settings.delta_table(FEATURES_REPLAY),
    )
    return written


def main(argv: list[str] | None = None) -> int:
    parser = job_parser("spark_jobs.replay", __doc__)
    parser.add_argument("--warmup-days", type=int, default=1, help="earlier days read to rebuild the window")
    parser.add_argument("--window", type=int, help="W (FEATURE_WINDOW_SIZE); must match the stream's")

    def replay(spark: SparkSession, settings: Settings, args: argparse.Namespace) -> int:
        run(spark, settings, args.dates, warmup_days=args.warmup_days)
        return 0

    return run_job(
        parser,
        argv,
        "volpipe-replay",
        replay,
        failure="replay failed",
        overrides=lambda args: {"feature_window_size": args.window},
    )


if __name__ == "__main__":
    sys.exit(main())
