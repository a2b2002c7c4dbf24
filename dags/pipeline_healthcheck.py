"""
### Pipeline health check

Checks that the services the pipeline runs on answer for real: a message makes a round trip
through Kafka, and the MLflow tracking server answers a query of its backend store.

Trigger it from the UI after `make up`, or let it run hourly. A failed task names the
service and the reason; `make status` shows what runs where. Logic: `volpipe.ops.health`.
"""

from __future__ import annotations

from pathlib import Path

from airflow.sdk import dag, task

from volpipe.orchestration import DEFAULT_ARGS, START_DATE, TAGS


@dag(
    dag_id=Path(__file__).stem,
    description="Kafka and MLflow answer for real",
    doc_md=__doc__,
    schedule="@hourly",
    start_date=START_DATE,
    catchup=False,
    max_active_runs=1,
    tags=[*TAGS, "ops"],
    default_args=DEFAULT_ARGS,
)
def pipeline_healthcheck():
    @task
    def check_kafka() -> dict:
        from volpipe.config import Settings
        from volpipe.ops import health

        return health.check_kafka(Settings.from_env())

    @task
    def check_mlflow() -> dict:
        from volpipe.config import Settings
        from volpipe.ops import health

        return health.check_mlflow(Settings.from_env())

    check_kafka()
    check_mlflow()


pipeline_healthcheck()
