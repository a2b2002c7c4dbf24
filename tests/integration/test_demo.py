"""`make demo` in a short mode: the whole pipeline from ingest to drift report, its summary
checked, then all stopped: `--down` runs what `make down` runs, and no process that the demo
or its services started (Kafka, MLflow, Airflow's components, workers and task processes, the
exchange, the ingestor, the stream's spark-submit, JVM and Python workers) is left behind."""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import subprocess
import sys
import threading
from pathlib import Path

import psutil
import pytest

from volpipe.config import PROJECT_ROOT
from volpipe.ops.harness import survivors
from volpipe.ops.sandbox import isolated_settings
from volpipe.ops.services import SERVICES
from volpipe.ops.services.process import port_open, process_tree

pytestmark = pytest.mark.integration


@pytest.mark.timeout(1500)  # the whole pipeline, services included: minutes, more on a busy machine
def test_demo_runs_the_whole_pipeline_and_summarises_it(tmp_path):
    settings = isolated_settings(tmp_path)
    env = {
        **os.environ,
        "PIPELINE_DATA_DIR": str(tmp_path),
        "KAFKA_BOOTSTRAP_SERVERS": settings.kafka_bootstrap_servers,
        "KAFKA_CONTROLLER_PORT": str(settings.kafka_controller_port),
        "MLFLOW_TRACKING_URI": settings.mlflow_tracking_uri,
        "AIRFLOW_PORT": str(settings.airflow_port),
        "METRICS_PORT": "0",
        "STREAM_METRICS_PORT": "0",
    }
    env.pop("PRODUCT_IDS", None)  # the demo's own default: three products
    env.pop("MLFLOW_REGISTRY_URI", None)  # exported by earlier tests' mlflow.set_registry_uri
    command = [
        sys.executable,
        "-m",
        "volpipe.ops.demo",
        "--down",
        "--history-ticks",
        "30000",
        "--live-seconds",
        "15",
        "--interval",
        "5",
    ]
    with subprocess.Popen(
        command, env=env, cwd=PROJECT_ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    ) as demo:
        watcher = ProcessWatcher(demo.pid, settings)
        watcher.start()
        try:
            stdout, stderr = demo.communicate(timeout=1500)
        except subprocess.TimeoutExpired:
            demo.kill()
            raise
        finally:
            watcher.stop()
    result = subprocess.CompletedProcess(command, demo.returncode, stdout, stderr)
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-6000:]
    assert "=== summary ===" in result.stdout and "fast-forward" in result.stdout and " live " in result.stdout
    found = json.loads((tmp_path / "reports" / "demo" / "summary.json").read_text())
    # Every ticker the exchange served is stored, in Kafka and in Delta; nothing quarantined.
    ticks = found["ticks"]
    assert ticks["served"] == ticks["stored"] == ticks["ndjson_lines"] == ticks["kafka"] == ticks["delta"] > 30000
    assert ticks["quarantined"] == 0
    # W returns per product before the first feature row, three products.
    assert found["features"]["delta"] == ticks["delta"] - 3 * settings.feature_window_size
    assert found["features"]["kafka"] >= found["features"]["delta"]  # at least once
    assert found["replay"]["equal"] is True
    # The history lies on the days before today, where train_nightly's defaults look: it trained.
    today = dt.datetime.now(dt.UTC).date()  # the demo ran today (a run across midnight would fail here)
    assert found["history_days"] == [str(today - dt.timedelta(days=d)) for d in (3, 2, 1)]
    training = found["training"]
    assert set(training["models"]) == {"baseline", "logistic_regression", "hist_gradient_boosting"}
    assert 0 < training["positive_rate"]["test"] < 1
    assert found["champion"]["version"] == training["champion_version"]
    gate = training["gate"]
    assert training["decision"] in ("promoted", "no_skill")  # the first training: no champion to keep
    assert f"95% CI [{gate['gain_ci'][0]:+.3f}, {gate['gain_ci'][1]:+.3f}]" in result.stdout
    predictions = found["predictions"]
    runs = found["airflow_runs"]
    if training["promoted"]:
        assert gate["gain_ci"][0] > 0
        assert predictions["live_delta"] > 0 and predictions["live_kafka"] >= predictions["live_delta"]
        assert predictions["batch_delta"] > 0
        report_dir = Path(found["monitoring"]["report_dir"])
        assert any(report_dir.glob("*.html")), f"no Evidently report in {report_dir}"
        assert set(found["demo_runs"]) == {
            "replay_validation",
            "train_nightly",
            "batch_inference",
            "monitoring_reports",
        }
        assert [run for run in runs if run["state"] != "success"] == []
    else:  # the summary says so plainly, nothing scores, and the only failed run is that verdict
        assert found["champion"]["version"] is None and "champion: NONE. no model beat the persistence" in result.stdout
        assert predictions == {"live_delta": 0, "live_kafka": 0, "batch_delta": 0}
        assert set(found["demo_runs"]) == {"replay_validation", "train_nightly"}
        assert [(run["dag_id"], run["state"]) for run in runs if run["state"] != "success"] == [
            ("train_nightly", "failed")
        ]
    # What the Airflow UI shows (its REST API, above: no false failure): the demo's runs, none
    # left queued or running; a scheduled run only if a schedule's tick fell inside a demo run.
    assert set(found["demo_runs"].items()) <= {(run["dag_id"], run["dag_run_id"]) for run in runs}
    assert len(runs) - len(found["demo_runs"]) == sum(run["run_type"] == "scheduled" for run in runs) <= 1, runs
    # --down stopped everything it started.
    assert not port_open("127.0.0.1", settings.kafka_listener[1])
    assert not port_open("127.0.0.1", settings.mlflow_port)
    assert not port_open("127.0.0.1", settings.airflow_port)
    assert len(watcher.seen) > 20, sorted(watcher.seen)
    assert survivors(list(watcher.seen.values())) == []


class ProcessWatcher(threading.Thread):
    """Every process seen in the demo's tree or a service's tree, sampled twice a second: a
    process that a stop leaves behind (even one orphaned on the way) is among them."""

    def __init__(self, pid: int, settings) -> None:
        super().__init__(daemon=True)
        self.roots = lambda: [pid, *(p for service in SERVICES.values() if (p := service.process(settings).pid()))]
        self.seen: dict[tuple[int, float], psutil.Process] = {}
        self.stopping = threading.Event()

    def run(self) -> None:
        while not self.stopping.wait(0.5):
            for root in self.roots():
                try:
                    tree = process_tree(root)
                except psutil.NoSuchProcess:
                    continue
                for proc in tree:
                    with contextlib.suppress(psutil.NoSuchProcess):
                        self.seen.setdefault((proc.pid, proc.create_time()), proc)

    def stop(self) -> None:
        self.stopping.set()
        self.join()
