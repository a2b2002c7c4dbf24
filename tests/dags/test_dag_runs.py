"""Every DAG runs with ``dag.test()`` against a real metadata DB, real Spark (``spark-submit``),
real Delta and a real MLflow server, on a pipeline the test feeds: synthetic ticks through the
stream into Delta, and the same records as the ingestor's daily NDJSON files.

The runs share one dataset and go in the order a day of the pipeline goes: replay validation,
training, batch inference, monitoring, maintenance; last, a replay validation that must fail
once a value of the stream's table is altered.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.model.skill import skilled_rows, unpredictable_rows
from tests.spark.pipeline_helpers import pipeline_settings, stream_everything, write_raw_files
from volpipe.config import PROJECT_ROOT
from volpipe.market import DEFAULT_START_NS, synthetic_raw_records
from volpipe.tables import FEATURES, PREDICTIONS, TICKS

pytestmark = [pytest.mark.integration, pytest.mark.spark]

DAY = "2026-01-01"  # the synthetic market starts at 2026-01-01T00:00Z
ONE_DAY = {"start": DAY, "end": DAY}


@pytest.fixture(scope="module")
def pipeline(spark, kafka_broker, mlflow_server, tmp_path_factory):
    """The stream's tables and the raw files of 8,000 ticks, and the environment the DAGs read."""
    root = tmp_path_factory.mktemp("dag-runs")
    # Several micro-batches, as a running stream makes: small files for the maintenance DAG to compact.
    settings = dataclasses.replace(pipeline_settings(kafka_broker, root / "data", window=60),
                                   mlflow_tracking_uri=mlflow_server.mlflow_tracking_uri,
                                   stream_max_offsets_per_trigger=2000)
    records = list(synthetic_raw_records(8000, ("BTC-USD", "ETH-USD"), seed=9, start_ns=DEFAULT_START_NS + 60 * 10**9))
    write_raw_files(settings, records)
    stream_everything(spark, settings, records)
    home = root / "airflow"
    env = {
        "PIPELINE_DATA_DIR": str(settings.data_dir),
        "MLFLOW_TRACKING_URI": settings.mlflow_tracking_uri,
        "FEATURE_WINDOW_SIZE": "60",
        "MODEL_NAME": "dag-runs",
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__DAGS_FOLDER": str(PROJECT_ROOT / "dags"),
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home}/airflow.db",
        "AIRFLOW_CONN_SPARK_DEFAULT": json.dumps({"conn_type": "spark", "host": settings.spark_master}),
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
    }
    home.mkdir()
    with pytest.MonkeyPatch.context() as patch:
        for key, value in env.items():
            patch.setenv(key, value)
        subprocess.run([str(Path(sys.executable).with_name("airflow")), "db", "migrate"], check=True,
                       capture_output=True, timeout=300)
        from airflow import settings as airflow_settings

        # Airflow binds its metadata DB once per process; another test may have bound it already.
        airflow_settings.configure_vars()
        airflow_settings.reconfigure_orm()
        yield settings


@pytest.fixture(scope="module")
def dags(pipeline):
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(PROJECT_ROOT / "dags"))
    assert bag.import_errors == {}
    return bag.dags


def run(dags, dag_id: str, conf: dict | None = None, skip: str | None = None):
    """One ``dag.test()`` run (tasks matching ``skip`` are marked success without running);
    returns it with its task instances' states."""
    dag_run = dags[dag_id].test(run_conf=conf or {}, mark_success_pattern=skip)
    states = {ti.task_id: ti.state for ti in dag_run.get_task_instances()}
    return dag_run, states


def _delta_rows(settings, table: str, where: str | None = None) -> int:
    from deltalake import DeltaTable

    dataset = DeltaTable(str(settings.delta_table(table))).to_pyarrow_dataset()
    if where is None:
        return dataset.count_rows()
    import pyarrow.compute as pc

    return dataset.count_rows(filter=pc.field("date") == dt.date.fromisoformat(where))


def test_replay_validation_proves_the_day_equal(dags, pipeline):
    dag_run, states = run(dags, "replay_validation", ONE_DAY)
    assert dag_run.state == "success", states
    verdict = json.loads(((pipeline.data_dir / "reports") / "replay" / f"{DAY}_{DAY}.json").read_text())
    assert verdict["equal"] is True
    assert verdict["report"]["stream_rows"] == verdict["report"]["replay_rows"] == _delta_rows(pipeline, FEATURES) > 0


@contextlib.contextmanager
def features_replaced_by(settings, rows):
    """The features table holds ``rows`` instead of the stream's for a while, at the same path (the
    DAGs' Asset URIs name it), then the stream's again."""
    from volpipe.modeling.synthetic import write_features

    table = settings.delta_table(FEATURES)
    kept = table.with_name(f"{FEATURES}-of-the-stream")
    table.rename(kept)
    try:
        write_features(table, rows)
        yield
    finally:
        shutil.rmtree(table, ignore_errors=True)
        kept.rename(table)


def test_train_nightly_promotes_a_model_that_beats_persistence(dags, pipeline):
    from volpipe.modeling import registry

    with features_replaced_by(pipeline, skilled_rows(12_000)):
        dag_run, states = run(dags, "train_nightly", ONE_DAY)
    assert dag_run.state == "success" and set(states.values()) == {"success"}, states
    summary = dag_run.get_task_instance("train_and_register").xcom_pull(task_ids="train_and_register")
    champion = registry.champion(pipeline.mlflow_tracking_uri, "dag-runs")
    assert summary["decision"] == "promoted" and summary["gate"]["gain_ci"][0] > 0
    assert champion is not None and champion.version == summary["champion_version"]
    assert set(summary["models"]) == {"baseline", "logistic_regression", "hist_gradient_boosting"}
    announced = dag_run.get_task_instance("announce_champion").xcom_pull(task_ids="announce_champion")
    assert announced == {"model": "dag-runs", "champion_version": champion.version}


def test_train_nightly_that_finds_no_skill_fails_and_says_why(dags, pipeline):
    from volpipe.modeling import registry

    before = registry.champion(pipeline.mlflow_tracking_uri, "dag-runs")
    with features_replaced_by(pipeline, unpredictable_rows(12_000)):
        dag_run, states = run(dags, "train_nightly", ONE_DAY, skip="^evaluate_walk_forward$")
    assert dag_run.state == "failed", states
    assert states["train_and_register"] == "success" and states["announce_champion"] == "failed", states
    summary = dag_run.get_task_instance("train_and_register").xcom_pull(task_ids="train_and_register")
    assert summary["decision"] == "no_skill" and "no model beat the persistence baseline" in summary["reason"]
    assert dag_run.get_task_instance("announce_champion").try_number == 1  # a verdict: not retried
    assert registry.champion(pipeline.mlflow_tracking_uri, "dag-runs").version == before.version


def test_train_nightly_fails_at_once_on_a_day_without_data(dags):
    dag_run, states = run(dags, "train_nightly", {"start": "2025-06-01", "end": "2025-06-01"})
    assert dag_run.state == "failed" and states["train_and_register"] == "failed", states
    assert states["announce_champion"] == states["evaluate_walk_forward"] == "upstream_failed", states
    assert dag_run.get_task_instance("train_and_register").try_number == 1  # no retry brings rows


def test_batch_inference_scores_exactly_the_day(dags, pipeline):
    dag_run, states = run(dags, "batch_inference", ONE_DAY)
    assert dag_run.state == "success", states
    assert _delta_rows(pipeline, PREDICTIONS) == _delta_rows(pipeline, FEATURES, DAY)
    # Nothing left to score: the next run ends at its first task. (Explicit empty dates: dag.test()
    # keeps the previous run's conf in the DAG's params.)
    dag_run, states = run(dags, "batch_inference", {"start": None, "end": None})
    assert dag_run.state == "success" and states["score_features"] == "skipped", states


def test_monitoring_reports_land_as_html_and_json(dags, pipeline):
    dag_run, states = run(dags, "monitoring_reports", ONE_DAY)
    assert dag_run.state == "success", states
    folder = (pipeline.data_dir / "reports") / "evidently" / DAY
    assert {"data_drift.html", "data_drift.json", "verdict.json"} <= {path.name for path in folder.iterdir()}
    verdict = json.loads((folder / "verdict.json").read_text())
    assert 0 <= verdict["drift_share"] <= 1 and verdict["features"]


def test_delta_maintenance_compacts_and_keeps_every_row(dags, pipeline):
    from deltalake import DeltaTable

    before = {table: (_delta_rows(pipeline, table), len(DeltaTable(str(pipeline.delta_table(table))).file_uris()))
              for table in (TICKS, FEATURES)}
    dag_run, states = run(dags, "delta_maintenance", {"dry_run": False})
    assert dag_run.state == "success", states
    for table, (rows, files) in before.items():
        assert _delta_rows(pipeline, table) == rows
        assert len(DeltaTable(str(pipeline.delta_table(table))).file_uris()) < files, table


def test_replay_validation_fails_and_names_the_altered_row(dags, pipeline, spark):
    table = f"delta.`{pipeline.delta_table(FEATURES)}`"
    seq = spark.sql(f"SELECT max(ingest_seq) FROM {table}").first()[0]
    spark.sql(f"UPDATE {table} SET rolling_vol = rolling_vol * 2 WHERE ingest_seq = {seq}")
    # The replay of the first test stands (the NDJSON did not change): only the comparison runs.
    dag_run, states = run(dags, "replay_validation", ONE_DAY, skip="^replay_features$")
    assert dag_run.state == "failed" and states["compare_with_stream"] == "failed", states
    (compare,) = [ti for ti in dag_run.get_task_instances() if ti.task_id == "compare_with_stream"]
    assert compare.try_number == 1  # a verdict is final: no retry
    verdict = json.loads(((pipeline.data_dir / "reports") / "replay" / f"{DAY}_{DAY}.json").read_text())
    assert verdict["equal"] is False and verdict["report"]["differing"]["rolling_vol"] == 1
    assert [row["ingest_seq"] for row in verdict["report"]["examples"]] == [seq]
