"""Running the project's DAGs with ``dag.test()`` against a real Airflow metadata DB (sqlite).

A test module opens ``airflow_environment`` once (the environment every task reads, a migrated
DB under its temp folder), loads the DAGs and runs them with ``run``; tasks execute in the test
process, through Airflow's task SDK, as a worker would run them.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from volpipe.config import PROJECT_ROOT, Settings


@contextlib.contextmanager
def airflow_environment(settings: Settings, home: Path, **env: str) -> Iterator[None]:
    """The variables the DAGs' tasks read (``settings``' data folder and MLflow, plus ``env``) and a
    migrated metadata DB in ``home``; both undone on exit."""
    variables = {
        "PIPELINE_DATA_DIR": str(settings.data_dir),
        "MLFLOW_TRACKING_URI": settings.mlflow_tracking_uri,
        "FEATURE_WINDOW_SIZE": str(settings.feature_window_size),
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__DAGS_FOLDER": str(PROJECT_ROOT / "dags"),
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home}/airflow.db",
        "AIRFLOW_CONN_SPARK_DEFAULT": json.dumps({"conn_type": "spark", "host": settings.spark_master}),
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
        **env,
    }
    home.mkdir(parents=True, exist_ok=True)
    with pytest.MonkeyPatch.context() as patch:
        for key, value in variables.items():
            patch.setenv(key, value)
        subprocess.run(
            [str(Path(sys.executable).with_name("airflow")), "db", "migrate"],
            check=True,
            capture_output=True,
            timeout=300,
        )
        from airflow import settings as airflow_settings

        # Airflow binds its metadata DB once per process; another test module may have bound it already.
        airflow_settings.configure_vars()
        airflow_settings.reconfigure_orm()
        yield


def load_dags() -> dict[str, Any]:
    """The project's DAGs by id, parsed from ``dags/`` (no import error allowed)."""
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(PROJECT_ROOT / "dags"))
    assert bag.import_errors == {}
    return bag.dags


def run(dags: dict[str, Any], dag_id: str, conf: dict | None = None, skip: str | None = None) -> tuple[Any, dict]:
    """One ``dag.test()`` run (tasks matching ``skip`` are marked success without running);
    returns it with its task instances' states."""
    dag_run = dags[dag_id].test(run_conf=conf or {}, mark_success_pattern=skip)
    states = {ti.task_id: ti.state for ti in dag_run.get_task_instances()}
    return dag_run, states


def find_run(dag_id: str, run_id: str) -> dict[str, Any] | None:
    """State, conf, note and type of the run ``run_id`` of ``dag_id`` in the metadata DB (e.g. one
    a task triggered), or None."""
    from airflow.models import DagRun
    from airflow.utils.session import create_session

    with create_session() as session:
        found = session.query(DagRun).filter(DagRun.dag_id == dag_id, DagRun.run_id == run_id).one_or_none()
        if found is None:
            return None
        return {"state": str(found.state), "conf": found.conf, "note": found.note, "run_type": str(found.run_type)}
