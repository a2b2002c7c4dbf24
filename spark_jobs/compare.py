"""Compare the stream's ``features`` with ``features_replay`` for a date range, value by value.

Inputs: the two Delta tables, rows received (``recv_ns``) in [start, end + 1 day).
Output: a ``ComparisonReport`` (counts per side, rows on one side only, differing values per
column, a few examples); the command exits 0 only when there is no difference at all.
Values are compared exactly (null equals null, no tolerance); ``produced_ns`` is excluded.

    .venv/bin/python -m spark_jobs.compare --start 2026-01-01 --end 2026-01-01
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import json
import logging
import sys

from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from spark_jobs import add_date_range
from spark_jobs.replay import day_bounds_ns
from volpipe.config import Settings
from volpipe.errors import ReplayMismatch
from volpipe.schema import FEATURE_TABLE_COLUMNS

log = logging.getLogger(__name__)
KEYS = ("product_id", "ingest_seq", "ticker_idx")
COMPARED = tuple(c for c in FEATURE_TABLE_COLUMNS if c not in KEYS and c != "produced_ns")


@dataclasses.dataclass(frozen=True)
class ComparisonReport:
    """What differs between stream and replay for one range."""

    start: str
    end: str
    stream_rows: int
    replay_rows: int
    only_stream: int
    only_replay: int
    differing: dict[str, int]
    examples: list[dict]

    @property
    def ok(self) -> bool:
        """True when both sides hold the same rows with the same values."""
        return self.only_stream == 0 and self.only_replay == 0 and not any(self.differing.values())

    def summary(self) -> str:
        """One line for logs and the Airflow task."""
        diffs = ", ".join(f"{c}={n}" for c, n in self.differing.items() if n) or "none"
        return (f"range={self.start}..{self.end} stream_rows={self.stream_rows} replay_rows={self.replay_rows} "
                f"only_stream={self.only_stream} only_replay={self.only_replay} differing_values: {diffs}")


def compare(spark: SparkSession, settings: Settings, start: dt.date, end: dt.date, *, examples: int = 10) -> ComparisonReport:
    """Joins the two tables on (product_id, ingest_seq, ticker_idx) and counts every difference.

    Raises:
        ReplayMismatch: One of the tables does not exist (nothing to compare is a failure).
    """
    start_ns, end_ns = day_bounds_ns(start, end)
    sides = {}
    for side, table in (("s", "features"), ("r", "features_replay")):
        path = settings.delta_table(table)
        if not (path / "_delta_log").exists():
            raise ReplayMismatch(f"table {table} does not exist at {path}")
        frame = spark.read.format("delta").load(str(path)).where(f"recv_ns >= {start_ns} AND recv_ns < {end_ns}")
        sides[side] = frame.select(*KEYS, *(F.col(c).alias(f"{side}_{c}") for c in COMPARED), F.lit(True).alias(f"{side}_present"))
    joined = sides["s"].join(sides["r"], list(KEYS), "full_outer").cache()
    try:
        both = F.col("s_present").isNotNull() & F.col("r_present").isNotNull()
        unequal = {c: both & ~F.col(f"s_{c}").eqNullSafe(F.col(f"r_{c}")) for c in COMPARED}
        counts = joined.agg(
            F.count("s_present").alias("stream_rows"), F.count("r_present").alias("replay_rows"),
            F.count_if(F.col("r_present").isNull()).alias("only_stream"),
            F.count_if(F.col("s_present").isNull()).alias("only_replay"),
            *(F.count_if(cond).alias(c) for c, cond in unequal.items()),
        ).first().asDict()
        any_diff = F.lit(False)
        for cond in unequal.values():
            any_diff = any_diff | cond
        sample = joined.where(any_diff | F.col("s_present").isNull() | F.col("r_present").isNull()).orderBy(*KEYS)
        rows = [row.asDict() for row in sample.limit(examples).collect()]
    finally:
        joined.unpersist()
    report = ComparisonReport(
        start=str(start), end=str(end), stream_rows=counts["stream_rows"], replay_rows=counts["replay_rows"],
        only_stream=counts["only_stream"], only_replay=counts["only_replay"],
        differing={c: counts[c] for c in COMPARED}, examples=rows,
    )
    log.info("comparison %s", report.summary())
    return report


def check(spark: SparkSession, settings: Settings, start: dt.date, end: dt.date) -> ComparisonReport:
    """Like ``compare`` but raises when anything differs (for the Airflow task).

    Raises:
        ReplayMismatch: With the report's summary and its first examples.
    """
    report = compare(spark, settings, start, end)
    if not report.ok:
        raise ReplayMismatch(f"{report.summary()}; examples: {json.dumps(report.examples[:3], default=str)}")
    return report


def main(argv: list[str] | None = None) -> int:
    """Prints the report; exit code 0 = identical, 1 = differences."""
    from volpipe.logs import configure_logging
    from volpipe.spark import build_spark_session

    parser = argparse.ArgumentParser(prog="spark_jobs.compare", description=__doc__.split("\n")[0])
    add_date_range(parser)
    parser.add_argument("--examples", type=int, default=10, help="differing rows to print")
    args = parser.parse_args(argv)
    configure_logging()
    settings = Settings.from_env()
    spark = build_spark_session(settings, "volpipe-compare")
    try:
        report = compare(spark, settings, args.start, args.end or args.start, examples=args.examples)
    except ReplayMismatch as exc:
        log.error("cannot compare: %s", exc)
        return 1
    finally:
        spark.stop()
    print(report.summary())
    for row in report.examples:
        print(json.dumps(row, default=str))
    return 0 if report.ok else 1


if __name__ == "__main__":
    sys.exit(main())
