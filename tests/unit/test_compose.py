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
VENDOR_PREFIXES = ("KAFKA_NODE_ID", "KAFKA_PROCESS_ROLES", "AIRFLOW", "POSTGRES_", "MLFLOW_SERVER_")


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
