"""docker-compose.yml, checked by a real Compose loader (no engine here) and against our config.

The loader is ``tools/compose-check``: compose-go, the library Docker Compose v2 is built on,
with Compose v1's stricter ``$`` rule (see its doc comment). ``make setup`` builds it into
``.tools/``; the fixture below runs the same make target, so a bare ``pytest`` builds it too.
"""

from __future__ import annotations

import secrets
import subprocess

import pytest
import yaml

from volpipe.config import PROJECT_ROOT, Settings, env_names
from volpipe.ops.services.airflow import airflow_env

COMPOSE = PROJECT_ROOT / "docker-compose.yml"
# A Go build through make (a minute on a cold module cache): not the quick tier.
pytestmark = pytest.mark.integration
CHECKER = PROJECT_ROOT / ".tools" / "compose-check"
EXPECTED_SERVICES = {
    "kafka",
    "spark-master",
    "spark-worker",
    "mlflow",
    "airflow-apiserver",
    "airflow-scheduler",
    "airflow-dag-processor",
    "ingestor",
    "feature-stream",
}
# Variables that belong to the tools themselves, not to volpipe.config.
VENDOR_PREFIXES = (
    "KAFKA_NODE_ID",
    "KAFKA_PROCESS_ROLES",
    "AIRFLOW",
    "POSTGRES_",
    "MLFLOW_SERVER_",
    "MLFLOW_DISABLE_TELEMETRY",
    "MLFLOW_REGISTRY_URI",
    "DO_NOT_TRACK",
)
# Embedded-Airflow variables that differ on purpose under compose: one process per container
# (no `standalone`), its own host names and PostgreSQL; the image's PATH has the venv.
AIRFLOW_HOST_SPECIFIC = {"AIRFLOW__API__PORT", "AIRFLOW__API__HOST", "AIRFLOW__API__WORKERS", "PATH"}


@pytest.fixture(scope="module")
def compose_check() -> str:
    """The checker's path, built by ``make`` when missing or older than its sources."""
    built = subprocess.run(
        ["make", "-s", "-C", str(PROJECT_ROOT), ".tools/compose-check"], capture_output=True, text=True
    )
    assert built.returncode == 0, f"building the Compose checker failed (needs Go):\n{built.stderr}"
    return str(CHECKER)


# The secrets a user must set (no defaults in the file), generated per run as a user would.
REQUIRED_SECRETS = {"AIRFLOW_JWT_SECRET": secrets.token_urlsafe(32), "AIRFLOW_DB_PASSWORD": secrets.token_urlsafe(16)}


def _check(checker: str, path, *flags: str, env: dict[str, str] = REQUIRED_SECRETS) -> subprocess.CompletedProcess:
    # Only the required secrets: the file's own defaults decide, not the developer's shell.
    return subprocess.run([checker, *flags, str(path)], capture_output=True, text=True, env=env, cwd=PROJECT_ROOT)


def _compose() -> dict:
    return yaml.safe_load(COMPOSE.read_text())


def _resolved(checker: str) -> dict:
    """The model Compose would run: anchors merged, ``${VAR:-default}`` and ``$$`` resolved."""
    result = _check(checker, COMPOSE)
    assert result.returncode == 0, result.stderr
    return yaml.safe_load(result.stdout)


def _is_vendor(service: str, name: str) -> bool:
    return service in ("kafka", "airflow-db") or name.startswith(VENDOR_PREFIXES)


def test_a_real_compose_accepts_the_file(compose_check):
    result = _check(compose_check, COMPOSE, "-q")
    assert result.returncode == 0, f"docker-compose.yml is invalid for Compose:\n{result.stderr}"


def test_compose_refuses_to_start_without_the_secrets(compose_check):
    result = _check(compose_check, COMPOSE, "-q", env={})
    assert result.returncode == 1
    assert "AIRFLOW_JWT_SECRET" in result.stderr and "AIRFLOW_DB_PASSWORD" in result.stderr


def test_the_check_rejects_what_compose_v1_rejects_and_schema_errors(compose_check, tmp_path):
    bad_dollar = tmp_path / "dollar.yml"
    bad_dollar.write_text('services:\n  s:\n    image: x\n    command: ["bash", "-c", "echo $(date)"]\n')
    result = _check(compose_check, bad_dollar, "-q")
    assert result.returncode == 1 and "invalid interpolation format" in result.stderr
    bad_key = tmp_path / "schema.yml"
    bad_key.write_text("services:\n  s:\n    image: x\n    comand: [echo]\n")
    result = _check(compose_check, bad_key, "-q")
    assert result.returncode == 1 and "comand" in result.stderr
    missing = tmp_path / "reference.yml"
    missing.write_text("services:\n  s:\n    image: x\n    depends_on: [nowhere]\n")
    assert _check(compose_check, missing, "-q").returncode == 1


def test_compose_has_every_service_on_the_project_image(compose_check):
    services = _resolved(compose_check)["services"]
    assert set(services) >= EXPECTED_SERVICES
    for name in ("ingestor", "feature-stream", "mlflow", "spark-master", "spark-worker", "airflow-scheduler"):
        assert services[name]["image"] == "volpipe:latest", f"{name} must run the project image"


def test_every_project_variable_is_a_setting_of_the_config_module(compose_check):
    known = set(env_names())
    for name, service in _resolved(compose_check)["services"].items():
        for variable in service.get("environment", {}):
            if not _is_vendor(name, variable):
                assert variable in known, f"{name}: {variable} is not read by volpipe.config"


def test_project_services_share_the_pipeline_environment(compose_check):
    services = _resolved(compose_check)["services"]
    shared = _resolved(compose_check)["x-pipeline-env"]
    for name in ("ingestor", "feature-stream", "mlflow", "airflow-scheduler", "airflow-dag-processor"):
        environment = services[name]["environment"]
        for variable, value in shared.items():
            assert environment.get(variable) == value, f"{name}: {variable}"
    # The settings a deployment must point at its own services are all wired.
    wired = ("KAFKA_BOOTSTRAP_SERVERS", "MLFLOW_TRACKING_URI", "SPARK_MASTER", "PIPELINE_DATA_DIR", "COINBASE_WS_URL")
    for variable in wired:
        assert variable in shared


def test_airflow_runs_with_the_embedded_airflows_settings_and_the_checkouts_dags(compose_check):
    embedded = airflow_env(Settings.from_env({}))
    services = _resolved(compose_check)["services"]
    for name in ("airflow-apiserver", "airflow-scheduler", "airflow-dag-processor"):
        environment = services[name]["environment"]
        missing = set(embedded) - set(environment) - AIRFLOW_HOST_SPECIFIC
        assert not missing, f"{name} lacks what the embedded Airflow sets: {sorted(missing)}"
        assert environment["AIRFLOW__CORE__PARALLELISM"] == embedded["AIRFLOW__CORE__PARALLELISM"]
        dags = [v for v in services[name]["volumes"] if v["target"] == environment["AIRFLOW__CORE__DAGS_FOLDER"]]
        assert dags and dags[0]["source"] == str(PROJECT_ROOT / "dags") and dags[0]["read_only"]
        assert services[name]["depends_on"]["airflow-init"]["condition"] == "service_completed_successfully"


def test_commands_use_the_project_entrypoints(compose_check):
    services = _resolved(compose_check)["services"]
    assert services["ingestor"]["command"] == ["python", "-m", "ingest"]
    # Compose turns the file's `$$(` into the `$(` bash must see.
    stream = " ".join(services["feature-stream"]["command"])
    assert "spark-submit $(python -m volpipe.spark submit-args) spark_jobs/features_stream.py" in stream
    assert (PROJECT_ROOT / "spark_jobs" / "features_stream.py").exists()


def test_published_ports_bind_loopback_and_telemetry_is_off():
    services = _compose()["services"]
    published = {name: service["ports"] for name, service in services.items() if "ports" in service}
    assert published
    for name, ports in published.items():
        for port in ports:
            assert port.startswith("127.0.0.1:"), f"{name} publishes {port} on every interface"
    shared = _compose()["x-pipeline-env"]
    assert shared["MLFLOW_DISABLE_TELEMETRY"] == "true" and shared["DO_NOT_TRACK"] == "true"


def test_secrets_have_no_default_and_airflow_users_are_not_all_admins():
    airflow = _compose()["x-airflow"]["environment"]
    assert airflow["AIRFLOW__API_AUTH__JWT_SECRET"].startswith("${AIRFLOW_JWT_SECRET:?")
    assert "${AIRFLOW_DB_PASSWORD:?" in airflow["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"]
    database = _compose()["services"]["airflow-db"]["environment"]
    assert database["POSTGRES_PASSWORD"].startswith("${AIRFLOW_DB_PASSWORD:?")
    roles = dict(user.split(":")[:2] for user in airflow["AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS"].split(","))
    assert set(roles.values()) != {"admin"}
