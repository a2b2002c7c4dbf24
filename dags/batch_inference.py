"""
### Batch inference

Scores feature rows with the registered `champion` (or a version picked in the trigger form)
into the Delta table `predictions`: product, ordering keys, exchange time, probability,
predicted label, decision threshold, model name, version and run id, label mode.

Runs every hour, when new feature rows land (the `volpipe.features` Asset) and when a new
model is registered (`volpipe.model`). Without dates it scores what is not scored yet: from the
day of the newest prediction to the day of the newest feature row. With dates it (re)scores
those days. A re-run replaces its days, never duplicates them. Logic:
`spark_jobs.batch_inference` (through `spark-submit`).
"""

from __future__ import annotations

from pathlib import Path

from airflow.sdk import Param, dag, get_current_context, task
from airflow.timetables.assets import AssetOrTimeSchedule
from airflow.timetables.trigger import CronTriggerTimetable

from volpipe.config import Settings
from volpipe.orchestration import (
    DEFAULT_ARGS,
    START_DATE,
    TAGS,
    PipelineSparkSubmitOperator,
    date_params,
    model_asset,
    table_asset,
)
from volpipe.tables import FEATURES, PREDICTIONS

SETTINGS = Settings.from_env()


@dag(
    dag_id=Path(__file__).stem,
    description="Score feature rows with the champion into Delta predictions",
    doc_md=__doc__,
    schedule=AssetOrTimeSchedule(
        timetable=CronTriggerTimetable("0 * * * *", timezone="UTC"),
        # Typed with the scheduler's serialized assets, but takes the SDK's too.
        assets=table_asset(FEATURES, SETTINGS) | model_asset(SETTINGS),  # type: ignore[arg-type]
    ),
    start_date=START_DATE,
    catchup=False,
    max_active_runs=1,
    tags=[*TAGS, "modeling"],
    default_args=DEFAULT_ARGS,
    params={
        **date_params("to score", empty="what is not scored yet"),
        "model_version": Param(
            None,
            type=["null", "integer"],
            title="Model version",
            description="A registered version; empty = @champion.",
        ),
    },
)
def batch_inference():
    @task.short_circuit
    def find_rows_to_score() -> dict | None:
        """The days to score; nothing to do (the run ends here) when every row is scored."""
        from volpipe.modeling.dataset import days_to_score

        params = get_current_context()["params"]
        dates = days_to_score(Settings.from_env(), params.get("start"), params.get("end"))
        return {"start": str(dates.start), "end": str(dates.end)} if dates else None

    score = PipelineSparkSubmitOperator(
        task_id="score_features",
        job="batch_inference",
        application_args=[
            "--start",
            "{{ ti.xcom_pull(task_ids='find_rows_to_score')['start'] }}",
            "--end",
            "{{ ti.xcom_pull(task_ids='find_rows_to_score')['end'] }}",
            "--model-version",
            "{{ params.model_version or '' }}",
        ],
        inlets=[table_asset(FEATURES, SETTINGS), model_asset(SETTINGS)],
        outlets=[table_asset(PREDICTIONS, SETTINGS)],
    )
    find_rows_to_score() >> score


batch_inference()
