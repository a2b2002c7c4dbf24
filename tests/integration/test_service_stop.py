"""`make down` leaves no process behind: the whole process tree of Kafka, MLflow and Airflow
(after Airflow ran a DAG, so its LocalExecutor workers and task processes existed) is gone
after `python -m volpipe.ops.services down`, the command `make down` runs."""

from __future__ import annotations

import os
import subprocess
import sys

import psutil
import pytest

from volpipe.config import PROJECT_ROOT
from volpipe.ops.harness import process_tree, survivors
from volpipe.ops.health import AirflowClient, wait_for_dag
from volpipe.ops.sandbox import isolated_settings
from volpipe.ops.services import AIRFLOW, KAFKA, MLFLOW
from volpipe.ops.services.live import program_env

pytestmark = pytest.mark.integration


def test_down_ends_every_process_of_every_service_tree(tmp_path):
    settings = isolated_settings(tmp_path)
    env = {**os.environ, **program_env(settings)}
    tree: list[psutil.Process] = []
    try:
        up = subprocess.run([sys.executable, "-m", "volpipe.ops.services", "up"], cwd=PROJECT_ROOT, env=env,
                            capture_output=True, text=True, timeout=600)
        assert up.returncode == 0, up.stdout + up.stderr
        client = AirflowClient(settings)
        wait_for_dag(client, "pipeline_healthcheck")
        run_id = client.trigger("pipeline_healthcheck")
        assert client.wait_for_run("pipeline_healthcheck", run_id) == "success"
        for service in (KAFKA, MLFLOW, AIRFLOW):
            tree += process_tree(service.process(settings).pid())
        assert len(tree) > 6, [proc.cmdline()[:3] for proc in tree]
    finally:
        down = subprocess.run([sys.executable, "-m", "volpipe.ops.services", "down"], cwd=PROJECT_ROOT, env=env,
                              capture_output=True, text=True, timeout=600)
    assert down.returncode == 0, down.stdout + down.stderr
    assert survivors(tree) == []
