"""`make demo`: the whole pipeline on embedded defaults, from an empty machine to a drift report.

1. Starts Kafka, MLflow and Airflow (each a no-op when already running) and checks each for
   real (a Kafka round trip, an MLflow query, Airflow's parsed DAGs).
2. Starts the feature stream with live scoring (``spark_jobs.features_stream``), then a
   fast-forward: ``--history-ticks`` synthetic ticks over several products at full speed
   through the local exchange (the stand-in for Coinbase) -> the ingestor -> Kafka + NDJSON
   -> the stream -> Delta + Kafka, as one session on each of the ``--history-days`` days
   before today, stamped with those dates: the history lies where the nightly training's
   default window (the days before the run) looks, without waiting days.
3. Through Airflow's REST API (the path the UI uses; every DAG stays paused outside its run,
   so no scheduled run starts beside the demo's): ``replay_validation`` (the stream's features
   equal a recomputation from the NDJSON), ``train_nightly`` with the trigger form's defaults
   (a champion only if a model beats the persistence baseline beyond noise) and, with a
   champion, ``batch_inference`` (the history scored into ``predictions``).
4. Live: real-time ticks for ``--live-seconds``, scored in the stream by the champion (if
   any), while ``monitoring_reports`` runs. (Batch inference runs before, not beside, the live
   ticks: on two cores the live stream's micro-batches would halve its speed.)
5. Prints one summary: counts per stage, the replay verdict, the models' scores beside the
   baseline and the positive rate, the promotion gate's verdict, the champion or why there is
   none, live and batch predictions, the drift verdict, every Airflow run's state, where the
   reports are and the UIs. Services stay up until ``make down``.

Progress is one line per ``--interval``. A failing step names itself and the log to read; a
training that promotes nothing is a verdict, not a failure: the demo says so and exits 0.
Data goes where the settings say (default ``data/``); a second run continues the first.
"""

from __future__ import annotations

import argparse
import datetime as dt
import functools
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
SESSION_START = dt.time(14, 0)  # UTC: when each history day's session begins
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
        ticks_in = _ndjson_lines(self.settings.raw_dir)
        in_delta = delta_rows(self.settings, TICKS)
        return (
            f"  t={time.monotonic() - self.began:4.0f}s {phase:<12} ticks in={ticks_in}"
            f"  features out={delta_rows(self.settings, FEATURES)}"
            f"  predictions out={delta_rows(self.settings, PREDICTIONS_LIVE)}  stream lag={ticks_in - in_delta} ticks"
        )


class LiveStream:
    """The feature stream (with live scoring) as a subprocess, logging to ``logs/stream.log``."""

    def __init__(self, settings: Settings, logs: Path, refresh_seconds: float) -> None:
        self.log_path = logs / "stream.log"
        with open(self.log_path, "ab") as stream_log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "spark_jobs.features_stream"],
                cwd=PROJECT_ROOT,
                env={
                    **os.environ,
                    "PIPELINE_DATA_DIR": str(settings.data_dir),
                    "MODEL_REFRESH_SECONDS": str(refresh_seconds),
                },
                stdout=stream_log,
                stderr=stream_log,
                start_new_session=True,
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


def feed(
    settings: Settings,
    stream: LiveStream,
    progress: Progress,
    logs: Path,
    phase: str,
    exchange_args: list[str],
    until: Callable[[ExchangeProcess], bool],
    interval: float,
) -> dict[str, int]:
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

    def stream_stored_all() -> bool:
        stream.check()  # raises when the stream died
        return delta_rows(settings, TICKS) - ticks_before >= stored

    wait_until(stream_stored_all, 300, "the stream to store every ticker", 1.0)
    print(progress.line(phase) + f"  (sent {sent}, stored {stored})", flush=True)
    return {"sent": sent, "stored": stored}


def run_dag(
    client: AirflowClient,
    dag_id: str,
    conf: dict,
    progress: Progress | None = None,
    timeout: float = 600,
    may_fail: Callable[[dict[str, str]], bool] = lambda _: False,
) -> tuple[str, str]:
    """Triggers ``dag_id`` through the REST API as the UI's *Trigger* does, waits for it and pauses
    the DAG again, printing its state. Returns (run id, state).

    The DAGs stay paused outside the demo's own runs: unpausing would start their schedules, and
    a scheduled run the demo did not ask for would run (or fail) on data that is not there.
    ``client.trigger`` takes the slot of the run unpausing would schedule, so none is created.

    Raises:
        ServiceError: The run did not succeed, unless ``may_fail`` accepts its tasks' states
            (task id -> state): a verdict the run reports, not an error.
    """
    wait_for_dag(client, dag_id)
    run_id = client.trigger(dag_id, conf, note="make demo")
    began = time.monotonic()
    print(
        f"  {dag_id}: triggered run {run_id}" + (f" with {conf}" if conf else " with the form's defaults"), flush=True
    )
    try:
        state = client.wait_for_run(dag_id, run_id, timeout)
        # A run the scheduler made while the DAG was unpaused (its next tick came meanwhile) ends too.
        wait_until(lambda: not client.active_runs(dag_id), timeout, f"the other runs of {dag_id} to end", 2.0)
    finally:
        client.pause(dag_id)
    print(
        f"  {dag_id}: {state} in {time.monotonic() - began:.0f}s" + (f"\n{progress.line('')}" if progress else ""),
        flush=True,
    )
    tasks = {task["task_id"]: task["state"] for task in client.task_instances(dag_id, run_id)}
    if state != "success" and not may_fail(tasks):
        print(failed_tasks_report(client, dag_id, run_id), flush=True)
        raise ServiceError(
            f"DAG {dag_id} run {run_id} ended {state}: see its task logs in the Airflow UI "
            f"or under {airflow_home(client.settings) / 'logs'}"
        )
    return run_id, state


def failed_tasks_report(client: AirflowClient, dag_id: str, run_id: str, lines: int = 12) -> str:
    """Each failed task of a run with the last events of each of its attempts' logs (an exception's
    type and message among them), so that a failure can be read where it is shown (a terminal, a
    CI log) without opening the UI."""
    report = []
    for task in client.task_instances(dag_id, run_id):
        if task["state"] in ("success", "skipped"):
            continue
        report.append(f"  {dag_id}.{task['task_id']}: {task['state']} after {task['try_number']} attempt(s)")
        folder = (
            airflow_home(client.settings)
            / "logs"
            / f"dag_id={dag_id}"
            / f"run_id={run_id}"
            / f"task_id={task['task_id']}"
        )
        for path in sorted(folder.glob("attempt=*.log")):
            events = []
            for line in path.read_text(errors="replace").splitlines():
                try:
                    event = json.loads(line)
                except ValueError:
                    events.append(line)
                    continue
                events.append(event.get("event", ""))
                # A failed task's reason is in its exception, not its event line.
                events += [
                    f"{error['exc_type']}: {error['exc_value']}"
                    for error in event.get("error_detail") or ()
                    if not error.get("is_cause")
                ]
            report.append(f"    {path}:")
            report.extend(f"      {str(event)[:300]}" for event in events[-lines:])
    return "\n".join(report)


def history_sessions(today: dt.date, days: int, ticks: int) -> list[tuple[dt.date, list[str]]]:
    """The fast-forward history as exchange runs: one session on each of the ``days`` days before
    ``today``, its ticks stamped with their real dates (``--keep-timestamps``), so that the nightly
    training's default window (the days before the run) finds them. Returns (day, exchange args).

    Each session starts at ``SESSION_START`` of its day with its own seed; ``ticks`` are shared out
    evenly (about 13 minutes of market a day for 10,000 ticks over three products).
    """
    sessions = []
    for index in range(days):
        day = today - dt.timedelta(days=days - index)
        share = ticks // days + (1 if index < ticks % days else 0)
        start = dt.datetime.combine(day, SESSION_START, tzinfo=dt.UTC).isoformat()
        sessions.append(
            (
                day,
                [
                    "--speed",
                    "0",
                    "--keep-timestamps",
                    "--start",
                    start,
                    "--seed",
                    str(7 + index),
                    "--max-ticks",
                    str(share),
                    *MARKET,
                ],
            )
        )
    return sessions


def _sent_at_least(exchange: ExchangeProcess, wanted: int) -> bool:
    return exchange.stats()["tickers_sent"] >= wanted


def feed_history(
    settings: Settings,
    stream: LiveStream,
    progress: Progress,
    logs: Path,
    sessions: list[tuple[dt.date, list[str]]],
    interval: float,
) -> dict[str, int]:
    """Feeds each ``history_sessions`` session in turn; returns what the exchange sent and the ingestor stored."""
    history = {"sent": 0, "stored": 0}
    for day, exchange_args in sessions:
        wanted = int(exchange_args[exchange_args.index("--max-ticks") + 1])
        fed = feed(
            settings,
            stream,
            progress,
            logs,
            f"history {day}",
            exchange_args,
            functools.partial(_sent_at_least, wanted=wanted),
            interval,
        )
        history = {key: history[key] + fed[key] for key in history}
    return history


def run_pipeline(settings: Settings, args: argparse.Namespace) -> dict[str, object]:
    """The whole flow: fast-forward history over the days before today, replay check and training
    through Airflow, then (with a champion) batch inference and live ticks scored in the stream
    while the drift report runs. Returns the summary."""
    logs = settings.data_dir / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    progress = Progress(settings)
    client = AirflowClient(settings)
    today = dt.datetime.now(dt.UTC).date()
    sessions = history_sessions(today, args.history_days, args.history_ticks)
    runs: dict[str, str] = {}
    print(f"\nstarting the feature stream with live scoring (log: {logs / 'stream.log'}) ...", flush=True)
    stream = LiveStream(settings, logs, args.model_refresh_seconds)
    try:
        print(
            f"fast-forward: {args.history_ticks} synthetic ticks over {len(settings.product_ids)} products, one "
            f"session on each of the {args.history_days} days before today ({sessions[0][0]}..{sessions[-1][0]}), "
            "at full speed through exchange -> ingestor -> Kafka -> stream",
            flush=True,
        )
        history = feed_history(settings, stream, progress, logs, sessions, args.interval)
        received = {"start": str(today), "end": str(today)}  # the replay goes by receipt day: all of it today
        print("Airflow (REST API, as the UI triggers them; each DAG paused again after its run):", flush=True)
        runs["replay_validation"], _ = run_dag(client, "replay_validation", received, progress)
        runs["train_nightly"], _ = run_dag(client, "train_nightly", {}, progress, may_fail=no_skill_verdict)
        training = client.return_value("train_nightly", runs["train_nightly"], "train_and_register")
        print(f"  train_nightly: {training['decision']}: {training['reason']}", flush=True)
        champion = training["champion_version"]
        if champion:
            runs["batch_inference"], _ = run_dag(client, "batch_inference", {}, progress)
        else:
            print(
                "  no champion: batch_inference and monitoring_reports not run (scoring waits for a champion)",
                flush=True,
            )
        live_until = time.monotonic() + args.live_seconds
        print(
            f"live: real-time ticks for at least {args.live_seconds:.0f}s"
            + (", scored in the stream; the drift report runs meanwhile" if champion else ", no model to score them"),
            flush=True,
        )
        recent = {"start": str(sessions[-1][0]), "end": str(today)}  # the last history day and the live ticks
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="demo-dags") as pool:
            monitoring = pool.submit(run_dag, client, "monitoring_reports", recent) if champion else None
            live = feed(
                settings,
                stream,
                progress,
                logs,
                "live",
                ["--speed", "1", *MARKET],
                lambda _: (monitoring is None or monitoring.done()) and time.monotonic() >= live_until,
                args.interval,
            )
            if monitoring is not None:
                runs["monitoring_reports"], _ = monitoring.result()  # raises what a failed DAG raised
        if champion:
            wait_until(lambda: delta_rows(settings, PREDICTIONS_LIVE) > 0, 120, "the first live prediction", 1.0)
    finally:
        stream.stop()
    return {
        "history": history,
        "live": live,
        "history_days": [str(day) for day, _ in sessions],
        "replay": json.loads((settings.reports_dir / "replay" / f"{today}_{today}.json").read_text()),
        "training": training,
        "monitoring": (
            client.return_value("monitoring_reports", runs["monitoring_reports"], "build_reports")
            if "monitoring_reports" in runs
            else None
        ),
        "runs": runs,
        "airflow_runs": client.dag_runs(),
    }


def no_skill_verdict(tasks: dict[str, str]) -> bool:
    """Whether a failed ``train_nightly`` run is the promotion gate's verdict (no model beat the
    persistence baseline: only ``announce_champion`` failed), not an error."""
    return {task for task, state in tasks.items() if state not in ("success", "skipped")} == {"announce_champion"}


def facts(settings: Settings, result: dict[str, Any]) -> dict[str, Any]:
    """What each stage did and the verdicts, as the JSON the demo also writes (``reports/demo/summary.json``)."""
    from volpipe.modeling import registry

    champion = registry.champion(settings.mlflow_tracking_uri, settings.model_name)
    return {
        "ticks": {
            "served": result["history"]["sent"] + result["live"]["sent"],
            "stored": result["history"]["stored"] + result["live"]["stored"],
            "ndjson_lines": _ndjson_lines(settings.raw_dir),
            "kafka": topic_messages(settings, settings.kafka_input_topic),
            "delta": delta_rows(settings, TICKS),
            "quarantined": delta_rows(settings, QUARANTINE),
        },
        "history_days": result["history_days"],
        "features": {
            "delta": delta_rows(settings, FEATURES),
            "kafka": topic_messages(settings, settings.kafka_output_topic),
        },
        "replay": {key: result["replay"][key] for key in ("range", "equal", "summary")},
        "training": result["training"],
        "champion": {"model": settings.model_name, "version": champion.version if champion else None},
        "predictions": {
            "live_delta": delta_rows(settings, PREDICTIONS_LIVE),
            "live_kafka": topic_messages(settings, settings.kafka_predictions_topic),
            "batch_delta": delta_rows(settings, PREDICTIONS),
        },
        "monitoring": result["monitoring"],
        "demo_runs": result["runs"],
        # Every run Airflow shows (REST API, as the UI lists them), with its state.
        "airflow_runs": [
            {key: run[key] for key in ("dag_id", "dag_run_id", "run_type", "state")} for run in result["airflow_runs"]
        ],
    }


def summary(settings: Settings, found: dict[str, Any]) -> str:
    """``facts`` as the lines a person reads: counts, verdicts, scores beside the baseline, where to look."""
    from volpipe.ops.services.airflow import password_file

    ticks, features, replay, training = found["ticks"], found["features"], found["replay"], found["training"]
    gate = training["gate"]
    lines = [
        "\n=== summary ===",
        f"ticks: served by the exchange {ticks['served']}, stored by the ingestor {ticks['stored']} (NDJSON lines "
        f"{ticks['ndjson_lines']}), in Kafka {settings.kafka_input_topic} {ticks['kafka']}, in Delta ticks "
        f"{ticks['delta']}, quarantined {ticks['quarantined']}; history on {', '.join(found['history_days'])}, "
        "live today",
        f"features: Delta {features['delta']}, Kafka {settings.kafka_output_topic} {features['kafka']}",
        f"replay validation {replay['range']['start']}..{replay['range']['end']}: "
        f"{'EQUAL, bit for bit' if replay['equal'] else 'DIFFERENT'} ({replay['summary']})",
        f"training with the trigger form's defaults ({training['label_mode']} label, "
        f"{training['test_rows']} test rows, positive rate {training['positive_rate']['test']:.3f}):",
        f"  {'model':<24} {'val PR-AUC':>10} {'test PR-AUC':>11}",
        *(
            f"  {name:<24} {m['validation_pr_auc']:>10.3f} {m['test_pr_auc']:>11.3f}"
            for name, m in training["models"].items()
        ),
        f"  promotion gate on the test rows: {training['candidate']} minus the persistence baseline "
        f"{gate['gain']:+.3f}, 95% CI [{gate['gain_ci'][0]:+.3f}, {gate['gain_ci'][1]:+.3f}] (blocks of "
        f"{gate['block_rows']} rows, {gate['samples']} resamples): {training['decision']}",
        '  (a PR-AUC equal to the positive rate is no skill; the baseline scores rolling_vol: "volatility persists")',
    ]
    if found["champion"]["version"]:
        lines.append(f"champion: {found['champion']['model']} v{found['champion']['version']}")
    else:
        lines += [
            f"champion: NONE. {training['reason']}",
            f"  version {training['registered_version']} is registered with that verdict, never champion; "
            "live and batch scoring wait for a model that beats the baseline",
        ]
    lines.append(
        f"predictions: live (stream, Delta predictions_live) {found['predictions']['live_delta']}, Kafka "
        f"{settings.kafka_predictions_topic} {found['predictions']['live_kafka']}; batch (Delta predictions) "
        f"{found['predictions']['batch_delta']}"
    )
    monitoring = found["monitoring"]
    if monitoring:
        lines.append(
            f"drift: {'DETECTED' if monitoring['drift_detected'] else 'none'} "
            f"({monitoring['drifted_count']}/{len(monitoring['features'])} features, share "
            f"{monitoring['drift_share']:.2f}); reports in {monitoring['report_dir']}"
        )
    states: dict[str, int] = {}
    for run in found["airflow_runs"]:
        states[run["state"]] = states.get(run["state"], 0) + 1
    failed = [f"{run['dag_id']} {run['dag_run_id']}" for run in found["airflow_runs"] if run["state"] == "failed"]
    lines += [
        f"Airflow runs: {', '.join(f'{count} {state}' for state, count in sorted(states.items()))}"
        + (f" (failed: {'; '.join(failed)}: the promotion gate's verdict)" if failed else "")
        + "; every DAG is paused again",
        f"replay verdicts: {settings.reports_dir / 'replay'}; this summary as JSON: {summary_path(settings)}",
        f"Airflow UI: http://127.0.0.1:{settings.airflow_port} (user admin, or viewer; passwords in "
        f"{password_file(settings)})",
        f"MLflow UI:  {settings.mlflow_tracking_uri}",
        "Stop everything with: make down",
    ]
    return "\n".join(lines)


def summary_path(settings: Settings) -> Path:
    return settings.reports_dir / "demo" / "summary.json"


def newest_features(settings: Settings, limit: int = 5) -> str:
    """The newest feature rows as a small table (DuckDB over the Delta table, no Spark)."""
    import duckdb
    from deltalake import DeltaTable

    dataset = DeltaTable(str(settings.delta_table(FEATURES))).to_pyarrow_dataset()
    query = (
        duckdb.connect()
        .register(FEATURES, dataset)
        .sql(
            "SELECT product_id, ingest_seq, strftime(make_timestamp((exchange_ts_ns // 1000)::BIGINT), '%H:%M:%S.%f'), "
            f"midprice, spread_bps, rolling_vol * 1e4, trade_intensity FROM {FEATURES} ORDER BY ingest_seq DESC "
            f"LIMIT {int(limit)}"
        )
    )
    lines = [
        f"{'product':10s} {'ingest_seq':>10s} {'exchange time':>15s} {'midprice':>12s} {'spread_bps':>10s} "
        f"{'vol_bps':>8s} {'ticks/s':>8s}"
    ]
    for product, seq, when, mid, spread, vol, intensity in query.fetchall():
        lines.append(
            f"{product:10s} {seq:>10d} {when:>15s} {mid:>12.3f} {spread:>10.4f} {vol:>8.4f} "
            f"{intensity if intensity is not None else float('nan'):>8.2f}"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m volpipe.ops.demo",
        description="Run the whole pipeline on embedded defaults: services, exchange, ingestor, stream with live "
        "scoring, replay validation, training, batch inference and drift reports through Airflow.",
        epilog="Products come from PRODUCT_IDS (the demo's default: BTC-USD,ETH-USD,SOL-USD).",
    )
    parser.add_argument(
        "--history-ticks",
        type=int,
        default=60_000,
        help="synthetic ticks pushed at full speed before live ticks flow (default 60000, about "
        "1.5 simulated hours over three products)",
    )
    parser.add_argument(
        "--history-days",
        type=int,
        default=3,
        help="days before today the history is spread over, one session a day (default 3)",
    )
    parser.add_argument("--live-seconds", type=float, default=60, help="real-time ticks after training (default 60)")
    parser.add_argument("--interval", type=float, default=10, help="seconds between progress lines (default 10)")
    parser.add_argument(
        "--model-refresh-seconds",
        type=float,
        default=5,
        help="how often the stream looks for a new champion (MODEL_REFRESH_SECONDS; demo default 5)",
    )
    parser.add_argument("--services-only", action="store_true", help="start and check the services, run nothing")
    parser.add_argument("--down", action="store_true", help="stop every service at the end")
    parser.add_argument("--log-level", default="WARNING")
    args = parser.parse_args(argv)
    if args.history_days < 1:
        parser.error("--history-days must be at least 1")
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
