"""
### Nightly training

Trains on the trailing `TRAIN_WINDOW_DAYS` days of `features` (or the days picked in the
trigger form): the persistence baseline, logistic regression and the boosted challenger, on
the configured label (`docs/modeling.md`). Everything is tracked in MLflow (a parent run, a
child run per model) and the better learned model on validation is registered with the
promotion gate's verdict. The `champion` alias moves only when that model beats the
persistence baseline beyond noise (a 95% block-bootstrap interval of its PR-AUC gain above 0,
on the held-out test split) and the current champion on the same rows.

1. **train_and_register**: the run's summary (each model's test PR-AUC beside the baseline's
   and the positive rate, the decision and why, the gain and its interval, the version) is in
   the task log and is the task's return value (XCom). With no rows in the window, too few
   labelled rows or a split with one class it trains nothing and **fails** at once (no retry),
   saying why.
2. **announce_champion**: succeeds when the champion moved (its `volpipe.model` Asset event
   starts batch inference); *skipped* when a better champion was kept; **fails** (no retry)
   when no model beat the persistence baseline, so such a night is never a plain green run.
3. **evaluate_walk_forward**: expanding-window folds and a block-bootstrap 95% interval of each
   model's PR-AUC minus the baseline's, logged to MLflow: a report, it decides nothing.

Logic: `volpipe.modeling.train`, `volpipe.modeling.evaluate`.
"""

from __future__ import annotations

from pathlib import Path

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
    trailing_range,
)
from volpipe.tables import FEATURES

SETTINGS = Settings.from_env()


@dag(
    dag_id=Path(__file__).stem,
    description="Train baseline, logistic regression and the challenger; register; promote the winner",
    doc_md=__doc__,
    schedule=SETTINGS.train_schedule,
    start_date=START_DATE,
    catchup=False,
    max_active_runs=1,
    tags=[*TAGS, "modeling"],
    default_args=DEFAULT_ARGS,
    params={
        **date_params("of training data", empty=f"the {SETTINGS.train_window_days} days before the run"),
        **products_param(),
    },
)
def train_nightly():
    @task(inlets=[table_asset(FEATURES, SETTINGS)])
    def train_and_register() -> dict:
        """Trains, registers the candidate with its verdict; fails, not retried, when nothing can be trained."""
        from airflow.sdk.exceptions import AirflowFailException

        from volpipe.errors import TrainingDataError
        from volpipe.modeling import train

        context = get_current_context()
        settings = Settings.from_env()
        dates = trailing_range(context["params"], context["dag_run"].run_after, settings.train_window_days)
        start_ns, end_ns = dates.bounds_ns
        try:
            summary = train.run(
                settings, start_ns=start_ns, end_ns=end_ns, products=context["params"]["products"] or None
            )
        except TrainingDataError as exc:  # more tries bring no more rows
            raise AirflowFailException(f"trained nothing on {dates}: {exc}") from exc
        print(train.describe(summary))
        return summary

    @task(outlets=[model_asset(SETTINGS)])
    def announce_champion(summary: dict) -> dict:
        """The promotion's verdict as the run's state: a new champion (Asset event), kept, or none."""
        from airflow.sdk.exceptions import AirflowFailException, AirflowSkipException

        if summary["promoted"]:
            return {"model": summary["model_name"], "champion_version": summary["champion_version"]}
        if summary["decision"] == "kept_champion":
            raise AirflowSkipException(summary["reason"])
        raise AirflowFailException(summary["reason"])

    @task
    def evaluate_walk_forward(summary: dict) -> dict:
        """Walk-forward folds on the same range: PR-AUC per fold and the gain over the baseline."""
        from volpipe.modeling import evaluate

        context = get_current_context()
        settings = Settings.from_env()
        dates = trailing_range(context["params"], context["dag_run"].run_after, settings.train_window_days)
        start_ns, end_ns = dates.bounds_ns
        result = evaluate.run(
            settings, start_ns=start_ns, end_ns=end_ns, products=context["params"]["products"] or None
        )
        print(result.table())
        return {"pooled": result.pooled, "gain": result.gain}

    summary = train_and_register()
    announce_champion(summary)
    evaluate_walk_forward(summary)


train_nightly()
