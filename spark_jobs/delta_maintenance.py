"""Delta maintenance: OPTIMIZE (compaction, Z-order on product and time) then VACUUM, rows checked.

Inputs: the Delta tables under DELTA_DIR that exist among ``TABLES`` (or ``--tables``),
DELTA_VACUUM_RETENTION_HOURS and DELTA_VACUUM_MIN_RETENTION_HOURS. Output: per table, one
OPTIMIZE commit (small files rewritten into large ones; Z-ordered by ``product_id`` and
``exchange_ts_ns`` where the table has them) and a VACUUM that deletes data files no longer
referenced and older than the retention; a ``TableSummary`` each (files, rows, seconds).

    spark-submit $(python -m volpipe.spark submit-args) spark_jobs/delta_maintenance.py --dry-run
    .venv/bin/python -m spark_jobs.delta_maintenance --tables features,ticks

Safe beside the running stream: OPTIMIZE only removes the files it rewrote, so it does not
conflict with blind appends; VACUUM never touches ``_delta_log``, where the stream's
exactly-once markers live, and keeps every file younger than the retention (7 days by
default), which a reader of an older snapshot could still need. docs/monitoring.md has the
reasoning and the Z-order measurements.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import datetime as dt
import json
import logging
import sys
import time
from collections.abc import Iterator
from pathlib import Path

from pyspark.sql import SparkSession

from spark_jobs.entry import job_parser, run_job
from volpipe.config import Settings
from volpipe.errors import MaintenanceError
from volpipe.tables import ALL_TABLES

log = logging.getLogger(__name__)

TABLES = ALL_TABLES
# Product/time queries (docs/querying.md) filter on these; the stream's files arrive in time
# order, but plain compaction groups them regardless of time: each new file spans much of the
# table (bench/zorder_skipping.py: the last hour overlapped 6 of 9 files, 2 of 8 Z-ordered).
ZORDER_COLUMNS = ("product_id", "exchange_ts_ns")
# On a table partitioned by ``date``, only the recent partitions are Z-ordered again: Z-order
# rewrites every file it selects, and older partitions were ordered by earlier runs.
ZORDER_RECENT_DAYS = 8


@dataclasses.dataclass
class TableSummary:
    """What maintenance did to one table."""

    table: str
    files_before: int
    files_after: int
    rows: int
    zorder: list[str]
    data_files_on_disk_before: int
    data_files_on_disk_after: int
    vacuumed_files: int
    retention_hours: float
    optimize_seconds: float
    vacuum_seconds: float
    dry_run: bool


def check_retention(hours: float, minimum: float, *, force: bool) -> None:
    """Refuses a VACUUM retention below ``minimum`` unless forced.

    Raises:
        MaintenanceError: ``hours`` is below ``minimum`` and ``force`` is false.
    """
    if hours < minimum and not force:
        raise MaintenanceError(
            f"VACUUM retention {hours} h is below DELTA_VACUUM_MIN_RETENTION_HOURS={minimum} h: files a reader of "
            "an older snapshot still needs could be deleted (pass --force to override)"
        )


def check_rows(table: str, operation: str, version: int, before: int, after: int) -> None:
    """Raises ``MaintenanceError`` unless ``operation`` kept the row count of the snapshot at ``version``."""
    if before != after:
        raise MaintenanceError(f"table={table} {operation} changed the rows of version={version}: {before} -> {after}")


@contextlib.contextmanager
def _conf(spark: SparkSession, values: dict[str, str]) -> Iterator[None]:
    """Session settings for the duration of a block, restored afterwards (the session may be shared)."""
    previous = {key: spark.conf.get(key, None) for key in values}
    for key, value in values.items():
        spark.conf.set(key, value)
    try:
        yield
    finally:
        for key, old in previous.items():
            if old is None:
                spark.conf.unset(key)
            else:
                spark.conf.set(key, old)


def _data_files_on_disk(path: Path) -> int:
    return sum(1 for p in path.rglob("*.parquet") if "_delta_log" not in p.parts)


def count_rows(path: Path, version: int) -> int:
    """Rows of the table's snapshot ``version``, from its data files' footers (fails if one is missing).

    Read with delta-rs: Delta-Spark would answer from the log's statistics without opening a
    file, and refuses time travel beyond the table's deletedFileRetentionDuration.
    """
    from deltalake import DeltaTable

    return DeltaTable(str(path), version=version).to_pyarrow_dataset().count_rows()


def _detail(spark: SparkSession, path: Path) -> dict:
    return spark.sql(f"DESCRIBE DETAIL delta.`{path}`").take(1)[0].asDict()  # always one row


def _optimize(spark: SparkSession, path: Path, columns: list[str], *, zorder: bool) -> list[str]:
    """Compaction, Z-ordered by the ``ZORDER_COLUMNS`` the table has (if ``zorder``); returns those used."""
    from delta.tables import DeltaTable

    table = DeltaTable.forPath(spark, str(path))
    zorder_by = [c for c in ZORDER_COLUMNS if c in columns] if zorder else []
    if not zorder_by:
        table.optimize().executeCompaction()
    elif "date" in _detail(spark, path)["partitionColumns"]:
        # Z-order rewrites every file it selects: only the recent days, whose layout still changes;
        # older days are bin-packed, a no-op once a day is one file.
        since = dt.datetime.now(dt.UTC).date() - dt.timedelta(days=ZORDER_RECENT_DAYS)
        table.optimize().where(f"date < '{since.isoformat()}'").executeCompaction()
        table.optimize().where(f"date >= '{since.isoformat()}'").executeZOrderBy(*zorder_by)
    else:
        table.optimize().executeZOrderBy(*zorder_by)
    return zorder_by


def _vacuum(spark: SparkSession, path: Path, hours: float, *, dry_run: bool) -> int:
    """VACUUM (or its dry run); returns the data files it deleted (or would delete)."""
    on_disk = _data_files_on_disk(path)
    conf = {
        # Delta refuses a retention below the table's deletedFileRetentionDuration (7 days) unless
        # its check is off; check_retention has already applied this project's own minimum.
        "spark.databricks.delta.retentionDurationCheck.enabled": "false",
        # Since delta-io/delta#5028 (Delta 4.x), VACUUM ignores RETAIN n HOURS unless n is 0 and
        # uses the table's deletedFileRetentionDuration instead, whatever it is (seen: a table
        # set to 1 s was vacuumed at 1 s when asked for 200 h). Setting the property is a
        # metadata commit, which would fail the stream's concurrent append: honour the argument.
        "spark.databricks.delta.vacuum.retentionWindowIgnore.enabled": "false",
    }
    with _conf(spark, conf):
        listed = spark.sql(f"VACUUM delta.`{path}` RETAIN {hours} HOURS{' DRY RUN' if dry_run else ''}").collect()
    return len(listed) if dry_run else on_disk - _data_files_on_disk(path)


def maintain_table(
    spark: SparkSession, name: str, path: Path, *, retention_hours: float, zorder: bool = True, dry_run: bool = False
) -> TableSummary:
    """OPTIMIZE then VACUUM one table; checks that neither changed a row count.

    OPTIMIZE: its commit's snapshot is compared with the one just before it, so appends the
    stream commits meanwhile (their own versions) do not count as changes. VACUUM: the newest
    snapshot is counted again afterwards from its files' footers, so a deleted live file fails.

    Raises:
        MaintenanceError: OPTIMIZE or VACUUM changed the row count.
    """
    from delta.tables import DeltaTable

    began = time.perf_counter()
    table = DeltaTable.forPath(spark, str(path))
    before = table.history(1).take(1)[0].version
    files_before, on_disk_before = _detail(spark, path)["numFiles"], _data_files_on_disk(path)
    zorder_by: list[str] = []
    if not dry_run:
        zorder_by = _optimize(spark, path, table.toDF().columns, zorder=zorder)
        commits = table.history().where(f"version > {before} AND operation = 'OPTIMIZE'").orderBy("version")
        optimized = commits.select("version").first()
        if optimized is not None:  # no commit when there was nothing to rewrite
            version = optimized.version
            check_rows(name, "OPTIMIZE", version, count_rows(path, version - 1), count_rows(path, version))
    latest = table.history(1).take(1)[0].version
    rows = count_rows(path, latest)
    optimized_at = time.perf_counter()
    vacuumed = _vacuum(spark, path, retention_hours, dry_run=dry_run)
    check_rows(name, "VACUUM", latest, rows, count_rows(path, latest))
    summary = TableSummary(
        table=name,
        files_before=files_before,
        files_after=_detail(spark, path)["numFiles"],
        rows=rows,
        zorder=zorder_by,
        data_files_on_disk_before=on_disk_before,
        data_files_on_disk_after=_data_files_on_disk(path),
        vacuumed_files=vacuumed,
        retention_hours=retention_hours,
        optimize_seconds=round(optimized_at - began, 2),
        vacuum_seconds=round(time.perf_counter() - optimized_at, 2),
        dry_run=dry_run,
    )
    log.info("maintained %s", " ".join(f"{k}={v}" for k, v in dataclasses.asdict(summary).items()))
    return summary


def maintain(
    spark: SparkSession,
    settings: Settings,
    tables: tuple[str, ...] = TABLES,
    *,
    retention_hours: float | None = None,
    force: bool = False,
    zorder: bool = True,
    dry_run: bool = False,
) -> list[TableSummary]:
    """Maintains each of ``tables`` that exists under DELTA_DIR (missing ones are skipped and logged).

    Args:
        spark: The session (``volpipe.spark.build_spark_session``).
        settings: The pipeline settings.
        tables: Table names.
        retention_hours: VACUUM retention (default DELTA_VACUUM_RETENTION_HOURS).
        force: Allow a retention below DELTA_VACUUM_MIN_RETENTION_HOURS.
        zorder: Z-order (product, time) where the table has the columns; else plain compaction.
        dry_run: No OPTIMIZE; VACUUM only lists what it would delete.

    Returns:
        One summary per maintained table.

    Raises:
        MaintenanceError: Retention below the minimum without ``force``, or rows changed.
    """
    hours = settings.delta_vacuum_retention_hours if retention_hours is None else retention_hours
    check_retention(hours, settings.delta_vacuum_min_retention_hours, force=force)
    conf = {
        # VACUUM lists files with a parallel job of 10,000 tasks by default: 40 s on a tiny table here.
        "spark.sql.sources.parallelPartitionDiscovery.parallelism": str(settings.spark_shuffle_partitions),
    }
    summaries = []
    with _conf(spark, conf):
        for name in tables:
            path = settings.delta_table(name)
            if not (path / "_delta_log").is_dir():
                log.info("skipped table=%s reason=missing path=%s", name, path)
                continue
            summaries.append(maintain_table(spark, name, path, retention_hours=hours, zorder=zorder, dry_run=dry_run))
    return summaries


def _tables(text: str) -> tuple[str, ...]:
    tables = tuple(t.strip() for t in text.split(",") if t.strip())
    unknown = set(tables) - set(TABLES)
    if unknown:
        raise argparse.ArgumentTypeError(f"unknown tables {sorted(unknown)}; known: {','.join(TABLES)}")
    return tables


def main(argv: list[str] | None = None) -> int:
    """Prints one JSON summary per table; exit code 1 on a refused retention or a row mismatch."""
    parser = job_parser("spark_jobs.delta_maintenance", __doc__, date_range=False)
    parser.add_argument(
        "--tables", type=_tables, default=TABLES, help=f"comma-separated tables (default: {','.join(TABLES)})"
    )
    parser.add_argument("--retention-hours", type=float, help="VACUUM retention (default DELTA_VACUUM_RETENTION_HOURS)")
    parser.add_argument("--force", action="store_true", help="allow a retention below DELTA_VACUUM_MIN_RETENTION_HOURS")
    parser.add_argument("--no-zorder", action="store_true", help="plain compaction (Z-order rewrites what it selects)")
    parser.add_argument(
        "--dry-run",
        action=argparse.BooleanOptionalAction,
        default=False,
        help="no OPTIMIZE; VACUUM DRY RUN (the DAG passes --no-dry-run for a real run)",
    )

    def maintain_tables(spark: SparkSession, settings: Settings, args: argparse.Namespace) -> int:
        for summary in maintain(
            spark,
            settings,
            args.tables,
            retention_hours=args.retention_hours,
            force=args.force,
            zorder=not args.no_zorder,
            dry_run=args.dry_run,
        ):
            print(json.dumps(dataclasses.asdict(summary)))
        return 0

    return run_job(parser, argv, "volpipe-delta-maintenance", maintain_tables, failure="maintenance failed")


if __name__ == "__main__":
    sys.exit(main())
