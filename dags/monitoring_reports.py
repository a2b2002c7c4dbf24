"""
### Monitoring reports

Evidently reports that compare the champion's training window (its reference, found from the
model's MLflow run) with a recent window of `features`, `predictions` and `predictions_live`
(default: the `MONITORING_WINDOW_HOURS` before the run; or the days picked in the trigger form):

- **data drift** per feature, with the method chosen per feature (`docs/monitoring.md`);
- **data quality**: missing values, ranges, outliers;
- **prediction drift** and **classification quality** of the champion version's own rows, in
  the batch and the live predictions (the verdict says which versions the window holds).

HTML and JSON land under `reports/evidently/<date>/` and as artifacts of an MLflow run in the
monitoring experiment.

1. **build_reports** writes and logs the reports; the verdict is its return value.
2. **pick_retrain_window**: with `DRIFT_TRIGGER_RETRAIN=true` and drift (the share of drifted
   features reaches `DRIFT_SHARE_THRESHOLD`), the days of the drifted window; else the trigger
   is skipped.
3. **trigger_retrain** starts `train_nightly` with those days (`start`, `end`, `products`) as
   its conf: it trains on the drifted period.
4. **enforce_drift** runs last: on drift it fails at once, without retries (`DRIFT_ACTION=fail`),
   or warns (`warn`).

Logic: `volpipe.monitoring`.
"""

from __future__ import annotations

from pathlib import Path

from airflow.providers.standard.operators.trigger_dagrun import TriggerDagRunOperator
from airflow.sdk import dag, get_current_context, task

from volpipe.config import Settings
from volpipe.orchestration import (
    DEFAULT_ARGS,
    START_DATE,
    TAGS,
    date_params,
    model_asset,
    products_param,
    table_asset,
)
from volpipe.tables import FEATURES, PREDICTIONS, PREDICTIONS_LIVE

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
    @task(
        inlets=[table_asset(name, SETTINGS) for name in (FEATURES, PREDICTIONS, PREDICTIONS_LIVE)]
        + [model_asset(SETTINGS)]
    )
    def build_reports() -> dict:
        """Builds and logs the reports; returns the verdict (acted on last, by enforce_drift)."""
        from volpipe.monitoring.run import monitor_window

        context = get_current_context()
        params = context["params"]
        verdict = monitor_window(
            Settings.from_env(),
            params.get("start"),
            params.get("end"),
            context["dag_run"].run_after,
            products=tuple(params["products"] or ()) or None,
        )
        print(verdict.summary())
        return verdict.to_dict()

    @task.short_circuit(ignore_downstream_trigger_rules=False)
    def pick_retrain_window(verdict: dict) -> dict | None:
        """The drifted days as train_nightly's conf; None (the trigger is skipped) without drift or
        DRIFT_TRIGGER_RETRAIN."""
        return verdict["retrain_window"]

    @task(trigger_rule="none_failed")
    def enforce_drift(verdict: dict) -> None:
        """Fails at once on drift with DRIFT_ACTION=fail (a finding: no retry), else warns."""
        from volpipe import orchestration

        orchestration.enforce_drift(verdict)

    verdict = build_reports()
    retrain = TriggerDagRunOperator(
        task_id="trigger_retrain",
        trigger_dag_id="train_nightly",
        conf=pick_retrain_window(verdict),
        # Named after this run, so a re-run of the task finds the retrain it already started.
        trigger_run_id="drift_retrain__{{ run_id }}",
        skip_when_already_exists=True,
        wait_for_completion=False,
        note="Triggered by monitoring_reports on drift: trains on the drifted days (see the run's conf).",
    )
    retrain >> enforce_drift(verdict)


monitoring_reports()
