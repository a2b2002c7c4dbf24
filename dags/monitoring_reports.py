"""
### Monitoring reports

Evidently reports that compare the champion's training window (its reference, found from the
model's MLflow run) with a recent window of `features` and `predictions` (default: the
`MONITORING_WINDOW_HOURS` before the run; or the days picked in the trigger form):

- **data drift** per feature, with the method chosen per feature (`docs/monitoring.md`);
- **data quality**: missing values, ranges, outliers;
- **prediction drift** of the champion's probabilities, and **classification quality**
  where the forward label of the window is known.

HTML and JSON land under `reports/evidently/<date>/` and as artifacts of an MLflow run in the
monitoring experiment. When the share of drifted features reaches `DRIFT_SHARE_THRESHOLD` the
run fails (`DRIFT_ACTION=fail`) or warns (`warn`), and with `DRIFT_TRIGGER_RETRAIN=true` it
starts `train_nightly` early. Logic: `volpipe.monitoring`.
"""

from __future__ import annotations

from pathlib import Path

from airflow.providers.standard.operators.trigger_dagrun import TriggerDagRunOperator
from airflow.sdk import dag, get_current_context, task

from volpipe.config import Settings
from volpipe.orchestration import (
    DEFAULT_ARGS, START_DATE, TAGS, date_params, model_asset, products_param, table_asset,
)
from volpipe.tables import FEATURES, PREDICTIONS

SETTINGS = Settings.from_env()


@dag(
    dag_id=Path(__file__).stem,
    description="Evidently drift, quality and prediction reports against the champion's training window",
    doc_md=__doc__,
    schedule="15 4 * * *",
    start_date=START_DATE,
    catchup=False,
    max_active_runs=1,
    tags=[*TAGS, "monitoring"],
    default_args=DEFAULT_ARGS,
    params={**date_params("to monitor", empty="the hours before the run"), **products_param()},
)
def monitoring_reports():
    @task(inlets=[table_asset(FEATURES, SETTINGS), table_asset(PREDICTIONS, SETTINGS), model_asset(SETTINGS)])
    def build_reports() -> dict:
        """Builds and logs the reports; fails or warns on drift as DRIFT_ACTION says."""
        from volpipe.monitoring.run import enforce, monitor_window

        context = get_current_context()
        params = context["params"]
        verdict = monitor_window(Settings.from_env(), params.get("start"), params.get("end"),
                                 context["dag_run"].run_after, products=tuple(params["products"] or ()) or None)
        print(verdict.summary())
        return enforce(verdict).to_dict()

    @task.short_circuit
    def retrain_requested(verdict: dict) -> bool:
        """Only with DRIFT_TRIGGER_RETRAIN and drift: the retrain below runs."""
        return bool(verdict["retrain_requested"])

    retrain = TriggerDagRunOperator(task_id="trigger_retrain", trigger_dag_id="train_nightly",
                                    wait_for_completion=False)
    retrain_requested(build_reports()) >> retrain


monitoring_reports()
