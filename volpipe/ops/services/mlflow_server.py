"""The embedded MLflow tracking server: sqlite backend, artifacts under DATA_DIR/mlflow.

Inputs: ``Settings`` (port from MLFLOW_TRACKING_URI, MLFLOW_BACKEND_STORE_URI). Output: a
server on 127.0.0.1 that serves the UI and proxies artifact uploads (``mlflow-artifacts:``),
so clients need no access to the artifact folder.
"""

from __future__ import annotations

import sys
from pathlib import Path

from volpipe.config import Settings
from volpipe.modeling.registry import reachable
from volpipe.ops.services.process import TELEMETRY_OFF, ManagedProcess, private_dir


def _home(settings: Settings) -> Path:
    return settings.data_dir / "mlflow"


def server(settings: Settings) -> ManagedProcess:
    """The MLflow server as a managed process (not started)."""
    home = _home(settings)
    port = settings.mlflow_port
    return ManagedProcess(
        name="mlflow",
        argv=[
            str(Path(sys.executable).with_name("mlflow")),
            "server",
            "--backend-store-uri",
            settings.mlflow_backend_store_uri,
            "--artifacts-destination",
            str(home / "artifacts"),
            "--serve-artifacts",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--workers",
            "1",
        ],
        run_dir=home,
        port=port,
        # The job runner (huey consumers, ~250 MB each) serves GenAI features this project has none of.
        env={"MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false", **TELEMETRY_OFF},
        ready=lambda: reachable(f"http://127.0.0.1:{port}", timeout=2),
        start_timeout=120,
    )


def prepare(settings: Settings) -> None:
    """Creates the server's home (sqlite DB and artifacts live there)."""
    private_dir(_home(settings))


def where(settings: Settings) -> str:
    """Where users reach it and where it keeps its data."""
    return f"UI {settings.mlflow_tracking_uri}, data {_home(settings)}"
