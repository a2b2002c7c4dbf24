"""
### Nightly training

Trains on the trailing `TRAIN_WINDOW_DAYS` days of `features` (or the days picked in the
trigger form): the persistence baseline, logistic regression and the boosted challenger, on
the honest forward-volatility label (`docs/modeling.md`). Everything is tracked in MLflow (a
parent run, a child run per model) and the best model is registered; the `champion` alias
moves only when it beats the current champion on the same validation rows.

1. **train_and_register**: the run's summary (test PR-AUC of each model against the baseline
   and the positive rate, promoted or not, the version) is in the task log and is the task's
   return value (XCom). With too few labelled rows the task is *skipped* and says why.
2. **evaluate_walk_forward**: expanding-window folds and a block-bootstrap 95% interval of each
   model's PR-AUC minus the baseline's, logged to MLflow: whether the model beats "volatility
   persists" by more than noise.

Logic: `volpipe.modeling.train`, `volpipe.modeling.evaluate`.
"""

from __future__ import annotations

from pathlib import Path

from airflow.sdk import dag, get_current_context, task

from volpipe.config import Settings
from volpipe.orchestration import (
    DEFAULT_ARGS, START_DATE, TAGS, date_params, model_asset, products_param, table_asset, trailing_range,
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
    params={**date_params("of training data", empty=f"the {SETTINGS.train_window_days} days before the run"),
            **products_param()},
)
def train_nightly():
    @task(inlets=[table_asset(FEATURES, SETTINGS)], outlets=[model_asset(SETTINGS)])
    def train_and_register() -> dict:
        """Trains, registers and maybe promotes; skipped when the data cannot train a model."""
        from airflow.sdk.exceptions import AirflowSkipException

        from volpipe.errors import TrainingDataError
        from volpipe.modeling import train

        context = get_current_context()
        settings = Settings.from_env()
        dates = trailing_range(context["params"], context["dag_run"].run_after, settings.train_window_days)
        start_ns, end_ns = dates.bounds_ns
        try:
            summary = train.run(settings, start_ns=start_ns, end_ns=end_ns, products=context["params"]["products"] or None)
        except TrainingDataError as exc:
            raise AirflowSkipException(f"not trained on {dates}: {exc}") from exc
        print(train.describe(summary))
        return summary

    @task
    def evaluate_walk_forward(summary: dict) -> dict:
        """Walk-forward folds on the same range: PR-AUC per fold and the gain over the baseline."""
        from volpipe.modeling import evaluate

        context = get_current_context()
        settings = Settings.from_env()
        dates = trailing_range(context["params"], context["dag_run"].run_after, settings.train_window_days)
        start_ns, end_ns = dates.bounds_ns
        result = evaluate.run(settings, start_ns=start_ns, end_ns=end_ns, products=context["params"]["products"] or None)
        print(result.table())
        return {"pooled": result.pooled, "gain": result.gain}

    evaluate_walk_forward(train_and_register())


train_nightly()
