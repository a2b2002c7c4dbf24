"""What the DAG files share: default arguments, the trigger form's Params, the Assets of the
tables and the registered model, the spark-submit operator that carries the project's Spark
settings, and how a finding (a replay that differs, drift) fails a task without a retry.

Imported while Airflow parses ``dags/``: only Airflow and the standard library at top level,
no I/O. Settings are read from the environment (no file, no network); the Spark settings,
which list the jar folder, only when a task runs.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from airflow.providers.apache.spark.operators.spark_submit import SparkSubmitOperator
from airflow.sdk import Asset, Param

from volpipe.config import PROJECT_ROOT, Settings
from volpipe.dates import DateRange, parse_range
from volpipe.tables import FEATURES, FEATURES_REPLAY, PREDICTIONS, QUARANTINE, TICKS

START_DATE = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
DEFAULT_ARGS: dict[str, Any] = {
    "owner": "volpipe",
    "retries": 2,
    "retry_delay": dt.timedelta(seconds=30),
    "retry_exponential_backoff": True,
    "max_retry_delay": dt.timedelta(minutes=10),
}
TAGS = ["volpipe"]


def date_params(what: str, empty: str = "yesterday, UTC") -> dict[str, Param]:
    """The trigger form's date range; ``empty`` says what the DAG does without one."""
    return {
        "start": Param(
            None,
            type=["null", "string"],
            format="date",
            title="First UTC date",
            description=f"First day {what} (YYYY-MM-DD); empty = {empty}.",
        ),
        "end": Param(
            None,
            type=["null", "string"],
            format="date",
            title="Last UTC date",
            description="Last day, included (YYYY-MM-DD); empty = the first day.",
        ),
    }


def products_param() -> dict[str, Param]:
    """The trigger form's product filter: empty means every product."""
    # null allowed: else the UI marks the field required, though empty means every product
    return {
        "products": Param(
            [],
            type=["null", "array"],
            items={"type": "string"},
            title="Products",
            description="Product ids, one per line (e.g. BTC-USD); empty = all.",
        )
    }


def resolve_range(params: dict[str, Any], run_after: dt.datetime | None) -> DateRange:
    """The run's date range: the Params, or the day before the run (a nightly run covers yesterday)."""
    if params.get("start"):
        return parse_range(params["start"], params.get("end"))
    day = (run_after or dt.datetime.now(dt.UTC)).astimezone(dt.UTC).date() - dt.timedelta(days=1)
    return DateRange(day, day)


def trailing_range(params: dict[str, Any], run_after: dt.datetime | None, days: int) -> DateRange:
    """The Params' range, or the ``days`` days before the run's (a nightly run trains on the last week)."""
    if params.get("start"):
        return parse_range(params["start"], params.get("end"))
    end = resolve_range({}, run_after).end
    return DateRange(end - dt.timedelta(days=days - 1), end)


def table_asset(name: str, settings: Settings | None = None) -> Asset:
    """The Asset of Delta table ``name`` (its URI is the table's folder)."""
    settings = settings or Settings.from_env()
    return Asset(name=f"volpipe.{name}", uri=settings.delta_table(name).as_uri(), group="delta")


def model_asset(settings: Settings | None = None) -> Asset:
    """The Asset of the registered model (a new version or a moved ``champion`` alias)."""
    settings = settings or Settings.from_env()
    host = settings.mlflow_tracking_uri.split("://", 1)[1].rstrip("/")
    return Asset(name="volpipe.model", uri=f"mlflow://{host}/models/{settings.model_name}", group="model")


ASSET_TABLES = (TICKS, FEATURES, QUARANTINE, FEATURES_REPLAY, PREDICTIONS)


class PipelineSparkSubmitOperator(SparkSubmitOperator):
    """``spark-submit spark_jobs/<job>.py`` with the project's Spark settings (``volpipe.spark``).

    The master comes from the ``spark_default`` connection the project defines (SPARK_MASTER),
    the jars and every other setting from ``volpipe.spark.spark_conf``, read when the task
    runs; spark-submit's output, the Spark driver's log included, goes to the task log.
    """

    def __init__(self, *, job: str, **kwargs: Any) -> None:
        super().__init__(application=str(PROJECT_ROOT / "spark_jobs" / f"{job}.py"), name=f"volpipe-{job}", **kwargs)

    def execute(self, context: Any) -> None:
        from volpipe.spark import spark_conf

        self.conf = {**spark_conf(Settings.from_env()), **(self.conf or {})}
        return super().execute(context)


class ComparisonOperator(PipelineSparkSubmitOperator):
    """``spark_jobs/compare.py`` with a verdict file: a DIFFERENT verdict fails the task at once.

    A difference is a finding, not a transient error: retrying it (twice, with backoff) only
    delays the failure by minutes. Any other failure (no verdict written, or one naming an
    error, e.g. a missing table) is retried as usual. The verdict of an earlier run of the same
    range is removed first, so it cannot be mistaken for this run's.
    """

    def __init__(self, *, verdict: str, application_args: list[str], **kwargs: Any) -> None:
        super().__init__(job="compare", application_args=[*application_args, "--verdict", verdict], **kwargs)

    def execute(self, context: Any) -> None:
        import json
        from pathlib import Path

        from airflow.exceptions import AirflowException, AirflowFailException

        args = self.application_args or []
        verdict_path = Path(args[args.index("--verdict") + 1])
        verdict_path.unlink(missing_ok=True)
        try:
            return super().execute(context)
        except AirflowException as exc:
            verdict = json.loads(verdict_path.read_text()) if verdict_path.exists() else None
            if verdict is not None and verdict["error"] is None and not verdict["equal"]:
                raise AirflowFailException(
                    f"replay differs from the stream, not retried: {verdict['summary']} (verdict: {verdict_path})"
                ) from exc
            raise


def enforce_drift(verdict: dict[str, Any]) -> None:
    """Acts on a monitoring verdict (``Verdict.to_dict``) as DRIFT_ACTION says, once its reports
    are written and its retrain triggered: warns, or fails the task at once.

    Drift is a finding about the market, not a transient error: a retry would compute the same
    reports again and only delay the failure, so it raises ``AirflowFailException`` (no retry).

    Raises:
        AirflowFailException: Drift reached DRIFT_SHARE_THRESHOLD and DRIFT_ACTION is ``fail``.
    """
    from airflow.sdk.exceptions import AirflowFailException

    from volpipe.errors import DriftDetected
    from volpipe.monitoring.run import Verdict, enforce

    try:
        enforce(Verdict.from_dict(verdict))
    except DriftDetected as exc:
        retrain = verdict["retrain_window"]
        asked = f"retrain triggered on {retrain['start']}..{retrain['end']}" if retrain else "no retrain asked"
        raise AirflowFailException(f"{exc} ({asked}; a finding: not retried)") from exc
