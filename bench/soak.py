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
summary: RSS slope per process (MB per hour, least squares after the warm-up, and over the second
half of the run alone), lag.

With ``--jvm-diagnostics DIR`` the stream's JVM runs with native memory tracking and a GC log
(``DIR/gc-<pid>.log``): every minute the committed memory per NMT category is sampled (``jcmd
VM.native_memory summary``), and the summary shows where the JVM's RSS goes (heap, the JVM's
own native memory, and what NMT cannot see: RocksDB and other native libraries) and the heap
left after each GC, first and last minutes.

    .venv/bin/python bench/soak.py                      # 30 minutes
    .venv/bin/python bench/soak.py --minutes 3          # a smoke run
    .venv/bin/python bench/soak.py --minutes 75 --jvm-diagnostics /tmp/soak-jvm
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import deltalake
import numpy as np
import orjson
import psutil
from bench_args import train_champion

from volpipe.config import PROJECT_ROOT, Settings
from volpipe.modeling.synthetic import synthetic_features, write_features
from volpipe.ops.harness import ExchangeProcess, topic_messages
from volpipe.ops.sandbox import scratch_settings
from volpipe.ops.services import INGESTOR, KAFKA, MLFLOW, STREAM, live, running
from volpipe.ops.services.process import process_tree
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
                with contextlib.suppress(psutil.Error):
                    rss[name] = rss.get(name, 0.0) + process.memory_info().rss / 2**20
    for name, process in extra.items():
        with contextlib.suppress(psutil.Error):
            rss[name] = sum(p.memory_info().rss for p in [process, *process.children(recursive=True)]) / 2**20
    return rss


NMT_CATEGORY = re.compile(r"^-\s+(?P<name>[A-Za-z][\w ]*?) \(reserved=\d+KB, committed=(?P<kb>\d+)KB")
NMT_TOTAL = re.compile(r"^Total: reserved=\d+KB, committed=(?P<kb>\d+)KB")
GC_HEAP = re.compile(r"\[(?P<uptime>[\d.]+)s\].*Pause (?P<kind>\w+) .*->(?P<after>\d+)M\((?P<committed>\d+)M\)")


def stream_jvm(settings: Settings) -> psutil.Process | None:
    pid = STREAM.process(settings).pid()
    return next((p for p in (process_tree(pid) if pid else []) if role(p) == "stream JVM"), None)


def native_memory(jvm: psutil.Process) -> dict[str, float]:
    """Committed MB per native memory tracking category (and ``Total``), by the JVM's own ``jcmd``."""
    jcmd = Path(jvm.exe()).with_name("jcmd")
    out = subprocess.run(
        [str(jcmd), str(jvm.pid), "VM.native_memory", "summary"], capture_output=True, text=True, timeout=60
    ).stdout
    committed = {}
    for line in out.splitlines():
        if match := NMT_TOTAL.match(line.strip()):
            committed["Total"] = int(match["kb"]) / 1024
        elif match := NMT_CATEGORY.match(line.strip()):
            committed[match["name"]] = int(match["kb"]) / 1024
    return committed


def gc_heap_after(gc_log: Path) -> list[tuple[float, str, int, int]]:
    """(JVM uptime s, Young or Full, heap MB after the GC, heap committed MB) of each GC pause in the log."""
    if not gc_log.exists():
        return []
    return [
        (float(m["uptime"]), m["kind"], int(m["after"]), int(m["committed"]))
        for m in map(GC_HEAP.search, gc_log.read_text().splitlines())
        if m
    ]


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
    done = subprocess.run(
        submit_command(settings, job, *args),
        cwd=PROJECT_ROOT,
        env=live.program_env(settings),
        capture_output=True,
        text=True,
    )
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
    parser.add_argument(
        "--jvm-diagnostics",
        type=Path,
        metavar="DIR",
        help="run the stream's JVM with native memory tracking and a GC log in DIR; sample it",
    )
    args = parser.parse_args(argv)
    if args.jvm_diagnostics:
        args.jvm_diagnostics.mkdir(parents=True, exist_ok=True)
        # spark-submit adds SPARK_SUBMIT_OPTS to the driver JVM (in local mode, the only JVM).
        os.environ["SPARK_SUBMIT_OPTS"] = (
            f"-XX:NativeMemoryTracking=summary "  # %p: the JVM's pid, a log per job
            f"-Xlog:gc:file={args.jvm_diagnostics / 'gc-%p.log'}"
        )
    nmt: list[tuple[float, dict[str, float], float]] = []  # (elapsed s, committed MB per category, JVM RSS MB)
    jvm_pids: list[int] = []

    exchange = ExchangeProcess("--products", ",".join(PRODUCTS), "--speed", str(args.speed))
    try:
        with (
            scratch_settings("bench-soak-", COINBASE_WS_URL=exchange.url, PRODUCT_IDS=",".join(PRODUCTS)) as settings,
            running(settings, KAFKA, MLFLOW),
        ):
            training = dataclasses.replace(
                settings, delta_dir=settings.data_dir / "training-delta", train_min_rows=1000
            )
            write_features(
                training.delta_table("features"),
                synthetic_features(20_000, seed=4, calm_seconds=120.0, burst_seconds=60.0, burst_multiplier=5.0),
            )
            print(f"champion: v{train_champion(training)['champion_version']}", flush=True)
            broker = psutil.Process(KAFKA.process(settings).pid())
            extra = {"exchange": psutil.Process(exchange.proc.pid), "kafka broker": broker}
            samples: list[tuple[float, dict[str, float], int | None]] = []
            raw_before = topic_messages(settings, settings.kafka_input_topic)
            with running(settings, STREAM, INGESTOR):
                began = time.monotonic()
                while (elapsed := time.monotonic() - began) < args.minutes * 60:
                    rss, lag = sample(settings, extra), live.stream_lag(settings)
                    samples.append((elapsed, rss, lag))
                    print(
                        f"{elapsed:6.0f} s lag={lag} " + " ".join(f"{k}={v:.0f}MB" for k, v in sorted(rss.items())),
                        flush=True,
                    )
                    nmt_due = args.jvm_diagnostics and (not nmt or elapsed - nmt[-1][0] >= 60)
                    if nmt_due and (jvm := stream_jvm(settings)):
                        committed = native_memory(jvm)
                        nmt.append((elapsed, committed, jvm.memory_info().rss / 2**20))
                        jvm_pids.append(jvm.pid)
                        print(
                            f"{elapsed:6.0f} s NMT committed MB: "
                            + " ".join(f"{k.replace(' ', '_')}={v:.0f}" for k, v in committed.items() if v >= 1),
                            flush=True,
                        )
                    time.sleep(args.interval)
                exchange.drain(settings, raw_before)  # no ticker left in flight when the ingestor stops
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
            verdict = next(
                (line for line in compared.splitlines() if line.startswith(("EQUAL", "DIFFERENT"))),
                f"no verdict: {compared[-500:]}",
            )
            spark_job(settings, "delta_maintenance", "--tables", ",".join(TABLES))
            after = table_files(settings)
    finally:
        exchange.stop()

    warm = [(t, rss) for t, rss, _ in samples if t >= args.warmup_minutes * 60]
    lags = [lag for _, _, lag in samples if lag is not None]
    print(
        f"\nsoak: {args.minutes:.0f} min at {args.speed:g}x over {len(PRODUCTS)} products; exchange stats: "
        f"{orjson.dumps(served).decode()[:300]}"
    )
    sent = served["tickers_sent"]
    print(
        f"tickers sent by the exchange {sent}; NDJSON records {records}, tickers {tickers} "
        f"({'equal' if tickers == sent else 'DIFFERENT'}); Delta ticks rows {ticks.num_rows} "
        f"({'equal' if ticks.num_rows == tickers else 'DIFFERENT'}); replay: {verdict}"
    )
    print(
        f"stream lag behind ticks.raw (records): max {max(lags) if lags else '?'}, "
        f"median {int(np.median(lags)) if lags else '?'}, last {lags[-1] if lags else '?'}"
    )
    for name in sorted({k for _, rss in warm for k in rss}):
        points = [(t, rss[name]) for t, rss in warm if name in rss]
        values = [v for _, v in points]
        # A JVM commits heap for its first tens of minutes: the second half's slope says whether it levels off.
        second_half = [(t, v) for t, v in points if t >= (points[0][0] + points[-1][0]) / 2]
        print(
            f"RSS {name:15s} first {values[0]:7.0f} MB, last {values[-1]:7.0f} MB, max {max(values):7.0f} MB, "
            f"slope {slope_mb_per_hour([t for t, _ in points], values):+8.1f} MB/h "
            f"(after {args.warmup_minutes:g} min), "
            f"second half {slope_mb_per_hour([t for t, _ in second_half], [v for _, v in second_half]):+8.1f} MB/h"
        )
    for name in TABLES:
        (files, size, disk), (files2, size2, disk2) = before[name], after[name]
        print(
            f"Delta {name:16s} before maintenance: {files} files, {size / 2**20:.1f} MB ({disk} Parquet files "
            f"on disk); after: {files2} files, {size2 / 2**20:.1f} MB ({disk2} on disk)"
        )
    if args.jvm_diagnostics:
        gc_log = args.jvm_diagnostics / f"gc-{jvm_pids[-1]}.log" if jvm_pids else args.jvm_diagnostics / "none"
        if len(set(jvm_pids)) > 1:
            print(f"the stream JVM was restarted during the soak (pids {sorted(set(jvm_pids))}): GC of the last one")
        report_jvm(nmt, gc_heap_after(gc_log), args.warmup_minutes * 60)
    return 0 if ticks.num_rows == tickers == sent and "EQUAL" in verdict else 1


def report_jvm(
    nmt: list[tuple[float, dict[str, float], float]], gcs: list[tuple[float, str, int, int]], warmup_s: float
) -> None:
    """The stream JVM's memory: NMT categories first -> last after the warm-up, what NMT does not
    see (RSS - NMT total: RocksDB, glibc arenas), and the live heap: what a full GC leaves."""
    warm = [(t, committed, rss) for t, committed, rss in nmt if t >= warmup_s and "Total" in committed]
    if len(warm) < 2:
        print("JVM: too few native memory samples")
        return
    (t0, first, rss0), (t1, last, rss1) = warm[0], warm[-1]
    print(
        f"JVM native memory tracking, committed MB at {t0 / 60:.0f} min -> {t1 / 60:.0f} min "
        f"(slope MB/h over {len(warm)} samples):"
    )
    for name in sorted(last, key=lambda k: -last[k]):
        if max(first.get(name, 0), last[name]) >= 5:
            points = [(t, c[name]) for t, c, _ in warm if name in c]
            print(
                f"  {name:28s} {first.get(name, 0):7.0f} -> {last[name]:7.0f}  "
                f"{slope_mb_per_hour([t for t, _ in points], [v for _, v in points]):+8.1f}"
            )
    untracked = [(t, rss - c["Total"]) for t, c, rss in warm]
    print(
        f"  {'RSS - NMT total (untracked)':28s} {untracked[0][1]:7.0f} -> {untracked[-1][1]:7.0f}  "
        f"{slope_mb_per_hour([t for t, _ in untracked], [v for _, v in untracked]):+8.1f}"
    )
    print(f"  {'JVM RSS':28s} {rss0:7.0f} -> {rss1:7.0f}")
    full = [(t, after, committed) for t, kind, after, committed in gcs if kind == "Full" and t >= warmup_s]
    if gcs:
        print(f"  GC: {len(gcs)} pauses, {len(full)} full; heap committed {gcs[0][3]} -> {gcs[-1][3]} MB")
    if len(full) >= 2:
        half = len(full) // 2
        for label, part in (("first", full[:half]), ("second", full[half:])):
            print(
                f"  heap after a full GC, {label} half ({len(part)}, {part[0][0] / 60:.0f}-{part[-1][0] / 60:.0f} "
                f"min of JVM uptime): min {min(a for _, a, _ in part)}, median "
                f"{int(np.median([a for _, a, _ in part]))}, max {max(a for _, a, _ in part)} MB"
            )


if __name__ == "__main__":
    sys.exit(main())
