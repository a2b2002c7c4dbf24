"""`make demo`: services up and checked, then exchange -> ingestor -> stream -> Delta, then all stopped."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from volpipe.config import PROJECT_ROOT
from volpipe.ops.sandbox import isolated_settings
from volpipe.ops.services.process import port_open

pytestmark = pytest.mark.integration


def test_demo_brings_every_service_up_and_runs_a_dag(tmp_path):
    settings = isolated_settings(tmp_path)
    env = {
        **os.environ,
        "PIPELINE_DATA_DIR": str(tmp_path),
        "KAFKA_BOOTSTRAP_SERVERS": settings.kafka_bootstrap_servers,
        "KAFKA_CONTROLLER_PORT": str(settings.kafka_controller_port),
        "MLFLOW_TRACKING_URI": settings.mlflow_tracking_uri,
        "AIRFLOW_PORT": str(settings.airflow_port),
    }
    result = subprocess.run(
        [sys.executable, "-m", "volpipe.ops.demo", "--down", "--seconds", "20", "--speed", "20"],
        env=env,
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "all services healthy" in result.stdout
    assert '"pipeline_healthcheck": "success"' in result.stdout
    assert '"import_errors": 0' in result.stdout
    # Every ticker the ingestor stored reached the Delta `ticks` table, and features followed.
    pipeline = json.loads(result.stdout.split("  pipeline ", 1)[1].splitlines()[0])
    stored = pipeline["ingestor"]["tickers"]
    assert stored > 100, pipeline
    assert pipeline["exchange_sent"]["tickers_sent"] >= stored
    assert pipeline["delta_ticks_added"] == stored
    assert pipeline["delta_features_total"] == stored - settings.feature_window_size  # one product
    assert pipeline["delta_quarantine_total"] == 0
    assert "newest feature rows" in result.stdout and "vol_bps" in result.stdout
    assert len(list((tmp_path / "raw").glob("*.ndjson"))) >= 1
    # The Airflow task really ran: its log is under the isolated AIRFLOW_HOME.
    task_logs = list((tmp_path / "airflow" / "logs").rglob("*check_kafka*"))
    assert task_logs, "no log of the check_kafka task"
    # --down stopped everything it started.
    assert not port_open("127.0.0.1", settings.kafka_listener[1])
    assert not port_open("127.0.0.1", settings.mlflow_port)
    assert not port_open("127.0.0.1", settings.airflow_port)
