"""Every DAG runs with ``dag.test()`` against a real metadata DB, real Spark (``spark-submit``),
real Delta and a real MLflow server, on a pipeline the test feeds: synthetic ticks through the
stream into Delta, and the same records as the ingestor's daily NDJSON files.

The runs share one dataset and go in the order a day of the pipeline goes: replay validation,
training, batch inference, monitoring (of a day built like the training rows, quiet; of a day
built to drift, which triggers a retrain and fails), maintenance; last, a replay validation that must fail
once a value of the stream's table is altered.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import json
import shutil

import pytest

from tests.dags.airflow_helpers import airflow_environment, find_run, load_dags, run
from tests.model.skill import skilled_rows, unpredictable_rows
from tests.spark.pipeline_helpers import pipeline_settings, stream_everything, write_raw_files
from volpipe.dates import NS_PER_DAY
from volpipe.market import DEFAULT_START_NS, synthetic_raw_records
from volpipe.tables import FEATURES, PREDICTIONS, PREDICTIONS_LIVE, TICKS

pytestmark = [pytest.mark.integration, pytest.mark.spark]

DAY = "2026-01-01"  # the synthetic market starts at 2026-01-01T00:00Z
ONE_DAY = {"start": DAY, "end": DAY}


@pytest.fixture(scope="module")
def pipeline(spark, kafka_broker, mlflow_server, tmp_path_factory):
    """The stream's tables and the raw files of 8,000 ticks, and the environment the DAGs read."""
    root = tmp_path_factory.mktemp("dag-runs")
    # Several micro-batches, as a running stream makes: small files for the maintenance DAG to compact.
    settings = dataclasses.replace(
        pipeline_settings(kafka_broker, root / "data", window=60),
        mlflow_tracking_uri=mlflow_server.mlflow_tracking_uri,
        stream_max_offsets_per_trigger=2000,
    )
    records = list(synthetic_raw_records(8000, ("BTC-USD", "ETH-USD"), seed=9, start_ns=DEFAULT_START_NS + 60 * 10**9))
    write_raw_files(settings, records)
    stream_everything(spark, settings, records)
    with airflow_environment(settings, root / "airflow", MODEL_NAME="dag-runs"):
        yield settings


@pytest.fixture(scope="module")
def dags(pipeline):
    return load_dags()


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


def _reports(pipeline, day: str) -> tuple[dict, dict[str, str]]:
    """A monitoring run's verdict.json, and the status of each column's test in its data_drift.json."""
    folder = (pipeline.data_dir / "reports") / "evidently" / day
    report = json.loads((folder / "data_drift.json").read_text())
    status = {
        t["metric_config"]["params"]["column"]: t["status"]
        for t in report["tests"]
        if t["metric_config"]["params"].get("type") == "evidently:metric_v2:ValueDrift"
    }
    return json.loads((folder / "verdict.json").read_text()), status


# Every return and volatility feature: what a volatility regime change moves.
MOVED = ("midprice_return", "rolling_vol", "vol_300t", "ret_mean_30t", "abs_ret_mean_60t")


def _add_day(pipeline, days_later: int, scale: float) -> str:
    """Writes a day built from the champion's training rows (a seeded half of them, ``days_later``
    days on, the ``MOVED`` columns times ``scale``) into ``features``; returns its date."""
    from volpipe.modeling import registry
    from volpipe.modeling.dataset import read_window
    from volpipe.modeling.synthetic import write_features
    from volpipe.tables import FEATURE_TABLE_COLUMNS

    champion = registry.champion(pipeline.mlflow_tracking_uri, "dag-runs")
    params = registry.client(pipeline.mlflow_tracking_uri).get_run(champion.run_id).data.params
    rows = (
        read_window(
            pipeline.delta_table(FEATURES),
            FEATURE_TABLE_COLUMNS,
            int(params["train_start_ns"]),
            int(params["train_end_ns"]),
        )
        .frame.sample(frac=0.5, random_state=days_later)
        .sort_index()
    )
    later = {column: rows[column] + days_later * NS_PER_DAY for column in ("exchange_ts_ns", "recv_ns", "produced_ns")}
    day = rows.assign(
        **later,
        ingest_seq=rows["ingest_seq"] + days_later * 10**7,
        **{column: rows[column] * scale for column in MOVED},
    )
    write_features(pipeline.delta_table(FEATURES), day[list(FEATURE_TABLE_COLUMNS)])
    return (dt.date.fromisoformat(DAY) + dt.timedelta(days=days_later)).isoformat()


def test_monitoring_finds_a_window_like_the_training_rows_quiet(dags, pipeline):
    day = _add_day(pipeline, days_later=2, scale=1.0)
    dag_run, states = run(dags, "monitoring_reports", {"start": day, "end": day})
    assert dag_run.state == "success", states
    assert states["trigger_retrain"] == "skipped" and states["enforce_drift"] == "success", states
    verdict, status = _reports(pipeline, day)
    assert not verdict["drift_detected"] and verdict["drifted_count"] == 0 and verdict["retrain_window"] is None
    assert status == {f["column"]: "SUCCESS" for f in verdict["features"]}  # the file says what the verdict says
    # Nothing scored that day, in batch or live: said, not compared with another version's rows.
    assert verdict["predictions"][PREDICTIONS]["skipped"] == "no predictions of version 1 in the window"
    assert verdict["predictions"][PREDICTIONS_LIVE]["rows"] == 0


def test_drift_writes_the_reports_triggers_the_retrain_on_the_drifted_days_then_fails_once(dags, pipeline, monkeypatch):
    day = _add_day(pipeline, days_later=1, scale=2.0)
    monkeypatch.setenv("DRIFT_ACTION", "fail")
    monkeypatch.setenv("DRIFT_TRIGGER_RETRAIN", "true")

    dag_run, states = run(dags, "monitoring_reports", {"start": day, "end": day})

    assert dag_run.state == "failed", states
    assert states == {
        "build_reports": "success",
        "pick_retrain_window": "success",
        "trigger_retrain": "success",
        "enforce_drift": "failed",
    }
    (enforce,) = [ti for ti in dag_run.get_task_instances() if ti.task_id == "enforce_drift"]
    assert enforce.try_number == 1  # a finding: not retried
    verdict, status = _reports(pipeline, day)
    tested = {f["column"] for f in verdict["features"]}  # the champion's own feature columns
    assert verdict["drift_detected"] and "rolling_vol" in tested
    assert {f["column"] for f in verdict["features"] if f["drifted"]} == tested & set(MOVED)
    assert status == {f["column"]: "FAIL" if f["drifted"] else "SUCCESS" for f in verdict["features"]}
    window = {"start": day, "end": day, "products": ["BTC-USD", "ETH-USD"]}
    assert verdict["retrain_window"] == window
    retrain = find_run("train_nightly", f"drift_retrain__{dag_run.run_id}")
    assert retrain is not None and retrain["conf"] == window and retrain["state"] == "queued", retrain
    assert "drift" in retrain["note"]


def test_delta_maintenance_compacts_and_keeps_every_row(dags, pipeline):
    from deltalake import DeltaTable

    before = {
        table: (_delta_rows(pipeline, table), len(DeltaTable(str(pipeline.delta_table(table))).file_uris()))
        for table in (TICKS, FEATURES)
    }
    dag_run, states = run(dags, "delta_maintenance", {"dry_run": False})
    assert dag_run.state == "success", states
    for table, (rows, files) in before.items():
        assert _delta_rows(pipeline, table) == rows
        assert len(DeltaTable(str(pipeline.delta_table(table))).file_uris()) < files, table


def test_replay_validation_fails_and_names_the_altered_row(dags, pipeline, spark):
    table = f"delta.`{pipeline.delta_table(FEATURES)}`"
    seq = spark.sql(f"SELECT max(ingest_seq) FROM {table} WHERE date = DATE'{DAY}'").first()[0]
    spark.sql(f"UPDATE {table} SET rolling_vol = rolling_vol * 2 WHERE ingest_seq = {seq}")
    # The replay of the first test stands (the NDJSON did not change): only the comparison runs.
    dag_run, states = run(dags, "replay_validation", ONE_DAY, skip="^replay_features$")
    assert dag_run.state == "failed" and states["compare_with_stream"] == "failed", states
    (compare,) = [ti for ti in dag_run.get_task_instances() if ti.task_id == "compare_with_stream"]
    assert compare.try_number == 1  # a verdict is final: no retry
    verdict = json.loads(((pipeline.data_dir / "reports") / "replay" / f"{DAY}_{DAY}.json").read_text())
    assert verdict["equal"] is False and verdict["report"]["differing"]["rolling_vol"] == 1
    assert [row["ingest_seq"] for row in verdict["report"]["examples"]] == [seq]
