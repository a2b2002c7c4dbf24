"""Files a product/time query must open after plain compaction vs Z-order on (product_id, exchange_ts_ns).

Writes a features-shaped table the way the stream does (many small appends in time order,
two products interleaved), copies it, runs OPTIMIZE on each copy (compaction on one, Z-order
on the other; a small target file size stands in for a large table), then counts, from each
file's min/max statistics in the log (delta-rs), the files whose ranges overlap the filters
of docs/querying.md: the last hour, and one product over the last hour.

    .venv/bin/python bench/zorder_skipping.py --appends 240 --rows 2000
"""

from __future__ import annotations

import argparse
import logging
import shutil
import sys
import tempfile
from pathlib import Path

from volpipe.config import Settings
from volpipe.spark import build_spark_session

T0_NS = 1_790_000_000 * 10**9
TICK_NS = 100_000_000


def overlapping(path: Path, since_ns: int, product: str | None) -> tuple[int, int]:
    """(files whose statistics overlap the filter, files in the snapshot)."""
    import pyarrow as pa
    from deltalake import DeltaTable

    actions = pa.table(DeltaTable(str(path)).get_add_actions(flatten=True)).to_pandas()
    hit = actions["max.exchange_ts_ns"] >= since_ns
    if product is not None:
        hit &= (actions["min.product_id"] <= product) & (actions["max.product_id"] >= product)
    return int(hit.sum()), len(actions)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--appends", type=int, default=240, help="micro-batch appends (one file each)")
    parser.add_argument("--rows", type=int, default=2000, help="rows per append")
    parser.add_argument("--max-file-mb", type=float, default=1.0, help="OPTIMIZE's target file size")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    root = Path(tempfile.mkdtemp(prefix="bench-zorder-"))
    settings = Settings.from_env({"PIPELINE_DATA_DIR": str(root)})
    spark = build_spark_session(
        settings,
        "bench-zorder",
        extra_conf={"spark.databricks.delta.optimize.maxFileSize": str(int(args.max_file_mb * 2**20))},
    )
    try:
        from delta.tables import DeltaTable

        base = root / "base"
        for batch in range(args.appends):
            first = batch * args.rows
            spark.range(first, first + args.rows).selectExpr(
                "if(id % 2 = 0, 'BTC-USD', 'ETH-USD') AS product_id",
                "id AS ingest_seq",
                f"{T0_NS}L + id * {TICK_NS}L AS exchange_ts_ns",
                "rand(1) AS rolling_vol",
                "rand(2) AS spread_bps",
                "rand(3) AS imbalance_1t",
            ).coalesce(1).write.format("delta").mode("append").save(str(base))
        last_ns = T0_NS + (args.appends * args.rows - 1) * TICK_NS
        since_ns = last_ns - 3600 * 10**9
        print(
            f"table: {args.appends} appends x {args.rows} rows, last hour = "
            f"{min(36_000, args.appends * args.rows) / (args.appends * args.rows):.1%} of the rows"
        )
        for label, how in (("as written", None), ("compaction", "compact"), ("z-order", "zorder")):
            path = root / label.replace(" ", "_")
            shutil.copytree(base, path)
            optimize = DeltaTable.forPath(spark, str(path)).optimize()
            if how == "compact":
                optimize.executeCompaction()
            elif how == "zorder":
                optimize.executeZOrderBy("product_id", "exchange_ts_ns")
            hour, files = overlapping(path, since_ns, None)
            product_hour, _ = overlapping(path, since_ns, "BTC-USD")
            print(
                f"{label:>10}: {files:4d} files; last hour opens {hour:4d}; BTC-USD last hour opens {product_hour:4d}"
            )
    finally:
        spark.stop()
        shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
