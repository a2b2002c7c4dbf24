"""Soak: the live path at 10x the real tick rate over 5 products for 30 minutes, watched.

Starts its own Kafka and MLflow, trains a champion (not timed), the local exchange
(``--speed 10``: ten times the calibrated ~4.4 ticks/s per product), and the live path
exactly as ``make live`` runs it: the ingestor and the stream (``spark-submit``, live
scoring on), each under its supervisor. Every ``--interval`` seconds it samples the RSS of
each process (the stream's JVM, its Python driver, its Python workers summed, the ingestor,
the exchange, the broker) and the stream's lag behind ``ticks.raw``. At the end it stops the
ingestor, lets the stream drain, stops it politely, checks that nothing was lost (Delta
``ticks`` rows = tickers in the NDJSON; the replay of the NDJSON equals the stream's
``features`` bit for bit, ``spark_jobs.compare``) and reports the Delta tables' files and
size before and after ``spark_jobs.delta_maintenance``. Prints one line per sample and a
summary: RSS slope per process (MB per hour, least squares after the warm-up), lag.

    .venv/bin/python bench/soak.py                      # 30 minutes
    .venv/bin/python bench/soak.py --minutes 3          # a smoke run
"""

from __future__ import annotations

import argparse
import dataclasses
import subprocess
import sys
import time
from pathlib import Path

import deltalake
import numpy as np
import orjson
import psutil

from volpipe.config import PROJECT_ROOT, Settings
from volpipe.modeling import train
from volpipe.modeling.synthetic import synthetic_features, write_features
from volpipe.ops.harness import ExchangeProcess, process_tree
from volpipe.ops.sandbox import scratch_settings
from volpipe.ops.services import INGESTOR, KAFKA, MLFLOW, STREAM, live, running
from volpipe.spark import submit_command

PRODUCTS = ("BTC-USD", "ETH-USD", "SOL-USD", "ADA-USD", "DOGE-USD")
TABLES = ("ticks", "features", "predictions_live")


def role(process: psutil.Process) -> str | None:
    """What a process of the live path is, from its command line (None: not sampled)."""
    try:
        line = " ".join(process.cmdline())
    except psutil.Error:
        return None
    if "pyspark.daemon" in line or "pyspark/daemon" in line or "pyspark.worker" in line:
        return "python workers"
    if "SparkSubmit" in line:
        try:  # the JVM forking a Python worker: a copy of it until exec, not a second JVM
            return None if process.parent().cmdline() == process.cmdline() else "stream JVM"
        except psutil.Error:
            return None
    if "features_stream.py" in line:
        return "stream driver"
    if "-m ingest" in line and "exchange" not in line and "supervisor" not in line:
        return "ingestor"
    return None


def sample(settings: Settings, extra: dict[str, psutil.Process]) -> dict[str, float]:
    """RSS in MB per role, over the supervised trees and ``extra`` processes."""
    rss: dict[str, float] = {}
    for service in (STREAM, INGESTOR):
        pid = service.process(settings).pid()
        for process in process_tree(pid) if pid else []:
            name = role(process)
            if name:
                try:
                    rss[name] = rss.get(name, 0.0) + process.memory_info().rss / 2**20
                except psutil.Error:
                    pass
    for name, process in extra.items():
        try:
            rss[name] = sum(p.memory_info().rss for p in [process, *process.children(recursive=True)]) / 2**20
        except psutil.Error:
            pass
    return rss


def table_files(settings: Settings) -> dict[str, tuple[int, int, int]]:
    """Per table: (active files, their bytes, Parquet files on disk)."""
    out = {}
    for name in TABLES:
        path = settings.delta_table(name)
        actions = deltalake.DeltaTable(str(path)).get_add_actions(flatten=True)
        sizes = actions.column("size_bytes").to_pylist()
        out[name] = (len(sizes), sum(sizes), sum(1 for _ in path.rglob("*.parquet")))
    return out


def spark_job(settings: Settings, job: str, *args: str, check: bool = True) -> str:
    """Runs ``spark_jobs/<job>.py`` with spark-submit as the DAGs do; returns its output."""
    done = subprocess.run(submit_command(settings, job, *args), cwd=PROJECT_ROOT, env=live.program_env(settings),
                          capture_output=True, text=True)
    if check and done.returncode:
        raise SystemExit(f"{job} failed ({done.returncode}):\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    return done.stdout


def ndjson_tickers(raw_dir: Path) -> tuple[int, int, list[str]]:
    """(records, tickers in ticker messages, the UTC days of the files) in the NDJSON folder."""
    records = tickers = 0
    days = set()
    for path in sorted(raw_dir.rglob("*.ndjson")):
        days.add(f"{path.stem[:4]}-{path.stem[4:6]}-{path.stem[6:8]}")  # YYYYMMDD.ndjson
        for line in path.read_bytes().splitlines():
            records += 1
            msg = orjson.loads(line)["msg"]
            if msg.get("channel") == "ticker":
                tickers += sum(len(event.get("tickers") or []) for event in msg.get("events") or [])
    return records, tickers, sorted(days)


def slope_mb_per_hour(times: list[float], values: list[float]) -> float:
    return float(np.polyfit(np.array(times) / 3600, np.array(values), 1)[0]) if len(times) > 2 else float("nan")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--minutes", type=float, default=30.0, help="how long ticks flow (30)")
    parser.add_argument("--speed", type=float, default=10.0, help="times the real tick rate (10)")
    parser.add_argument("--interval", type=float, default=10.0, help="seconds between samples (10)")
    parser.add_argument("--warmup-minutes", type=float, default=3.0, help="left out of the RSS slopes (3)")
    args = parser.parse_args(argv)

    exchange = ExchangeProcess("--products", ",".join(PRODUCTS), "--speed", str(args.speed))
    try:
        with scratch_settings("bench-soak-", COINBASE_WS_URL=exchange.url, PRODUCT_IDS=",".join(PRODUCTS)) as settings, \
                running(settings, KAFKA, MLFLOW):
            training = dataclasses.replace(settings, delta_dir=settings.data_dir / "training-delta", train_min_rows=1000)
            write_features(training.delta_table("features"), synthetic_features(
                20_000, seed=4, calm_seconds=120.0, burst_seconds=60.0, burst_multiplier=5.0))
            print(f"champion: v{train.run(training)['champion_version']}", flush=True)
            broker = psutil.Process(KAFKA.process(settings).pid())
            extra = {"exchange": psutil.Process(exchange.proc.pid), "kafka broker": broker}
            samples: list[tuple[float, dict[str, float], int | None]] = []
            with running(settings, STREAM, INGESTOR):
                began = time.monotonic()
                while (elapsed := time.monotonic() - began) < args.minutes * 60:
                    rss, lag = sample(settings, extra), live.stream_lag(settings)
                    samples.append((elapsed, rss, lag))
                    print(f"{elapsed:6.0f} s lag={lag} " + " ".join(f"{k}={v:.0f}MB" for k, v in sorted(rss.items())),
                          flush=True)
                    time.sleep(args.interval)
                exchange.control("stall", seconds=3600)  # no ticker left in flight when the ingestor stops
                time.sleep(2)
                INGESTOR.stop(settings)
                drained = time.monotonic()
                while (live.stream_lag(settings) or 0) > 0 and time.monotonic() - drained < 300:
                    time.sleep(2)
                time.sleep(10)  # the batch planned last commits
            served = exchange.stats()
            records, tickers, days = ndjson_tickers(settings.raw_dir)
            ticks = deltalake.DeltaTable(str(settings.delta_table("ticks"))).to_pyarrow_table(columns=["ingest_seq"])
            before = table_files(settings)
            spark_job(settings, "replay", "--start", days[0], "--end", days[-1])
            compared = spark_job(settings, "compare", "--start", days[0], "--end", days[-1], check=False)
            verdict = next((line for line in compared.splitlines() if line.startswith(("EQUAL", "DIFFERENT"))),
                           f"no verdict: {compared[-500:]}")
            spark_job(settings, "delta_maintenance", "--tables", ",".join(TABLES))
            after = table_files(settings)
    finally:
        exchange.stop()

    warm = [(t, rss) for t, rss, _ in samples if t >= args.warmup_minutes * 60]
    lags = [lag for _, _, lag in samples if lag is not None]
    print(f"\nsoak: {args.minutes:.0f} min at {args.speed:g}x over {len(PRODUCTS)} products; exchange stats: "
          f"{orjson.dumps(served).decode()[:300]}")
    sent = served["tickers_sent"]
    print(f"tickers sent by the exchange {sent}; NDJSON records {records}, tickers {tickers} "
          f"({'equal' if tickers == sent else 'DIFFERENT'}); Delta ticks rows {ticks.num_rows} "
          f"({'equal' if ticks.num_rows == tickers else 'DIFFERENT'}); replay: {verdict}")
    print(f"stream lag behind ticks.raw (records): max {max(lags) if lags else '?'}, "
          f"median {int(np.median(lags)) if lags else '?'}, last {lags[-1] if lags else '?'}")
    for name in sorted({k for _, rss in warm for k in rss}):
        points = [(t, rss[name]) for t, rss in warm if name in rss]
        values = [v for _, v in points]
        print(f"RSS {name:15s} first {values[0]:7.0f} MB, last {values[-1]:7.0f} MB, max {max(values):7.0f} MB, "
              f"slope {slope_mb_per_hour([t for t, _ in points], values):+8.1f} MB/h (after {args.warmup_minutes:g} min)")
    for name in TABLES:
        (files, size, disk), (files2, size2, disk2) = before[name], after[name]
        print(f"Delta {name:16s} before maintenance: {files} files, {size / 2**20:.1f} MB ({disk} Parquet files "
              f"on disk); after: {files2} files, {size2 / 2**20:.1f} MB ({disk2} on disk)")
    return 0 if ticks.num_rows == tickers == sent and "EQUAL" in verdict else 1


if __name__ == "__main__":
    sys.exit(main())
