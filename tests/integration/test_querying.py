"""Every query of docs/querying.md runs with the tool it names, on tables a real stream wrote.

The ``sql`` block goes through the documented ``spark-sql`` command line (views from
``python -m volpipe.spark views``), the ``python`` block through the project's Python from a
folder laid out like the project root. Rows are stamped today (UTC), as the queries ask for.
"""

from __future__ import annotations

import datetime as dt
import os
import re
import subprocess
import sys

import pytest

from tests.spark.pipeline_helpers import pipeline_settings, stream_everything
from volpipe.config import PROJECT_ROOT
from volpipe.dates import NS_PER_DAY
from volpipe.market import synthetic_raw_records

pytestmark = [pytest.mark.integration, pytest.mark.spark]

DOC = PROJECT_ROOT / "docs" / "querying.md"
BAD = ("BTC-USD", b"not json at all")


def blocks(language: str) -> list[str]:
    """The fenced ``language`` blocks of the page."""
    return re.findall(rf"```{language}\n(.*?)```", DOC.read_text(), flags=re.S)


@pytest.fixture(scope="module")
def tables(spark, kafka_broker, tmp_path_factory):
    """A stream's tables of today's ticks under ``<root>/data/delta`` (the default layout)."""
    root = tmp_path_factory.mktemp("querying")
    settings = pipeline_settings(kafka_broker, root / "data", window=5)  # tables in <root>/data/delta
    today = (dt.datetime.now(dt.UTC).date() - dt.date(1970, 1, 1)).days
    records = list(synthetic_raw_records(1500, ("BTC-USD", "ETH-USD"), seed=4, start_ns=today * NS_PER_DAY))
    stream_everything(spark, settings, [*records, BAD])
    return root, settings


def test_the_page_has_the_blocks_this_test_runs():
    assert len(blocks("sql")) == 1 and len(blocks("python")) == 1 and len(blocks("bash")) == 1
    assert "spark-sql $(python -m volpipe.spark submit-args) -i <(python -m volpipe.spark views)" in blocks("bash")[0]


def test_spark_sql_queries_run_through_the_documented_shell(tables, tmp_path):
    root, _ = tables
    queries = tmp_path / "queries.sql"
    queries.write_text(blocks("sql")[0])
    command = (
        f"source .venv/bin/activate && spark-sql $(python -m volpipe.spark submit-args) "
        f"-i <(python -m volpipe.spark views) -f {queries}"
    )
    env = {**os.environ, "PIPELINE_DATA_DIR": str(root / "data")}
    result = subprocess.run(
        ["bash", "-c", command], cwd=PROJECT_ROOT, env=env, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Error" not in result.stderr, result.stderr[-3000:]
    rows = [line.split("\t") for line in result.stdout.splitlines()]
    today = str(dt.datetime.now(dt.UTC).date())
    assert sum(1 for row in rows if row[0].startswith(today)) >= 20 + 2  # one-day query, per-minute counts
    assert any("BTC-USD" in row and "ETH-USD" not in row for row in rows)
    assert any(row[1:] == ["not a raw record (JSON with ingest_seq, recv_ns, conn_id, msg)", "1"] for row in rows)


def test_python_block_runs_from_the_project_root_layout(tables):
    root, _ = tables
    check = "\nassert len(frame) > 1000 and frame['product_id'].nunique() == 2\nassert len(history) >= 1\n"
    result = subprocess.run(
        [sys.executable, "-c", blocks("python")[0] + check], cwd=root, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr[-3000:]


def test_a_one_day_query_reads_only_that_days_files(spark, tables):
    """Date pruning: rows over three days; once the other days' files are gone from disk, a query
    of one day still succeeds in Spark and in DuckDB over delta-rs (it never opens them), while a
    query of all days fails."""
    import duckdb
    from deltalake import DeltaTable
    from pyspark.sql import functions as F

    from spark_jobs.delta_tables import ensure_table
    from volpipe.schema import nullable_ints, struct_of, with_layout
    from volpipe.tables import FEATURE_TABLE_COLUMNS, FEATURES_REPLAY

    _, settings = tables
    given = {
        "product_id": F.lit("BTC-USD"),  # 30 rows, 10 on each of 2026-01-01, -02 and -03
        "exchange_ts_ns": F.lit(1_767_225_600 * 10**9) + (F.col("id") % 3) * NS_PER_DAY + F.col("id"),
    }
    rows = spark.range(30).select(
        *(
            given.get(field.name, F.lit(None)).cast(field.dataType).alias(field.name)
            for field in struct_of(FEATURE_TABLE_COLUMNS)
        )
    )
    frame = with_layout(nullable_ints(rows, FEATURE_TABLE_COLUMNS), FEATURES_REPLAY)
    path = settings.delta_table(FEATURES_REPLAY)
    ensure_table(spark, settings, FEATURES_REPLAY, frame.schema)
    frame.write.format("delta").mode("append").save(str(path))
    for other in ("2026-01-01", "2026-01-03"):
        for data_file in (path / f"date={other}").glob("*.parquet"):
            data_file.unlink()

    one_day = spark.read.format("delta").load(str(path)).where("date = DATE'2026-01-02'")
    stamps = one_day.select("exchange_ts_ns", F.unix_micros("exchange_ts").alias("micros")).collect()
    assert len(stamps) == 10 and all(row.micros == row.exchange_ts_ns // 1000 for row in stamps)
    con = duckdb.connect()
    con.register("features", DeltaTable(str(path)).to_pyarrow_dataset())
    assert con.execute("SELECT count(*) FROM features WHERE date = DATE '2026-01-02'").fetchone()[0] == 10
    with pytest.raises(Exception, match=r"(?i)not (found|exist)|no such file"):
        spark.read.format("delta").load(str(path)).agg(F.sum("exchange_ts_ns")).collect()  # count() uses stats
