"""`make demo`: the pipeline on embedded defaults, from an empty machine to feature rows.

1. Starts Kafka, MLflow and Airflow (each a no-op when already running) and checks each for
   real: a Kafka round trip, an MLflow query, a run of the `pipeline_healthcheck` DAG.
2. Runs the pipeline for ``--seconds``: the local exchange (synthetic market, the stand-in
   for Coinbase) -> the ingestor -> Kafka `ticks.raw` + NDJSON -> the feature stream -> Delta
   `ticks`, `features`, `quarantine` + Kafka `ticks.features`, with progress every 10 s.
3. Stops the pipeline processes cleanly, waits until the stream has caught up, and prints
   what each stage accounted for and the newest feature rows. Services stay up (`make down`).

Data goes where the settings say (default `data/`); a second run continues the first:
the ingestor resumes `ingest_seq`, the stream resumes from its checkpoint.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from volpipe.config import PROJECT_ROOT, Settings
from volpipe.errors import PipelineError, ServiceError
from volpipe.logs import configure_logging
from volpipe.ops import health
from volpipe.ops.services import SERVICES

log = logging.getLogger(__name__)


def start_services(settings: Settings, *, run_dag: bool = True) -> dict[str, dict]:
    """Starts every service and checks it. Returns what each check verified."""
    results: dict[str, dict] = {}
    for name, service in SERVICES.items():
        started = time.monotonic()
        print(f"starting {name} ...", flush=True)
        service.start(settings)
        print(f"  {name} up in {time.monotonic() - started:.1f}s", flush=True)
    results["kafka"] = health.check_kafka(settings)
    results["mlflow"] = health.check_mlflow(settings)
    print("running the pipeline_healthcheck DAG through Airflow ...", flush=True)
    results["airflow"] = health.check_airflow(settings, dag_id="pipeline_healthcheck" if run_dag else None)
    return results


def delta_rows(settings: Settings, table: str) -> int:
    """Rows in a Delta table (0 before its first commit), read without Spark."""
    from deltalake import DeltaTable
    from deltalake.exceptions import TableNotFoundError

    try:
        return DeltaTable(str(settings.delta_table(table))).to_pyarrow_dataset().count_rows()
    except TableNotFoundError:
        return 0


def _ndjson_lines(folder: Path) -> int:
    return sum(path.read_bytes().count(b"\n") for path in folder.glob("*.ndjson")) if folder.exists() else 0


def run_pipeline(settings: Settings, seconds: float, speed: float) -> dict[str, object]:
    """Exchange -> ingestor -> stream for ``seconds``; returns the counts of every stage."""
    from volpipe.ops.harness import ExchangeProcess, IngestorProcess, ingestor_env, wait_until

    logs = settings.data_dir / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    ticks_before = delta_rows(settings, "ticks")
    lines_before = _ndjson_lines(settings.raw_dir)  # type: ignore[arg-type]
    print(f"\nstarting the feature stream (logs: {logs / 'stream.log'}) ...", flush=True)
    with open(logs / "stream.log", "ab") as stream_log:
        stream = subprocess.Popen(
            [sys.executable, "-m", "spark_jobs.features_stream"],
            cwd=PROJECT_ROOT, env={**os.environ, "PIPELINE_DATA_DIR": str(settings.data_dir)},
            stdout=stream_log, stderr=stream_log, start_new_session=True,
        )
    products = ",".join(settings.product_ids)
    exchange = ExchangeProcess("--source", "synthetic", "--products", products, "--speed", str(speed))
    ingestor = IngestorProcess(ingestor_env(settings, exchange.url), logs / "ingest.log")
    print(f"local exchange on {exchange.url} ({products}, {speed:g}x), ingestor -> {settings.raw_dir}", flush=True)
    try:
        began = time.monotonic()
        while (elapsed := time.monotonic() - began) < seconds:
            time.sleep(min(10.0, seconds - elapsed))
            if stream.poll() is not None:
                raise ServiceError(f"the feature stream exited {stream.returncode}; see {logs / 'stream.log'}")
            print(f"  t={time.monotonic() - began:4.0f}s  raw NDJSON lines={_ndjson_lines(settings.raw_dir) - lines_before}"
                  f"  Delta ticks={delta_rows(settings, 'ticks') - ticks_before}"
                  f"  features={delta_rows(settings, 'features')}", flush=True)
        final = ingestor.stop()
        sent = {key: exchange.stats()[key] for key in ("connections", "tickers_sent", "frames_sent")}
        exchange.stop()
        tickers = int(final["tickers"])
        print(f"ingestor stopped: {tickers} tickers stored; waiting for the stream to catch up ...", flush=True)
        wait_until(lambda: delta_rows(settings, "ticks") - ticks_before >= tickers, 120, "the stream to catch up", 1.0)
    finally:
        if ingestor.proc.poll() is None:
            ingestor.proc.kill()
        exchange.stop()
        if stream.poll() is None:
            stream.send_signal(signal.SIGTERM)  # stops between micro-batches; restarts resume
            try:
                stream.wait(60)
            except subprocess.TimeoutExpired:
                os.killpg(stream.pid, signal.SIGKILL)
    return {
        "exchange_sent": sent,
        "ingestor": final,
        "delta_ticks_added": delta_rows(settings, "ticks") - ticks_before,
        "delta_features_total": delta_rows(settings, "features"),
        "delta_quarantine_total": delta_rows(settings, "quarantine"),
    }


def newest_features(settings: Settings, limit: int = 5) -> str:
    """The newest feature rows as a small table (DuckDB over the Delta table, no Spark)."""
    import duckdb
    from deltalake import DeltaTable

    features = DeltaTable(str(settings.delta_table("features"))).to_pyarrow_dataset()  # noqa: F841 - used by SQL
    query = duckdb.sql(
        "SELECT product_id, ingest_seq, strftime(make_timestamp((exchange_ts_ns // 1000)::BIGINT), '%H:%M:%S.%f'), "
        "midprice, spread_bps, rolling_vol * 1e4, trade_intensity FROM features ORDER BY ingest_seq DESC "
        f"LIMIT {int(limit)}"
    )
    lines = [f"{'product':10s} {'ingest_seq':>10s} {'exchange time':>15s} {'midprice':>12s} {'spread_bps':>10s} "
             f"{'vol_bps':>8s} {'ticks/s':>8s}"]
    for product, seq, when, mid, spread, vol, intensity in query.fetchall():
        lines.append(f"{product:10s} {seq:>10d} {when:>15s} {mid:>12.3f} {spread:>10.4f} {vol:>8.4f} "
                     f"{intensity if intensity is not None else float('nan'):>8.2f}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m volpipe.ops.demo",
        description="Run the pipeline on embedded defaults: services, exchange, ingestor, feature stream.",
    )
    parser.add_argument("--seconds", type=float, default=60, help="how long ticks flow (default 60)")
    parser.add_argument("--speed", type=float, default=20, help="market speed-up of the local exchange (default 20x)")
    parser.add_argument("--services-only", action="store_true", help="start and check the services, run nothing")
    parser.add_argument("--no-dag", action="store_true", help="skip the Airflow DAG run")
    parser.add_argument("--down", action="store_true", help="stop every service at the end")
    parser.add_argument("--log-level", default="WARNING")
    args = parser.parse_args(argv)
    configure_logging(args.log_level)
    settings = Settings.from_env()
    try:
        results: dict[str, object] = dict(start_services(settings, run_dag=not args.no_dag))
        if not args.services_only:
            results["pipeline"] = run_pipeline(settings, args.seconds, args.speed)
    except (PipelineError, TimeoutError) as exc:
        print(f"demo failed: {exc}", file=sys.stderr)
        return 1
    finally:
        if args.down:
            for service in reversed(list(SERVICES.values())):
                service.stop(settings)
    print("\nall services healthy; what each stage did:")
    for name, result in results.items():
        print(f"  {name:8s} {json.dumps(result)}")
    if not args.services_only:
        print(f"\nnewest feature rows ({settings.delta_table('features')}):\n{newest_features(settings)}")
    if not args.down:
        from volpipe.ops.services.airflow import password_file

        print(f"\nAirflow UI: http://127.0.0.1:{settings.airflow_port} (admin / password in {password_file(settings)})")
        print(f"MLflow UI:  {settings.mlflow_tracking_uri}")
        print("Stop everything with: make down")
    return 0


if __name__ == "__main__":
    sys.exit(main())
