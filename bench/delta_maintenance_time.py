"""Wall time of Delta maintenance on a features-shaped table of N rows in many small appends.

Writes the table with delta-rs as the stream would leave it (``--appends`` commits of one
small file each, time-ordered, two products; not timed), starts the project's SparkSession,
then times ``spark_jobs.delta_maintenance.maintain`` twice: with the default 7-day retention
(OPTIMIZE with Z-order, VACUUM deletes nothing yet) and forced to 0 h (VACUUM deletes the
replaced files). Prints each run's summary.

    .venv/bin/python bench/delta_maintenance_time.py --rows 1000000 --appends 500
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

from spark_jobs.delta_maintenance import maintain
from volpipe.ops.sandbox import scratch_settings
from volpipe.spark import build_spark_session
from volpipe.tables import FEATURES

T0_NS = 1_790_000_000 * 10**9
TICK_NS = 100_000_000


def write_small_files(path: Path, rows: int, appends: int) -> None:
    from deltalake import write_deltalake

    rng = np.random.default_rng(0)
    per = rows // appends
    for batch in range(appends):
        ids = np.arange(batch * per, (batch + 1) * per, dtype=np.int64)
        frame = pd.DataFrame(
            {
                "product_id": np.where(ids % 2 == 0, "BTC-USD", "ETH-USD"),
                "ingest_seq": ids,
                "ticker_idx": np.zeros(per, np.int64),
                "exchange_ts_ns": T0_NS + ids * TICK_NS,
                **{
                    name: rng.normal(size=per)
                    for name in (
                        "midprice_return",
                        "rolling_vol",
                        "spread_bps",
                        "imbalance_1t",
                        "trade_intensity",
                        "vol_300t",
                        "ret_mean_30t",
                    )
                },
            }
        )
        write_deltalake(str(path), frame, mode="append")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--appends", type=int, default=500)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    with scratch_settings("bench-maintenance-") as settings:
        write_small_files(settings.delta_table(FEATURES), args.rows, args.appends)
        spark = build_spark_session(settings, "bench-maintenance")
        try:
            for label, hours in (("retention 168 h", None), ("retention 0 h (forced)", 0.0)):
                began = time.perf_counter()
                (summary,) = maintain(spark, settings, (FEATURES,), retention_hours=hours, force=hours is not None)
                print(f"{label}: {time.perf_counter() - began:.1f} s {dataclasses.asdict(summary)}")
        finally:
            spark.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
