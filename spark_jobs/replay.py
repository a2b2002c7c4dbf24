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
import datetime as dt
import logging
import sys
import time
from pathlib import Path

import pandas as pd
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from spark_jobs import add_date_range
from volpipe.config import Settings
from volpipe.features import INPUT_COLUMNS, WindowState, featurize_frame
from volpipe.schema import FEATURE_TABLE_COLUMNS, nullable_ints, parse_raw, struct_of

log = logging.getLogger(__name__)
NS_PER_DAY = 86_400 * 1_000_000_000


def day_bounds_ns(start: dt.date, end: dt.date) -> tuple[int, int]:
    """[start 00:00 UTC, end + 1 day 00:00 UTC) as epoch nanoseconds."""
    epoch = dt.date(1970, 1, 1)
    return (start - epoch).days * NS_PER_DAY, ((end - epoch).days + 1) * NS_PER_DAY


def raw_files(settings: Settings, start: dt.date, end: dt.date, warmup_days: int) -> list[Path]:
    """Existing daily files from ``start - warmup_days`` to ``end``, in date order."""
    first = start - dt.timedelta(days=warmup_days)
    days = ((first + dt.timedelta(days=i)) for i in range((end - first).days + 1))
    paths = (settings.raw_dir / f"{day:%Y%m%d}.ndjson" for day in days)  # type: ignore[operator]
    return [path for path in paths if path.exists()]


def read_raw(spark: SparkSession, files: list[Path]) -> DataFrame:
    """NDJSON lines as ``value`` with the file path as ``source`` (the shape ``parse_raw`` takes)."""
    if not files:
        return spark.createDataFrame([], "value string, source string")
    return spark.read.text([str(path) for path in files]).select("value", F.col("_metadata.file_path").alias("source"))


def transform(raw: DataFrame, window: int, start_ns: int, end_ns: int) -> DataFrame:
    """Raw lines -> feature rows (``FEATURE_TABLE_COLUMNS``) received in [start_ns, end_ns)."""

    def replay_product(rows: pd.DataFrame) -> pd.DataFrame:
        out, _ = featurize_frame(rows, WindowState(), window)
        out = out[out["ready"] & (out["recv_ns"] >= start_ns) & (out["recv_ns"] < end_ns)]
        return out.assign(produced_ns=time.time_ns())[list(FEATURE_TABLE_COLUMNS)]

    ticks = parse_raw(raw).where(F.col("error").isNull()).select(*INPUT_COLUMNS)
    features = ticks.groupBy("product_id").applyInPandas(replay_product, struct_of(FEATURE_TABLE_COLUMNS))
    return nullable_ints(features, FEATURE_TABLE_COLUMNS)


def write(features: DataFrame, settings: Settings, start_ns: int, end_ns: int) -> None:
    """Replaces the range in ``features_replay`` (creates the table on first use)."""
    (features.write.format("delta").mode("overwrite")
     .option("replaceWhere", f"recv_ns >= {start_ns} AND recv_ns < {end_ns}")
     .save(str(settings.delta_table("features_replay"))))


def run(spark: SparkSession, settings: Settings, start: dt.date, end: dt.date, *, warmup_days: int = 1) -> int:
    """Replays [start, end] into ``features_replay``.

    Returns:
        The number of feature rows written for the range.
    """
    if end < start:
        raise ValueError(f"--end {end} is before --start {start}")
    files = raw_files(settings, start, end, warmup_days)
    start_ns, end_ns = day_bounds_ns(start, end)
    features = transform(read_raw(spark, files), settings.feature_window_size, start_ns, end_ns)
    write(features, settings, start_ns, end_ns)
    written = (spark.read.format("delta").load(str(settings.delta_table("features_replay")))
               .where(f"recv_ns >= {start_ns} AND recv_ns < {end_ns}").count())
    log.info("replay written start=%s end=%s files=%d rows=%d table=%s", start, end, len(files), written,
             settings.delta_table("features_replay"))
    return written


def main(argv: list[str] | None = None) -> int:
    from volpipe.logs import configure_logging
    from volpipe.spark import build_spark_session

    parser = argparse.ArgumentParser(prog="spark_jobs.replay", description=__doc__.split("\n")[0])
    add_date_range(parser)
    parser.add_argument("--warmup-days", type=int, default=1, help="earlier days read to rebuild the window")
    parser.add_argument("--window", type=int, help="W (FEATURE_WINDOW_SIZE); must match the stream's")
    args = parser.parse_args(argv)
    configure_logging()
    settings = Settings.from_env(feature_window_size=args.window)
    spark = build_spark_session(settings, "volpipe-replay")
    try:
        run(spark, settings, args.start, args.end or args.start, warmup_days=args.warmup_days)
    finally:
        spark.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
