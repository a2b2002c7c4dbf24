"""The learning loop end to end, with real Kafka, Spark, Delta, MLflow and Airflow: a market whose
regime shifts -> ``monitoring_reports`` finds drift -> ``train_nightly`` is triggered on the
drifted days -> a new version beats the old champion on the new rows and is promoted -> the
running stream swaps to it, and its live predictions carry the new version.

The market (``regime_shift.py``) changes what announces a volatility burst: a widening spread
in the old regime, quickening ticks in the new one, where a wide spread follows a burst instead.
Its volatility also doubles, which is what the drift reports see. The old champion learned
"wide spread, burst ahead", so on the new rows it ranks the calm after each burst first: it
loses, and no retrain on the old days could change that.

The DAGs run with ``dag.test()`` on a real metadata DB, as in ``tests/dags/test_dag_runs.py``;
the scheduler's part, starting the run the trigger queued, is played by running that DAG with
the conf the queued run holds.
"""

from __future__ import annotations

import dataclasses
import uuid

import numpy as np
import pytest

from spark_jobs import features_stream
from spark_jobs.live_scoring import LiveScoring
from tests.dags.airflow_helpers import airflow_environment, find_run, load_dags, run
from tests.integration.regime_shift import RegimeMarket
from tests.spark.pipeline_helpers import pipeline_settings, produce
from volpipe.dates import parse_range
from volpipe.modeling import registry
from volpipe.ops.harness import wait_until
from volpipe.tables import FEATURES, PREDICTIONS_LIVE

pytestmark = [pytest.mark.integration, pytest.mark.spark]

OLD_DAY, NEW_DAY = "2026-01-01", "2026-01-02"
TICKS_PER_DAY = 5000
TICKS_AFTER_SWAP = 500
# The loop, not the label, is under test: the label is pinned (relative: a burst ahead, against
# the trailing 300-tick volatility), with a horizon that suits bursts of 6-10 ticks.
ENV = {
    "LABEL_MODE": "relative",
    "LABEL_HORIZON": "10",
    "LABEL_RELATIVE_K": "1.5",
    "LABEL_RELATIVE_COLUMN": "vol_300t",
    "TRAIN_MIN_ROWS": "1000",
    "WALK_FORWARD_FOLDS": "3",
    "BOOTSTRAP_SAMPLES": "200",
    "DRIFT_ACTION": "fail",
    "DRIFT_TRIGGER_RETRAIN": "true",
}


def champion_version(settings) -> str | None:
    found = registry.champion(settings.mlflow_tracking_uri, settings.model_name)
    return None if found is None else str(found.version)


def held_out_pr_auc(settings, version: str, rows, y) -> float:
    """PR-AUC of registered ``version`` on ``rows``, scored as batch and live scoring do."""
    from volpipe.modeling.models import pr_auc, probabilities

    model = registry.scoring_model(settings.mlflow_tracking_uri, settings.model_name, version)
    estimator = registry.load_estimator(settings.mlflow_tracking_uri, model)
    return pr_auc(y, probabilities(estimator, rows[list(model.columns)]))


def test_drift_retrains_on_the_drifted_days_promotes_the_winner_and_the_stream_swaps(
    spark, kafka_broker, mlflow_server, tmp_path
):
    from volpipe.modeling import label as L
    from volpipe.modeling.dataset import logged_label, read_window
    from volpipe.modeling.models import pr_auc

    settings = dataclasses.replace(
        pipeline_settings(kafka_broker, tmp_path / "data", window=10),
        mlflow_tracking_uri=mlflow_server.mlflow_tracking_uri,
        model_name=f"drift-loop-{uuid.uuid4().hex[:8]}",
        model_refresh_seconds=1.0,
    )
    market = RegimeMarket(seed=1)
    old = market.records(TICKS_PER_DAY, parse_range(OLD_DAY).bounds_ns[0], "spread", start_seq=0)
    new = market.records(
        TICKS_PER_DAY + TICKS_AFTER_SWAP, parse_range(NEW_DAY).bounds_ns[0], "pace", start_seq=TICKS_PER_DAY
    )
    scoring = LiveScoring(spark, settings)
    scoring.start()
    query = features_stream.start(spark, settings, scoring=scoring)
    try:
        with airflow_environment(settings, tmp_path / "airflow", MODEL_NAME=settings.model_name, **ENV):
            dags = load_dags()
            produce(settings, old)
            query.processAllAvailable()
            # The old regime's champion: trained, beats persistence, promoted; the stream picks it up.
            trained, states = run(dags, "train_nightly", {"start": OLD_DAY, "end": OLD_DAY})
            assert trained.state == "success", states
            old_champion = champion_version(settings)
            assert old_champion is not None
            wait_until(
                lambda: scoring.model is not None and scoring.model.version == old_champion,
                120,
                "the stream to score with the first champion",
            )

            # The regime shifts; the stream scores the new rows with the old champion.
            produce(settings, new[:TICKS_PER_DAY])
            query.processAllAvailable()
            monitored, states = run(dags, "monitoring_reports", {"start": NEW_DAY, "end": NEW_DAY})
            assert monitored.state == "failed" and states["trigger_retrain"] == "success", states
            assert states["enforce_drift"] == "failed" and states["build_reports"] == "success", states
            verdict = monitored.get_task_instance("build_reports").xcom_pull(task_ids="build_reports")
            assert verdict["drift_detected"] and verdict["model_version"] == old_champion
            assert {"midprice_return", "rolling_vol"} <= {f["column"] for f in verdict["features"] if f["drifted"]}
            live = verdict["predictions"][PREDICTIONS_LIVE]
            assert live["model_version"] == old_champion and live["rows"] == TICKS_PER_DAY, live
            assert live["classification"]["rows"] > 0  # the old champion judged on the new rows, by its own label
            queued = find_run("train_nightly", f"drift_retrain__{monitored.run_id}")
            assert queued is not None and queued["conf"] == {
                "start": NEW_DAY,
                "end": NEW_DAY,
                "products": ["BTC-USD"],
            }, queued

            # The scheduler starts the queued retrain: the same DAG with the conf it holds.
            retrained, states = run(dags, "train_nightly", queued["conf"])
            assert retrained.state == "success", states
            new_champion = champion_version(settings)
            assert new_champion not in (None, old_champion)

            # Trained on the drifted day; on the new day's held-out rows, the old champion lost.
            run_id = registry.resolve(settings.mlflow_tracking_uri, settings.model_name, new_champion).run_id
            params = registry.client(settings.mlflow_tracking_uri).get_run(run_id).data.params
            start_ns, end_ns = parse_range(NEW_DAY).bounds_ns
            assert start_ns <= int(params["train_start_ns"]) < int(params["train_end_ns"]) <= end_ns
            rows = read_window(settings.delta_table(FEATURES), None, int(params["val_start_ns"]), end_ns).frame
            y = L.labels_as_trained(rows, *logged_label(settings, run_id))
            rows, y = rows[np.isfinite(y)], y[np.isfinite(y)]
            old_score = held_out_pr_auc(settings, old_champion, rows, y)
            new_score = held_out_pr_auc(settings, new_champion, rows, y)
            persistence = pr_auc(y, rows["rolling_vol"].to_numpy())
            assert new_score > persistence + 0.2 and new_score > old_score + 0.3, (new_score, old_score, persistence)

            # The running stream swaps by itself; the next rows carry the new version.
            wait_until(lambda: scoring.model.version == new_champion, 120, "the stream to swap to the new champion")
            produce(settings, new[TICKS_PER_DAY:])
            query.processAllAvailable()
            assert query.isActive and query.exception() is None  # never restarted
    finally:
        query.stop()
        scoring.stop()

    predictions = read_window(settings.delta_table(PREDICTIONS_LIVE), ["model_version"]).frame
    before_swap = predictions["ingest_seq"] < 2 * TICKS_PER_DAY
    assert set(predictions.loc[before_swap, "model_version"]) == {old_champion}
    assert before_swap.sum() == TICKS_PER_DAY  # every new-regime row scored once, none of the old regime's
    assert set(predictions.loc[~before_swap, "model_version"]) == {new_champion}
    assert (~before_swap).sum() == TICKS_AFTER_SWAP
