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
import json
import logging
import sys
from pathlib import Path

from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from spark_jobs.entry import job_parser, run_job
from volpipe.config import Settings
from volpipe.dates import DateRange
from volpipe.errors import ReplayMismatch
from volpipe.tables import FEATURES, FEATURES_REPLAY, ROW_KEYS, recorded_kernel, table_columns, table_properties

log = logging.getLogger(__name__)
COMPARED = tuple(c for c in table_columns(FEATURES) if c not in ROW_KEYS and c != "produced_ns")


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
        return (
            f"range={self.start}..{self.end} stream_rows={self.stream_rows} replay_rows={self.replay_rows} "
            f"only_stream={self.only_stream} only_replay={self.only_replay} differing_values: {diffs}"
        )


def kernels_match(settings: Settings) -> None:
    """Checks that both tables exist and were computed by the same kernel parameters.

    Raises:
        ReplayMismatch: A table is missing, or the two record different kernels (a comparison
            of different windows would report every value as different).
    """
    recorded = {}
    for table in (FEATURES, FEATURES_REPLAY):
        properties = table_properties(settings.delta_table(table))
        if properties is None:
            raise ReplayMismatch(f"table {table} does not exist at {settings.delta_table(table)}")
        recorded[table] = recorded_kernel(properties)
    if recorded[FEATURES] != recorded[FEATURES_REPLAY]:
        raise ReplayMismatch(
            f"the tables were computed by different kernels: {FEATURES} {recorded[FEATURES]}, "
            f"{FEATURES_REPLAY} {recorded[FEATURES_REPLAY]}"
        )


def compare(spark: SparkSession, settings: Settings, dates: DateRange, *, examples: int = 10) -> ComparisonReport:
    """Joins the two tables on (product_id, ingest_seq, ticker_idx) and counts every difference.

    Raises:
        ReplayMismatch: A table does not exist (nothing to compare is a failure) or the two
            were computed by different kernel parameters.
    """
    kernels_match(settings)
    sides = {}
    for side, table in (("s", FEATURES), ("r", FEATURES_REPLAY)):
        frame = spark.read.format("delta").load(str(settings.delta_table(table))).where(dates.where_ns("recv_ns"))
        values = (F.col(c).alias(f"{side}_{c}") for c in COMPARED)
        sides[side] = frame.select(*ROW_KEYS, *values, F.lit(True).alias(f"{side}_present"))
    joined = sides["s"].join(sides["r"], list(ROW_KEYS), "full_outer").cache()
    try:
        both = F.col("s_present").isNotNull() & F.col("r_present").isNotNull()
        unequal = {c: both & ~F.col(f"s_{c}").eqNullSafe(F.col(f"r_{c}")) for c in COMPARED}
        counts = (
            joined.agg(
                F.count("s_present").alias("stream_rows"),
                F.count("r_present").alias("replay_rows"),
                F.count_if(F.col("r_present").isNull()).alias("only_stream"),
                F.count_if(F.col("s_present").isNull()).alias("only_replay"),
                *(F.count_if(cond).alias(c) for c, cond in unequal.items()),
            )
            .take(1)[0]
            .asDict()
        )  # an aggregate: one row
        any_diff = F.lit(False)
        for cond in unequal.values():
            any_diff = any_diff | cond
        one_sided = F.col("s_present").isNull() | F.col("r_present").isNull()
        sample = joined.where(any_diff | one_sided).orderBy(*ROW_KEYS)
        rows = [row.asDict() for row in sample.limit(examples).collect()]
    finally:
        joined.unpersist()
    report = ComparisonReport(
        start=str(dates.start),
        end=str(dates.end),
        stream_rows=counts["stream_rows"],
        replay_rows=counts["replay_rows"],
        only_stream=counts["only_stream"],
        only_replay=counts["only_replay"],
        differing={c: counts[c] for c in COMPARED},
        examples=rows,
    )
    log.info("comparison %s", report.summary())
    return report


def check(spark: SparkSession, settings: Settings, dates: DateRange) -> ComparisonReport:
    """Like ``compare`` but raises when anything differs (for the Airflow task).

    Raises:
        ReplayMismatch: With the report's summary and its first examples.
    """
    report = compare(spark, settings, dates)
    if not report.ok:
        raise ReplayMismatch(f"{report.summary()}; examples: {json.dumps(report.examples[:3], default=str)}")
    return report


def write_verdict(report: ComparisonReport | None, dates: DateRange, path: Path, *, error: str | None = None) -> None:
    """The JSON verdict of one comparison (or of why there was none), for the DAG and for people.

    Written atomically, so a reader never sees half a verdict.
    """
    verdict = {
        "range": {"start": str(dates.start), "end": str(dates.end)},
        "equal": bool(report and report.ok),
        "error": error,
        "report": dataclasses.asdict(report) if report else None,
        "summary": report.summary() if report else error,
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(".json.partial")
    partial.write_text(json.dumps(verdict, indent=2, default=str) + "\n")
    partial.replace(path)


def main(argv: list[str] | None = None) -> int:
    """Prints the report (and writes its JSON verdict); exit code 0 = identical, 1 = differences."""
    parser = job_parser("spark_jobs.compare", __doc__)
    parser.add_argument("--examples", type=int, default=10, help="differing rows to print")
    parser.add_argument("--verdict", type=Path, help="also write the JSON verdict to this file")

    def compare_and_report(spark: SparkSession, settings: Settings, args: argparse.Namespace) -> int:
        try:
            report = compare(spark, settings, args.dates, examples=args.examples)
        except ReplayMismatch as exc:
            if args.verdict:
                write_verdict(None, args.dates, args.verdict, error=str(exc))
            raise
        if args.verdict:
            write_verdict(report, args.dates, args.verdict)
        print(("EQUAL " if report.ok else "DIFFERENT ") + report.summary())
        for row in report.examples:
            print(json.dumps(row, default=str))
        return 0 if report.ok else 1

    return run_job(parser, argv, "volpipe-compare", compare_and_report, failure="cannot compare")


if __name__ == "__main__":
    sys.exit(main())
