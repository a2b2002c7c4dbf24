"""Every DAG file parses, is thin and follows the house rules (tags, retries, docs, ids)."""

from __future__ import annotations

import ast
import os
import re
import socket
from pathlib import Path

import pytest

from volpipe.config import PROJECT_ROOT

DAGS_DIR = PROJECT_ROOT / "dags"
DAG_FILES = sorted(DAGS_DIR.glob("*.py"))
HEAVY_MODULES = {"pyspark", "mlflow", "evidently", "sklearn", "pandas", "numpy", "confluent_kafka", "delta"}


@pytest.fixture(scope="module")
def dagbag(tmp_path_factory):
    home = tmp_path_factory.mktemp("airflow_home")
    saved = dict(os.environ)
    os.environ.update(
        {
            "AIRFLOW_HOME": str(home),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__CORE__DAGS_FOLDER": str(DAGS_DIR),
            # Parsing must not touch a database: point it at a file that cannot exist.
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home}/missing/dir/airflow.db",
        }
    )

    def no_network(self, address):
        raise AssertionError(f"a DAG file opened a connection to {address} while being parsed")

    try:
        from airflow.dag_processing.dagbag import DagBag

        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(socket.socket, "connect", no_network)
            yield DagBag(dag_folder=str(DAGS_DIR))
    finally:
        os.environ.clear()
        os.environ.update(saved)


def test_dags_folder_has_dags():
    assert DAG_FILES, "dags/ is empty"


def test_every_dag_imports_without_errors(dagbag):
    assert dagbag.import_errors == {}
    assert {Path(dag.fileloc).stem for dag in dagbag.dags.values()} == {path.stem for path in DAG_FILES}


@pytest.mark.parametrize("path", DAG_FILES, ids=lambda p: p.stem)
def test_dag_id_is_the_file_stem_and_it_is_documented(dagbag, path: Path):
    dag = dagbag.dags[path.stem]
    assert dag.doc_md and dag.doc_md.strip().startswith("###"), "module docstring must become doc_md"
    assert dag.tags, "every DAG needs tags"
    assert dag.catchup is False


@pytest.mark.parametrize("path", DAG_FILES, ids=lambda p: p.stem)
def test_every_task_retries_at_least_twice(dagbag, path: Path):
    for task in dagbag.dags[path.stem].tasks:
        assert task.retries >= 2, f"{task.task_id} retries={task.retries}"


@pytest.mark.parametrize("path", DAG_FILES, ids=lambda p: p.stem)
def test_dag_files_import_no_heavy_library_at_top_level(path: Path):
    tree = ast.parse(path.read_text())
    top_level = [node for node in tree.body if isinstance(node, (ast.Import, ast.ImportFrom))]
    names = {alias.name.split(".")[0] for node in top_level if isinstance(node, ast.Import) for alias in node.names}
    names |= {node.module.split(".")[0] for node in top_level if isinstance(node, ast.ImportFrom) and node.module}
    assert not names & HEAVY_MODULES, f"import {names & HEAVY_MODULES} inside the task bodies"


@pytest.mark.parametrize("path", DAG_FILES, ids=lambda p: p.stem)
def test_every_task_has_an_owner_and_backs_off(dagbag, path: Path):
    for task in dagbag.dags[path.stem].tasks:
        assert task.owner == "volpipe", task.task_id
        assert task.retry_exponential_backoff, task.task_id


def test_schedules_are_the_documented_ones(dagbag):
    """docs/orchestration.md lists each DAG with its schedule; the table and the DAGs agree."""
    rows = re.findall(r"^\| `(\w+)` \| `([^`]+)` \|", (PROJECT_ROOT / "docs" / "orchestration.md").read_text(), re.M)
    documented = dict(rows)
    assert set(documented) == set(dagbag.dags)
    for dag_id, dag in dagbag.dags.items():
        assert _schedule(dag.timetable) == documented[dag_id], dag_id


def _schedule(timetable) -> str:
    """``0 2 * * *``, or ``0 * * * * or assets a, b`` for a time-or-asset schedule."""
    if hasattr(timetable, "expression"):
        return timetable.expression
    assets = sorted(key.name for key, _ in timetable.asset_condition.iter_assets())
    return f"{timetable.timetable._expression} or assets {', '.join(assets)}"


def test_the_trigger_form_says_once_what_an_empty_date_means(dagbag):
    """The UI shows each Param's description under its field (checked in headless Chromium)."""
    for dag in dagbag.dags.values():
        if "start" in dag.params:
            description = dag.params.get_param("start").description
            assert description.count("empty") == 1, (dag.dag_id, description)
