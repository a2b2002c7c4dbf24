"""docker-compose.yml (not runnable here): it parses, has every service, and speaks our config."""

from __future__ import annotations

import yaml

from volpipe.config import PROJECT_ROOT, env_names

COMPOSE = PROJECT_ROOT / "docker-compose.yml"
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
    "KAFKA_NODE_ID", "KAFKA_PROCESS_ROLES", "AIRFLOW", "POSTGRES_", "MLFLOW_SERVER_", "MLFLOW_DISABLE_TELEMETRY",
    "DO_NOT_TRACK",
)


def _compose() -> dict:
    return yaml.safe_load(COMPOSE.read_text())


def _is_vendor(service: str, name: str) -> bool:
    return service in ("kafka", "airflow-db") or name.startswith(VENDOR_PREFIXES)


def test_compose_parses_and_has_every_service():
    services = _compose()["services"]
    assert EXPECTED_SERVICES <= set(services)
    for name in ("ingestor", "feature-stream", "mlflow", "spark-master", "spark-worker"):
        assert services[name]["image"] == "volpipe:latest", f"{name} must run the project image"


def test_every_project_variable_is_a_setting_of_the_config_module():
    known = set(env_names())
    for name, service in _compose()["services"].items():
        for variable in service.get("environment", {}):
            if not _is_vendor(name, variable):
                assert variable in known, f"{name}: {variable} is not read by volpipe.config"


def test_project_services_share_the_pipeline_environment():
    services = _compose()["services"]
    shared = _compose()["x-pipeline-env"]
    for name in ("ingestor", "feature-stream", "mlflow", "airflow-scheduler"):
        environment = services[name]["environment"]
        for variable, value in shared.items():
            assert environment.get(variable) == value, f"{name}: {variable}"
    # The settings a deployment must point at its own services are all wired.
    for variable in ("KAFKA_BOOTSTRAP_SERVERS", "MLFLOW_TRACKING_URI", "SPARK_MASTER", "PIPELINE_DATA_DIR", "COINBASE_WS_URL"):
        assert variable in shared


def test_commands_use_the_project_entrypoints():
    services = _compose()["services"]
    assert services["ingestor"]["command"] == ["python", "-m", "ingest"]
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
