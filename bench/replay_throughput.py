"""Replay throughput: N synthetic ticks in a daily NDJSON file -> Delta ``features_replay``.

Writes the raw file under a temp dir (not timed), then times ``spark_jobs.replay.run``
(read, parse, per-product kernel over the whole history, Delta overwrite of the range)
in a SparkSession started beforehand (its first job: a cold JVM), and prints ticks/s.

    .venv/bin/python bench/replay_throughput.py --ticks 1000000
"""

from __future__ import annotations

import datetime as dt
import logging
import sys
import time

from bench_args import synthetic_data_parser

from spark_jobs import replay
from volpipe.dates import DateRange
from volpipe.market import DEFAULT_START_NS, synthetic_raw_records
from volpipe.ops.sandbox import scratch_settings
from volpipe.spark import build_spark_session


def main(argv: list[str] | None = None) -> int:
    parser = synthetic_data_parser(__doc__)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    with scratch_settings("bench-replay-") as settings:
        settings.raw_dir.mkdir(parents=True)
        day = dt.datetime.fromtimestamp(DEFAULT_START_NS // 10**9, dt.UTC).date()
        # 1M ticks at ~9/s span more than a day: spread them over as many daily files as needed.
        files: dict[str, list[bytes]] = {}
        for _, value in synthetic_raw_records(args.ticks, args.products, seed=3):
            recv_s = int(value[value.index(b'"recv_ns":') + 10 : value.index(b',"conn_id"')]) // 10**9
            files.setdefault(time.strftime("%Y%m%d", time.gmtime(recv_s)), []).append(value)
        for name, lines in files.items():
            (settings.raw_dir / f"{name}.ndjson").write_bytes(b"\n".join(lines) + b"\n")
        last = dt.datetime.strptime(max(files), "%Y%m%d").date()
        spark = build_spark_session(settings, "bench-replay")
        began = time.perf_counter()
        rows = replay.run(spark, settings, DateRange(day, last), warmup_days=0)
        elapsed = time.perf_counter() - began
        print(
            f"replay: {args.ticks} ticks in {len(files)} daily files -> {rows} feature rows in {elapsed:.1f} s "
            f"= {args.ticks / elapsed:,.0f} ticks/s ({settings.spark_master}; "
            "session started before timing, first job in it)"
        )
        spark.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
