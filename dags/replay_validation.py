"""
### Replay validation

Proves that the stream's `features` equal a recomputation from the raw NDJSON files, bit for
bit, for a range of UTC days (default: yesterday).

1. **replay**: `spark-submit spark_jobs/replay.py` recomputes `features_replay` for the range.
2. **compare**: `spark-submit spark_jobs/compare.py` joins both tables on
   `(product_id, ingest_seq, ticker_idx)` and compares every value exactly.

Equal: the counts are in the task log and the verdict JSON under `reports/replay/`. Different:
the compare task fails at once, not retried (a difference is a finding, not a glitch), with a
summary (rows per side, rows on one side only, differing values per column, the first
differing rows) and the JSON verdict still lands. Trigger it from the UI
with *Trigger DAG w/ config* to pick the days. Logic: `spark_jobs.replay`, `spark_jobs.compare`.
"""

from __future__ import annotations

from pathlib import Path

from airflow.sdk import dag, get_current_context, task

from volpipe.orchestration import (
    DEFAULT_ARGS,
    START_DATE,
    TAGS,
    ComparisonOperator,
    PipelineSparkSubmitOperator,
    date_params,
    resolve_range,
    table_asset,
)
from volpipe.tables import FEATURES, FEATURES_REPLAY


@dag(
    dag_id=Path(__file__).stem,
    description="Recompute features from the NDJSON and prove them equal to the stream's",
    doc_md=__doc__,
    schedule="30 1 * * *",
    start_date=START_DATE,
    catchup=False,
    max_active_runs=1,
    tags=[*TAGS, "validation"],
    default_args=DEFAULT_ARGS,
    params=date_params("to validate"),
)
def replay_validation():
    @task
    def resolve_dates() -> dict[str, str]:
        """The range to validate and where its verdict goes."""
        from volpipe.config import Settings

        context = get_current_context()
        dates = resolve_range(context["params"], context["dag_run"].run_after)
        verdict = Settings.from_env().reports_dir / "replay" / f"{dates.start}_{dates.end}.json"
        return {"start": str(dates.start), "end": str(dates.end), "verdict": str(verdict)}

    dates = resolve_dates()
    args = [
        "--start",
        "{{ ti.xcom_pull(task_ids='resolve_dates')['start'] }}",
        "--end",
        "{{ ti.xcom_pull(task_ids='resolve_dates')['end'] }}",
    ]
    replay = PipelineSparkSubmitOperator(
        task_id="replay_features", job="replay", application_args=args, outlets=[table_asset(FEATURES_REPLAY)]
    )
    compare = ComparisonOperator(
        task_id="compare_with_stream",
        inlets=[table_asset(FEATURES), table_asset(FEATURES_REPLAY)],
        application_args=args,
        verdict="{{ ti.xcom_pull(task_ids='resolve_dates')['verdict'] }}",
    )
    dates >> replay >> compare


replay_validation()
