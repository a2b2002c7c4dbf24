"""MLflow: the embedded server logs a run to its sqlite backend and reads it back."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.integration


def test_run_is_logged_and_read_back(mlflow_server, tmp_path):
    import mlflow
    from mlflow.tracking import MlflowClient

    settings = mlflow_server
    mlflow.set_tracking_uri(settings.mlflow_tracking_uri)
    experiment_id = mlflow.set_experiment("foundation-smoke").experiment_id
    note = tmp_path / "note.txt"
    note.write_text("artifact through the server\n")
    with mlflow.start_run(experiment_id=experiment_id) as run:
        mlflow.log_param("window", 60)
        mlflow.log_metric("pr_auc", 0.146)
        mlflow.log_artifact(str(note))

    client = MlflowClient(settings.mlflow_tracking_uri)
    stored = client.get_run(run.info.run_id)
    assert stored.data.params == {"window": "60"}
    assert stored.data.metrics == {"pr_auc": 0.146}
    assert [a.path for a in client.list_artifacts(run.info.run_id)] == ["note.txt"]
    backend = settings.mlflow_backend_store_uri.removeprefix("sqlite:///")
    assert settings.data_dir / "mlflow" / "mlflow.db" == __import__("pathlib").Path(backend)
    assert (settings.data_dir / "mlflow" / "mlflow.db").stat().st_size > 0
    assert list((settings.data_dir / "mlflow" / "artifacts").rglob("note.txt"))
