"""The embedded Airflow, with AIRFLOW_HOME inside the project.

Inputs: ``Settings`` (AIRFLOW_PORT, AIRFLOW_PARALLELISM). Output: api-server (UI and REST
API on 127.0.0.1), scheduler, dag-processor and triggerer in one process group, reading
DAGs from ``dags/``, with a ``spark_default`` connection to SPARK_MASTER (without it the
Spark provider silently submits to YARN).

The process is ``python -m volpipe.ops.services.airflow_components``: what `airflow
standalone` runs, without the task-log servers that would listen on every interface.
"""

from __future__ import annotations

import json
import os
import sys
import urllib.request
from pathlib import Path

from volpipe.config import PROJECT_ROOT, Settings
from volpipe.ops.services.process import TELEMETRY_OFF, ManagedProcess, private_dir, private_file

# SimpleAuthManager users and their roles; each gets a generated password in password_file().
USERS = "admin:admin,viewer:viewer"


def airflow_home(settings: Settings) -> Path:
    return settings.data_dir / "airflow"


def password_file(settings: Settings) -> Path:
    """Where SimpleAuthManager keeps the generated admin password."""
    return airflow_home(settings) / "simple_auth_manager_passwords.json.generated"


def airflow_env(settings: Settings) -> dict[str, str]:
    """Environment every Airflow process (and so every task) runs with."""
    venv_bin = str(Path(sys.executable).parent)
    return {
        "AIRFLOW_HOME": str(airflow_home(settings)),
        "AIRFLOW__CORE__DAGS_FOLDER": str(PROJECT_ROOT / "dags"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
        "AIRFLOW__CORE__AUTH_MANAGER": "airflow.api_fastapi.auth.managers.simple.simple_auth_manager.SimpleAuthManager",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": USERS,
        "AIRFLOW__CORE__PARALLELISM": str(settings.airflow_parallelism),
        "AIRFLOW__CORE__MAX_ACTIVE_TASKS_PER_DAG": str(settings.airflow_parallelism),
        "AIRFLOW__API__PORT": str(settings.airflow_port),
        "AIRFLOW__API__HOST": "127.0.0.1",
        "AIRFLOW__API__WORKERS": "1",
        # Task processes report to the API server; its default URL assumes port 8080.
        "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://127.0.0.1:{settings.airflow_port}/execution/",
        "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "True",
        # The master of every spark-submit task: the pipeline's own (SPARK_MASTER).
        "AIRFLOW_CONN_SPARK_DEFAULT": json.dumps({"conn_type": "spark", "host": settings.spark_master}),
        # spark-submit and the project's entrypoints come from the project virtualenv.
        "PATH": f"{venv_bin}{os.pathsep}{os.environ.get('PATH', '')}",
        "PIPELINE_DATA_DIR": str(settings.data_dir),
        # Tasks use the project's MLflow, whatever an MLFLOW_* variable of the starting shell says
        # (mlflow.set_tracking_uri/set_registry_uri export theirs to os.environ).
        "MLFLOW_TRACKING_URI": settings.mlflow_tracking_uri,
        "MLFLOW_REGISTRY_URI": settings.mlflow_tracking_uri,
        **TELEMETRY_OFF,
    }


def _healthy(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/v2/monitor/health", timeout=3) as response:
            body = json.load(response)
    except (OSError, ValueError):
        return False
    return body.get("metadatabase", {}).get("status") == "healthy" and (
        body.get("scheduler", {}).get("status") == "healthy"
    )


def components(settings: Settings) -> ManagedProcess:
    """The four Airflow components (``airflow_components``) as a managed process (not started)."""
    port = settings.airflow_port
    return ManagedProcess(
        name="airflow",
        argv=[sys.executable, "-m", "volpipe.ops.services.airflow_components"],
        run_dir=airflow_home(settings),
        env=airflow_env(settings),
        port=port,
        ready=lambda: _healthy(port),
        start_timeout=300,
        stop_timeout=60,
    )


def prepare(settings: Settings) -> None:
    """Creates AIRFLOW_HOME owner-only (0700) and the password file 0600 before Airflow fills it.

    Airflow writes airflow.cfg (JWT secret, Fernet key) 0600 itself, but creates the
    password file with the umask's mode (world-readable); an empty file it only appends to.
    """
    private_dir(airflow_home(settings))
    private_file(password_file(settings))


def where(settings: Settings) -> str:
    """Where users reach it, where the passwords are, where it keeps its data."""
    return (
        f"UI http://127.0.0.1:{settings.airflow_port} (users admin and viewer, passwords in "
        f"{password_file(settings)}), home {airflow_home(settings)}"
    )
