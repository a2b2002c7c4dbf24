"""What a neighbour on the network or on the machine can reach, against the real services.

One Airflow (with the session's Kafka and MLflow), the local exchange and the ingestor with
its Prometheus endpoint are started by the project's own code, then inspected: every socket
their process trees listen on, the modes of the secrets they generated, MLflow's telemetry
switch and what Airflow's viewer user may do. docs/reliability.md (Security) cites each test.
"""

from __future__ import annotations

import json
import os
import re
import stat
import subprocess
import urllib.error
import urllib.request
from collections.abc import Iterator

import psutil
import pytest

from volpipe.config import PROJECT_ROOT, Settings
from volpipe.ops.harness import ExchangeProcess, IngestorProcess, ingestor_env, wait_until
from volpipe.ops.health import AirflowClient, wait_for_dag
from volpipe.ops.services import AIRFLOW, KAFKA, MLFLOW, running
from volpipe.ops.services.airflow import airflow_home, password_file
from volpipe.ops.services.process import free_port, port_open

pytestmark = pytest.mark.integration

LOOPBACK = {"127.0.0.1", "::1", "::ffff:127.0.0.1"}


def _airflow_health(settings: Settings) -> dict:
    with urllib.request.urlopen(f"http://127.0.0.1:{settings.airflow_port}/api/v2/monitor/health", timeout=5) as r:
        return json.load(r)


def _all_components_healthy(settings: Settings) -> bool:
    try:
        health = _airflow_health(settings)
    except OSError:
        return False
    return all(health.get(part, {}).get("status") == "healthy" for part in ("scheduler", "triggerer", "dag_processor"))


@pytest.fixture(scope="module")
def airflow(kafka_broker: Settings, mlflow_server: Settings) -> Iterator[Settings]:
    """Airflow next to the session's Kafka and MLflow, every component heartbeating."""
    with running(kafka_broker, AIRFLOW) as settings:
        wait_until(lambda: _all_components_healthy(settings), 180, "scheduler, triggerer and dag-processor", 2)
        wait_for_dag(AirflowClient(settings), "pipeline_healthcheck")
        yield settings


def _listening(pids: list[int]) -> dict[tuple[str, int], str]:
    """(address, port) -> process name, for every listening TCP socket of ``pids`` and their children."""
    found = {}
    for pid in pids:
        root = psutil.Process(pid)
        for proc in [root, *root.children(recursive=True)]:  # a child twice is harmless
            try:
                for conn in proc.net_connections(kind="inet"):
                    if conn.status == psutil.CONN_LISTEN:
                        found[(conn.laddr.ip, conn.laddr.port)] = f"{proc.name()} pid={proc.pid}"
            except (psutil.NoSuchProcess, psutil.AccessDenied):
                continue
    return found


def test_every_port_of_every_service_and_process_is_bound_to_loopback(airflow, spark, tmp_path):
    """Kafka, MLflow, Airflow, the exchange, the ingestor's metrics and a local Spark driver
    (its JVM is a child of this test process, like every service above)."""
    settings = airflow
    driver_port = int(spark.sparkContext.getConf().get("spark.driver.port"))
    metrics_port = free_port()
    exchange = ExchangeProcess("--speed", "1")
    ingestor = IngestorProcess(
        ingestor_env(settings, exchange.url, METRICS_PORT=str(metrics_port)), tmp_path / "ingest.log"
    )
    try:
        wait_until(lambda: port_open("127.0.0.1", metrics_port), 90, "the ingestor's metrics port")
        pids = [service.process(settings).pid() for service in (KAFKA, MLFLOW, AIRFLOW)]
        listening = _listening([os.getpid(), *pids])
    finally:
        ingestor.stop()
        exchange.stop()
    ports = {port for _, port in listening}
    expected = {
        settings.kafka_listener[1],
        settings.kafka_controller_port,
        settings.mlflow_port,
        settings.airflow_port,
        exchange.port,
        metrics_port,
        driver_port,
    }
    assert expected <= ports, f"not seen listening: {expected - ports}"
    assert not ports & {8793, 8794}, "Airflow's task-log servers must not run"
    open_to_all = {address: name for address, name in listening.items() if address[0] not in LOOPBACK}
    assert not open_to_all, f"listening beyond loopback: {open_to_all}"


def test_generated_secrets_are_owner_only(airflow):
    settings = airflow
    home = airflow_home(settings)
    assert stat.S_IMODE(home.stat().st_mode) == 0o700
    secrets = {
        password_file(settings): "admin and viewer passwords",
        home / "airflow.cfg": "JWT secret and Fernet key",
        home / "airflow.log": "the first start prints the passwords",
    }
    for path, what in secrets.items():
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, f"{path} ({what})"
    assert set(json.loads(password_file(settings).read_text())) == {"admin", "viewer"}
    for folder in (settings.data_dir / "kafka", settings.data_dir / "mlflow"):
        assert stat.S_IMODE(folder.stat().st_mode) == 0o700, folder


def _token(settings: Settings, user: str) -> str:
    password = json.loads(password_file(settings).read_text())[user]
    request = urllib.request.Request(
        f"http://127.0.0.1:{settings.airflow_port}/auth/token",
        method="POST",
        data=json.dumps({"username": user, "password": password}).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=10) as answer:
        return json.load(answer)["access_token"]


def _call(settings: Settings, method: str, path: str, token: str | None, body: dict | None = None) -> int:
    headers = {"Content-Type": "application/json", **({"Authorization": f"Bearer {token}"} if token else {})}
    request = urllib.request.Request(
        f"http://127.0.0.1:{settings.airflow_port}{path}",
        method=method,
        data=json.dumps(body).encode() if body else None,
        headers=headers,
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as answer:
            return answer.status
    except urllib.error.HTTPError as refused:
        return refused.code


def test_airflow_wants_a_token_and_the_viewer_cannot_change_anything(airflow):
    settings = airflow
    assert _call(settings, "GET", "/api/v2/dags", None) == 401
    assert _call(settings, "GET", "/api/v2/dags", "not-a-token") == 403  # Airflow: a bad token is forbidden
    viewer = _token(settings, "viewer")
    assert _call(settings, "GET", "/api/v2/dags", viewer) == 200
    assert _call(settings, "PATCH", "/api/v2/dags/pipeline_healthcheck", viewer, {"is_paused": False}) == 403
    assert _call(settings, "GET", "/api/v2/dags", _token(settings, "admin")) == 200


def test_the_readme_api_example_lists_the_dags_with_a_viewer_token(airflow, tmp_path):
    settings = airflow
    block = re.findall(r"```bash\n(PASSWORD=.*?)```", (PROJECT_ROOT / "README.md").read_text(), re.S)[0]
    (tmp_path / "data").symlink_to(settings.data_dir)  # the block reads data/airflow/... like a user in the repo
    script = block.replace("http://localhost:8080", f"http://127.0.0.1:{settings.airflow_port}")
    result = subprocess.run(["bash", "-c", script], cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert "pipeline_healthcheck" in {dag["dag_id"] for dag in json.loads(result.stdout)["dags"]}


def test_usage_telemetry_is_switched_off_for_every_service(airflow):
    """The switches themselves: under pytest MLflow would stay quiet anyway (it skips telemetry
    when PYTEST_CURRENT_TEST is set), so the UI endpoint alone would prove nothing."""
    settings = airflow
    for service in (MLFLOW, AIRFLOW):
        environ = psutil.Process(service.process(settings).pid()).environ()
        assert environ.get("MLFLOW_DISABLE_TELEMETRY") == "true" and environ.get("DO_NOT_TRACK") == "true", service.name
    url = f"{settings.mlflow_tracking_uri}/ajax-api/3.0/mlflow/ui-telemetry"
    with urllib.request.urlopen(url, timeout=10) as answer:
        assert json.load(answer)["disable_ui_telemetry"] is True  # no banner, no events from the UI


def test_the_documented_curl_example_triggers_a_run_and_the_api_wants_a_token(airflow, tmp_path):
    """docs/orchestration.md's REST block, run as written (only the port changes). Last in the
    module: the run it starts goes on in the background until the module's Airflow stops."""
    settings = airflow
    block = re.findall(r"```bash\n(.*?)```", (PROJECT_ROOT / "docs" / "orchestration.md").read_text(), re.S)[0]
    base = f"http://127.0.0.1:{settings.airflow_port}"
    (tmp_path / "data").symlink_to(settings.data_dir)  # the block reads data/airflow/... like a user in the repo
    wait_for_dag(AirflowClient(settings), "replay_validation")
    result = subprocess.run(
        ["bash", "-c", block.replace("http://localhost:8080", base)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    run = json.loads(result.stdout.strip().splitlines()[-1])
    assert run["dag_id"] == "replay_validation" and run["conf"] == {"start": "2026-01-01", "end": "2026-01-01"}
    assert run["state"] in ("queued", "running"), run
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(f"{base}/api/v2/dags", timeout=10)
    assert refused.value.code == 401
