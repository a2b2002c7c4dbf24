"""Delta maintenance on a real table of many small files: compaction, VACUUM, rows, markers, time travel."""

from __future__ import annotations

import dataclasses
import datetime as dt
import re
import time
from pathlib import Path

import pytest

from spark_jobs.delta_maintenance import TABLES, check_retention, check_rows, count_rows, maintain
from volpipe.errors import MaintenanceError

pytestmark = [pytest.mark.spark, pytest.mark.integration]

APPENDS, ROWS = 8, 40
T0_NS = 1_790_000_000 * 1_000_000_000
MARKER = "features-stream-test batch "


def small_files_table(spark, path: Path) -> None:
    """``APPENDS`` appends of one small file each, marked like the stream's commits."""
    for batch in range(APPENDS):
        rows = spark.range(batch * ROWS, (batch + 1) * ROWS).selectExpr(
            "if(id % 2 = 0, 'BTC-USD', 'ETH-USD') AS product_id",
            "id AS ingest_seq",
            "0L AS ticker_idx",
            f"{T0_NS}L + id * 100000000L AS exchange_ts_ns",
            "rand(7) AS rolling_vol",
        )
        rows.coalesce(1).write.format("delta").mode("append").option("userMetadata", f"{MARKER}{batch}").save(str(path))


def partitioned_table(spark, path: Path, dates: list[str]) -> None:
    """Predictions-like rows partitioned by ``date``, two small files per date."""
    for day in dates:
        for part in range(2):
            spark.range(part * ROWS, (part + 1) * ROWS).selectExpr(
                "'BTC-USD' AS product_id",
                "id AS ingest_seq",
                f"{T0_NS}L + id AS exchange_ts_ns",
                "rand(3) AS probability",
                f"'{day}' AS date",
            ).coalesce(1).write.format("delta").mode("append").partitionBy("date").save(str(path))


def newest_marker(path: Path) -> str:
    """What the stream's first batch looks up (spark_jobs/delta_sink.py), read the same way, with delta-rs."""
    import deltalake

    history = deltalake.DeltaTable(str(path), without_files=True).history()
    return next(c["userMetadata"] for c in history if str(c.get("userMetadata")).startswith(MARKER))


def versions(spark, path: Path) -> list[tuple[int, str]]:
    from delta.tables import DeltaTable

    return [
        (r.version, r.operation) for r in DeltaTable.forPath(spark, str(path)).history().orderBy("version").collect()
    ]


def test_retention_and_row_checks():
    check_retention(168, 168, force=False)
    check_retention(0, 168, force=True)
    with pytest.raises(
        MaintenanceError, match=re.escape("retention 24.0 h is below DELTA_VACUUM_MIN_RETENTION_HOURS=168")
    ):
        check_retention(24.0, 168, force=False)
    with pytest.raises(MaintenanceError, match="table=features OPTIMIZE changed the rows of version=3: 10 -> 9"):
        check_rows("features", "OPTIMIZE", 3, 10, 9)


def test_compacts_then_vacuums_only_old_unreferenced_files(spark, session_settings, tmp_path):
    settings = dataclasses.replace(session_settings, delta_dir=tmp_path / "delta")
    path = settings.delta_table("features")
    small_files_table(spark, path)
    today = dt.datetime.now(dt.UTC).date()
    partitioned_table(spark, settings.delta_table("predictions"), ["2020-01-01", today.isoformat()])
    # A table whose own deleted-file retention is 1 s: Delta 4 would use it instead of the 168 h asked.
    quarantine = settings.delta_table("quarantine")
    for batch in range(3):
        spark.range(batch, batch + 1, 1, 1).selectExpr("'kafka' AS source", "id AS ingest_seq").write.format(
            "delta"
        ).mode("append").save(str(quarantine))
    spark.sql(
        f"ALTER TABLE delta.`{quarantine}` "
        "SET TBLPROPERTIES ('delta.deletedFileRetentionDuration' = 'interval 1 seconds')"
    )
    time.sleep(2)

    # Default retention (7 days): compacted, the replaced files stay for readers of older snapshots.
    summary, kept, predictions = maintain(spark, settings, TABLES)  # the other tables do not exist: skipped
    assert (kept.table, kept.files_after, kept.zorder, kept.vacuumed_files) == ("quarantine", 1, [], 0)
    # No Z-order columns: plain compaction. The 168 h asked for are honoured: every file stays.
    assert kept.data_files_on_disk_after == kept.files_before + 1
    # Partitioned by date: the recent partition is Z-ordered, the old one bin-packed; one file each.
    assert (predictions.table, predictions.files_before, predictions.files_after) == ("predictions", 4, 2)
    assert predictions.rows == 4 * ROWS and predictions.zorder == ["product_id", "exchange_ts_ns"]
    assert (summary.table, summary.files_before, summary.files_after, summary.rows) == (
        "features",
        APPENDS,
        1,
        APPENDS * ROWS,
    )
    assert summary.zorder == ["product_id", "exchange_ts_ns"]
    assert (summary.vacuumed_files, summary.data_files_on_disk_after) == (0, APPENDS + 1)
    assert versions(spark, path)[APPENDS][1] == "OPTIMIZE"
    # Time travel to before the compaction still works, in Spark and delta-rs.
    assert (
        spark.read.format("delta").option("versionAsOf", 5).load(str(path)).count() == count_rows(path, 5) == 6 * ROWS
    )
    assert newest_marker(path) == f"{MARKER}{APPENDS - 1}"

    # Below the minimum: refused before anything runs.
    before = versions(spark, path)
    with pytest.raises(MaintenanceError, match="below DELTA_VACUUM_MIN_RETENTION_HOURS"):
        maintain(spark, settings, ("features",), retention_hours=0)
    assert versions(spark, path) == before

    # Dry run: lists the unreferenced files, changes nothing.
    (dry,) = maintain(spark, settings, ("features",), retention_hours=0, force=True, dry_run=True)
    assert (dry.vacuumed_files, dry.data_files_on_disk_after, dry.zorder) == (APPENDS, APPENDS + 1, [])
    assert versions(spark, path) == before

    # Forced to 0 h: every file the newest snapshot does not reference goes, nothing else. Plain
    # compaction finds nothing to rewrite in one file: no OPTIMIZE commit.
    (forced,) = maintain(spark, settings, ("features",), retention_hours=0, force=True, zorder=False)
    assert (forced.rows, forced.files_after, forced.zorder) == (APPENDS * ROWS, 1, [])
    assert forced.data_files_on_disk_after == 1 and forced.vacuumed_files == APPENDS
    latest = versions(spark, path)[-1][0]
    assert [op for _, op in versions(spark, path)].count("OPTIMIZE") == 1
    assert spark.read.format("delta").load(str(path)).count() == count_rows(path, latest) == APPENDS * ROWS
    assert newest_marker(path) == f"{MARKER}{APPENDS - 1}"  # the log, and the stream's markers, are untouched
    with pytest.raises(Exception, match=r"(?i)not found|does not exist|no such file"):
        count_rows(path, 5)  # that snapshot's files were older than the retention: gone, as documented

    # The row check reads the data files, so a missing live file cannot go unnoticed.
    (live,) = [p for p in path.glob("*.parquet")]
    live.unlink()
    with pytest.raises(Exception, match=r"(?i)not found|does not exist|no such file"):
        count_rows(path, latest)
