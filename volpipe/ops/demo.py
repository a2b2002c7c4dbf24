"""`make demo`: the whole pipeline on embedded defaults, from an empty machine to a drift report.

1. Starts Kafka, MLflow and Airflow (each a no-op when already running) and checks each for
   real (a Kafka round trip, an MLflow query, Airflow's parsed DAGs).
2. Starts the feature stream with live scoring (``spark_jobs.features_stream``), then a
   fast-forward: ``--history-ticks`` synthetic ticks over several products at full speed
   through the local exchange (the stand-in for Coinbase) -> the ingestor -> Kafka + NDJSON
   -> the stream -> Delta + Kafka, so that training has history without waiting hours.
3. Through Airflow's REST API (the path the UI uses): ``replay_validation`` (the stream's
   features equal a recomputation from the NDJSON), ``train_nightly`` (a champion) and
   ``batch_inference`` (the history scored into ``predictions``).
4. Live: real-time ticks for ``--live-seconds``, scored in the stream by the new champion,
   while ``monitoring_reports`` runs. (Batch inference runs before, not beside, the live
   ticks: on two cores the live stream's micro-batches would halve its speed.)
5. Prints one summary: counts per stage, the replay verdict, the models' scores beside the
   baseline and the positive rate, the champion, live and batch predictions, the drift
   verdict, where the reports are and the UIs. Services stay up until ``make down``.

Progress is one line per ``--interval``. A failing step names itself and the log to read.
Data goes where the settings say (default ``data/``); a second run continues the first.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from volpipe.config import PROJECT_ROOT, Settings
from volpipe.errors import PipelineError, ServiceError
from volpipe.logs import configure_logging
from volpipe.ops import health
from volpipe.ops.harness import ExchangeProcess, IngestorProcess, ingestor_env, topic_messages, wait_until
from volpipe.ops.health import AirflowClient, wait_for_dag
from volpipe.ops.services import SERVICES
from volpipe.ops.services.airflow import airflow_home
from volpipe.tables import FEATURES, PREDICTIONS, PREDICTIONS_LIVE, QUARANTINE, TICKS

log = logging.getLogger(__name__)
DEMO_PRODUCTS = "BTC-USD,ETH-USD,SOL-USD"
DEMO_DAGS = ("replay_validation", "train_nightly", "batch_inference", "monitoring_reports")
# Shorter calm and burst stretches than the market's defaults (600 s / 180 s), so that an hour
# or so of simulated history holds bursts in each of training, validation and test.
MARKET = ("--calm-seconds", "120", "--burst-seconds", "60", "--burst-multiplier", "5")


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


class Progress:
    """One line per interval: ticks in, features and predictions out, the stream's lag."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.began = time.monotonic()

    def line(self, phase: str) -> str:
        ticks_in = _ndjson_lines(self.settings.raw_dir)  # type: ignore[arg-type]
        in_delta = delta_rows(self.settings, TICKS)
        return (f"  t={time.monotonic() - self.began:4.0f}s {phase:<12} ticks in={ticks_in}"
                f"  features out={delta_rows(self.settings, FEATURES)}"
                f"  predictions out={delta_rows(self.settings, PREDICTIONS_LIVE)}  stream lag={ticks_in - in_delta} ticks")


class LiveStream:
    """The feature stream (with live scoring) as a subprocess, logging to ``logs/stream.log``."""

    def __init__(self, settings: Settings, logs: Path, refresh_seconds: float) -> None:
        self.log_path = logs / "stream.log"
        with open(self.log_path, "ab") as stream_log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "spark_jobs.features_stream"], cwd=PROJECT_ROOT,
                env={**os.environ, "PIPELINE_DATA_DIR": str(settings.data_dir),
                     "MODEL_REFRESH_SECONDS": str(refresh_seconds)},
                stdout=stream_log, stderr=stream_log, start_new_session=True,
            )

    def check(self) -> None:
        if self.proc.poll() is not None:
            raise ServiceError(f"the feature stream exited {self.proc.returncode}; see {self.log_path}")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)  # stops between micro-batches; restarts resume
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)


def feed(settings: Settings, stream: LiveStream, progress: Progress, logs: Path, phase: str, exchange_args: list[str],
         until: Callable[[ExchangeProcess], bool], interval: float) -> dict[str, int]:
    """Exchange -> ingestor until ``until(exchange)``; then stops both and waits for the stream
    to store every ticker. Returns what the exchange sent and the ingestor stored."""
    exchange = ExchangeProcess("--source", "synthetic", "--products", ",".join(settings.product_ids), *exchange_args)
    ingestor = IngestorProcess(ingestor_env(settings, exchange.url), logs / "ingest.log")
    ticks_before = delta_rows(settings, TICKS)
    raw_before = topic_messages(settings, settings.kafka_input_topic)
    try:
        next_line = time.monotonic()
        while not until(exchange):
            stream.check()
            if time.monotonic() >= next_line:
                print(progress.line(phase), flush=True)
                next_line += interval
            time.sleep(0.5)
        sent = exchange.drain(settings, raw_before, alive=lambda: ingestor.proc.poll() is None)
        stored = int(ingestor.stop()["tickers"])
    finally:
        if ingestor.proc.poll() is None:
            ingestor.proc.kill()
        exchange.stop()
    wait_until(lambda: stream.check() or delta_rows(settings, TICKS) - ticks_before >= stored, 300,
               "the stream to store every ticker", 1.0)
    print(progress.line(phase) + f"  (sent {sent}, stored {stored})", flush=True)
    return {"sent": sent, "stored": stored}


def run_dag(client: AirflowClient, dag_id: str, conf: dict, progress: Progress | None = None,
            timeout: float = 600) -> tuple[str, str]:
    """Triggers ``dag_id`` through the REST API and waits for it, printing its state. Returns (run id, state)."""
    wait_for_dag(client, dag_id)
    _cancel_scheduled_runs(client, dag_id)
    run_id = client.trigger(dag_id, conf)
    _cancel_scheduled_runs(client, dag_id)
    began = time.monotonic()
    print(f"  {dag_id}: triggered run {run_id}", flush=True)
    state = client.wait_for_run(dag_id, run_id, timeout)
    print(f"  {dag_id}: {state} in {time.monotonic() - began:.0f}s"
          + (f"\n{progress.line('')}" if progress else ""), flush=True)
    if state != "success":
        print(failed_tasks_report(client, dag_id, run_id), flush=True)
        raise ServiceError(f"DAG {dag_id} run {run_id} ended {state}: see its task logs in the Airflow UI "
                           f"or under {airflow_home(client.settings) / 'logs'}")
    return run_id, state


def failed_tasks_report(client: AirflowClient, dag_id: str, run_id: str, lines: int = 12) -> str:
    """Each failed task of a run with the last events of each of its attempts' logs, so that a
    failure can be read where it is shown (a terminal, a CI log) without opening the UI."""
    report = []
    for task in client.task_instances(dag_id, run_id):
        if task["state"] in ("success", "skipped"):
            continue
        report.append(f"  {dag_id}.{task['task_id']}: {task['state']} after {task['try_number']} attempt(s)")
        folder = (airflow_home(client.settings) / "logs" / f"dag_id={dag_id}" / f"run_id={run_id}"
                  / f"task_id={task['task_id']}")
        for path in sorted(folder.glob("attempt=*.log")):
            events = []
            for line in path.read_text(errors="replace").splitlines():
                try:
                    events.append(json.loads(line).get("event", ""))
                except ValueError:
                    events.append(line)
            report.append(f"    {path}:")
            report.extend(f"      {str(event)[:300]}" for event in events[-lines:])
    return "\n".join(report)


def _cancel_scheduled_runs(client: AirflowClient, dag_id: str, timeout: float = 120) -> None:
    """Fails the run Airflow schedules when a DAG is unpaused (its last interval, catchup or not):
    with one active run per DAG it would make the demo's run wait behind it, on a day without data.
    Then waits until its tasks are stopped, so that none writes beside the demo's own run."""
    for run in client.active_runs(dag_id):
        if run["run_type"] == "manual":
            continue
        client.fail_run(dag_id, run["dag_run_id"])
        print(f"  {dag_id}: marked the {run['run_type']} run {run['dag_run_id']} failed (unpausing created it; "
              "the demo runs its own)", flush=True)
        wait_until(lambda: not any(task["state"] in ("running", "queued", "scheduled", "restarting")
                                   for task in client.task_instances(dag_id, run["dag_run_id"])),
                   timeout, f"the tasks of {dag_id} {run['dag_run_id']} to stop", 1.0)


def run_pipeline(settings: Settings, args: argparse.Namespace) -> dict[str, object]:
    """The whole flow: fast-forward history, replay check and training through Airflow, then live
    ticks scored in the stream while batch inference and the drift report run. Returns the summary."""
    logs = settings.data_dir / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    progress = Progress(settings)
    client = AirflowClient(settings)
    first_day = dt.datetime.now(dt.UTC).date()
    print(f"\nstarting the feature stream with live scoring (log: {logs / 'stream.log'}) ...", flush=True)
    stream = LiveStream(settings, logs, args.model_refresh_seconds)
    try:
        for dag_id in DEMO_DAGS:  # now: the run Airflow schedules on unpausing starts and ends early
            wait_for_dag(client, dag_id)
            client.unpause(dag_id)
        print(f"fast-forward: {args.history_ticks} synthetic ticks over {len(settings.product_ids)} products at full "
              f"speed through exchange -> ingestor -> Kafka -> stream", flush=True)
        history = feed(settings, stream, progress, logs, "fast-forward", ["--speed", "0", "--max-ticks",
                       str(args.history_ticks), *MARKET], lambda ex: ex.stats()["tickers_sent"] >= args.history_ticks,
                       args.interval)
        days = {"start": str(first_day), "end": str(dt.datetime.now(dt.UTC).date())}
        print("Airflow (REST API, as the UI triggers them):", flush=True)
        replay_run, _ = run_dag(client, "replay_validation", days, progress)
        train_run, _ = run_dag(client, "train_nightly", days, progress)
        training = client.return_value("train_nightly", train_run, "train_and_register")
        if not training:
            raise ServiceError(f"train_nightly {train_run} trained nothing (too few labelled rows or one class): see "
                               f"{airflow_home(settings) / 'logs'}/dag_id=train_nightly; try more --history-ticks")
        batch_run, _ = run_dag(client, "batch_inference", days, progress)
        live_until = time.monotonic() + args.live_seconds
        print(f"live: real-time ticks for at least {args.live_seconds:.0f}s, scored in the stream; "
              "the drift report runs meanwhile", flush=True)
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="demo-dags") as pool:
            monitoring = pool.submit(run_dag, client, "monitoring_reports", days)
            live = feed(settings, stream, progress, logs, "live", ["--speed", "1", *MARKET],
                        lambda _: monitoring.done() and time.monotonic() >= live_until, args.interval)
            monitoring_run, _ = monitoring.result()  # raises what a failed DAG raised
        wait_until(lambda: delta_rows(settings, PREDICTIONS_LIVE) > 0, 120, "the first live prediction", 1.0)
    finally:
        stream.stop()
    return {
        "history": history, "live": live, "days": days,
        "replay": json.loads((settings.reports_dir / "replay" / f"{days['start']}_{days['end']}.json").read_text()),
        "training": training,
        "monitoring": client.return_value("monitoring_reports", monitoring_run, "build_reports"),
        "runs": {"replay_validation": replay_run, "train_nightly": train_run, "batch_inference": batch_run,
                 "monitoring_reports": monitoring_run},
    }


def facts(settings: Settings, result: dict[str, Any]) -> dict[str, Any]:
    """What each stage did and the verdicts, as the JSON the demo also writes (``reports/demo/summary.json``)."""
    from volpipe.modeling import registry

    champion = registry.champion(settings.mlflow_tracking_uri, settings.model_name)
    return {
        "ticks": {
            "served": result["history"]["sent"] + result["live"]["sent"],
            "stored": result["history"]["stored"] + result["live"]["stored"],
            "ndjson_lines": _ndjson_lines(settings.raw_dir),  # type: ignore[arg-type]
            "kafka": topic_messages(settings, settings.kafka_input_topic),
            "delta": delta_rows(settings, TICKS), "quarantined": delta_rows(settings, QUARANTINE),
        },
        "features": {"delta": delta_rows(settings, FEATURES),
                     "kafka": topic_messages(settings, settings.kafka_output_topic)},
        "replay": {key: result["replay"][key] for key in ("range", "equal", "summary")},
        "training": result["training"],
        "champion": {"model": settings.model_name, "version": champion.version if champion else None},
        "predictions": {"live_delta": delta_rows(settings, PREDICTIONS_LIVE),
                        "live_kafka": topic_messages(settings, settings.kafka_predictions_topic),
                        "batch_delta": delta_rows(settings, PREDICTIONS)},
        "monitoring": result["monitoring"],
        "airflow_runs": result["runs"],
    }


def summary(settings: Settings, found: dict[str, Any]) -> str:
    """``facts`` as the lines a person reads: counts, verdicts, scores beside the baseline, where to look."""
    from volpipe.ops.services.airflow import password_file

    ticks, features, replay, training = found["ticks"], found["features"], found["replay"], found["training"]
    lines = [
        "\n=== summary ===",
        f"ticks: served by the exchange {ticks['served']}, stored by the ingestor {ticks['stored']} (NDJSON lines "
        f"{ticks['ndjson_lines']}), in Kafka {settings.kafka_input_topic} {ticks['kafka']}, in Delta ticks "
        f"{ticks['delta']}, quarantined {ticks['quarantined']}",
        f"features: Delta {features['delta']}, Kafka {settings.kafka_output_topic} {features['kafka']}",
        f"replay validation {replay['range']['start']}..{replay['range']['end']}: "
        f"{'EQUAL, bit for bit' if replay['equal'] else 'DIFFERENT'} ({replay['summary']})",
        f"training ({training['label_mode']} label, {training['test_rows']} test rows, positive rate "
        f"{training['positive_rate']['test']:.3f}):",
        f"  {'model':<24} {'val PR-AUC':>10} {'test PR-AUC':>11}",
        *(f"  {name:<24} {m['validation_pr_auc']:>10.3f} {m['test_pr_auc']:>11.3f}"
          for name, m in training["models"].items()),
        "  (a PR-AUC equal to the positive rate is no skill; the baseline is the seed's rule; confidence "
        "intervals in MLflow and docs/modeling.md)",
        f"champion: {found['champion']['model']} v{found['champion']['version']}",
        f"predictions: live (stream, Delta predictions_live) {found['predictions']['live_delta']}, Kafka "
        f"{settings.kafka_predictions_topic} {found['predictions']['live_kafka']}; batch (Delta predictions) "
        f"{found['predictions']['batch_delta']}",
    ]
    monitoring = found["monitoring"]
    if monitoring:
        lines.append(f"drift: {'DETECTED' if monitoring['drift_detected'] else 'none'} "
                     f"({monitoring['drifted_count']}/{len(monitoring['features'])} features, share "
                     f"{monitoring['drift_share']:.2f}); reports in {monitoring['report_dir']}")
    lines += [
        f"replay verdicts: {settings.reports_dir / 'replay'}; this summary as JSON: {summary_path(settings)}",
        f"Airflow UI: http://127.0.0.1:{settings.airflow_port} (user admin, or viewer; passwords in "
        f"{password_file(settings)})",
        f"MLflow UI:  {settings.mlflow_tracking_uri}",
        "Stop everything with: make down",
    ]
    return "\n".join(lines)


def summary_path(settings: Settings) -> Path:
    return settings.reports_dir / "demo" / "summary.json"  # type: ignore[operator]


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
        description="Run the whole pipeline on embedded defaults: services, exchange, ingestor, stream with live "
        "scoring, replay validation, training, batch inference and drift reports through Airflow.",
        epilog="Products come from PRODUCT_IDS (the demo's default: BTC-USD,ETH-USD,SOL-USD).",
    )
    parser.add_argument("--history-ticks", type=int, default=60_000,
                        help="synthetic ticks pushed at full speed before live ticks flow (default 60000, about "
                        "1.5 simulated hours over three products)")
    parser.add_argument("--live-seconds", type=float, default=60, help="real-time ticks after training (default 60)")
    parser.add_argument("--interval", type=float, default=10, help="seconds between progress lines (default 10)")
    parser.add_argument("--model-refresh-seconds", type=float, default=5,
                        help="how often the stream looks for a new champion (MODEL_REFRESH_SECONDS; demo default 5)")
    parser.add_argument("--services-only", action="store_true", help="start and check the services, run nothing")
    parser.add_argument("--down", action="store_true", help="stop every service at the end")
    parser.add_argument("--log-level", default="WARNING")
    args = parser.parse_args(argv)
    configure_logging(args.log_level)
    os.environ.setdefault("PRODUCT_IDS", DEMO_PRODUCTS)
    settings = Settings.from_env()
    began = time.monotonic()
    try:
        services = start_services(settings, run_dag=args.services_only)
        print("services: " + json.dumps(services), flush=True)
        if not args.services_only:
            found = facts(settings, run_pipeline(settings, args))
            summary_path(settings).parent.mkdir(parents=True, exist_ok=True)
            summary_path(settings).write_text(json.dumps(found, indent=2, default=str) + "\n")
            print(summary(settings, found))
            print(f"newest feature rows:\n{newest_features(settings)}")
    except (PipelineError, TimeoutError) as exc:
        print(f"demo failed: {exc}", file=sys.stderr)
        return 1
    finally:
        if args.down:
            for service in reversed(list(SERVICES.values())):
                service.stop(settings)
    print(f"demo done in {time.monotonic() - began:.0f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
