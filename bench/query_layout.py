"""A one-day, one-product query over 30 days of features as the stream lays them out: on ``date`` or on time alone.

Writes synthetic feature rows under a temp dir (not timed) in the ``features`` table's layout
(``volpipe.modeling.synthetic.write_features``: ``date`` partitions and ``exchange_ts``, from
``volpipe.tables``), one Delta commit per simulated hour as a long-running stream leaves them
after compaction. Then times the query users run (one product, one UTC day) with Spark SQL and
with DuckDB over delta-rs, filtered two ways: on ``date``, as ``docs/querying.md`` says, and on
``exchange_ts_ns`` alone; prints the median of ``--repeats`` warm runs and the files each read.

    .venv/bin/python bench/query_layout.py --days 30 --rows-per-hour 2000
"""

from __future__ import annotations

import argparse
import datetime as dt
import statistics
import sys
import time

import numpy as np
import pandas as pd

from volpipe.dates import NS_PER_DAY, DateRange
from volpipe.market import DEFAULT_START_NS
from volpipe.modeling.synthetic import write_features
from volpipe.ops.sandbox import scratch_settings
from volpipe.spark import build_spark_session
from volpipe.tables import FEATURE_TABLE_COLUMNS, FEATURES, PARTITION_COLUMN

PRODUCTS = ("BTC-USD", "ETH-USD", "SOL-USD")
NS_PER_HOUR = NS_PER_DAY // 24


def hour_of_rows(hour: int, rows: int, rng: np.random.Generator) -> pd.DataFrame:
    """``rows`` feature rows of one simulated hour, in the features table's columns."""
    ts = DEFAULT_START_NS + hour * NS_PER_HOUR + np.sort(rng.integers(0, NS_PER_HOUR, rows))
    columns: dict[str, object] = {}
    for name in FEATURE_TABLE_COLUMNS:
        if name == "product_id":
            columns[name] = rng.choice(PRODUCTS, rows)
        elif name == "conn_id":
            columns[name] = "bench"
        elif name == "mid_fallback":
            columns[name] = np.zeros(rows, bool)
        elif name in ("exchange_ts_ns", "recv_ns", "produced_ns"):
            columns[name] = ts
        elif name in ("ingest_seq", "ticker_idx", "sequence_num"):
            columns[name] = hour * rows + np.arange(rows, dtype=np.int64)
        else:
            columns[name] = rng.random(rows)
    return pd.DataFrame(columns)


def files_read(frame) -> int:
    """Files the scans of ``frame``'s executed plan opened (Spark's ``numFiles`` metric)."""
    frame.collect()
    leaves = frame._jdf.queryExecution().executedPlan().collectLeaves()
    metrics = (leaves.apply(i).metrics().get("numFiles") for i in range(leaves.size()))
    return sum(int(metric.get().value()) for metric in metrics if metric.isDefined())


def median_seconds(run, repeats: int) -> float:
    """Median wall time of ``repeats`` calls after one warm-up call."""
    run()
    timings = []
    for _ in range(repeats):
        began = time.perf_counter()
        run()
        timings.append(time.perf_counter() - began)
    return statistics.median(timings)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--rows-per-hour", type=int, default=2000)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args(argv)
    import duckdb
    from deltalake import DeltaTable

    day = dt.date(2026, 1, 1) + dt.timedelta(days=args.days // 2)
    low, high = DateRange(day, day).bounds_ns
    with scratch_settings("bench-query-") as settings:
        path = settings.delta_table(FEATURES)
        rng = np.random.default_rng(1)
        for hour in range(args.days * 24):
            write_features(path, hour_of_rows(hour, args.rows_per_hour, rng))
            if hour % 100 == 99:  # as the stream does: log replay stays short
                DeltaTable(str(path)).create_checkpoint()
        total = args.days * 24 * args.rows_per_hour
        files = len(DeltaTable(str(path)).file_uris())
        print(
            f"{total:,} feature rows over {args.days} days, {args.days * 24} commits; query: product BTC-USD on {day}"
        )
        where = {
            "date": f"{PARTITION_COLUMN} = DATE'{day}'",
            "time": f"exchange_ts_ns >= {low} AND exchange_ts_ns < {high}",
        }
        # Without adaptive execution the executed plan holds the scan and its file count directly.
        spark = build_spark_session(settings, "bench-query", extra_conf={"spark.sql.adaptive.enabled": "false"})
        for on, condition in where.items():
            sql = f"SELECT count(*), avg(rolling_vol) FROM delta.`{path}` WHERE {condition} AND product_id = 'BTC-USD'"
            seconds = median_seconds(lambda sql=sql: spark.sql(sql).collect(), args.repeats)
            print(f"spark-sql {on}: {seconds * 1000:7.0f} ms, files read {files_read(spark.sql(sql))} of {files}")
        spark.stop()
        con = duckdb.connect()
        con.register("features", DeltaTable(str(path)).to_pyarrow_dataset())
        for on, condition in where.items():
            sql = f"SELECT count(*), avg(rolling_vol) FROM features WHERE {condition} AND product_id = 'BTC-USD'"
            seconds = median_seconds(lambda sql=sql: con.sql(sql).fetchall(), args.repeats)
            print(f"duckdb    {on}: {seconds * 1000:7.0f} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
