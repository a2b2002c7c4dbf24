"""Batch inference: ``features`` for a date range -> a registered model -> Delta ``predictions``.

Inputs: ``features`` rows whose ``exchange_ts_ns`` falls in [start 00:00 UTC, end + 1 day),
and ``MODEL_NAME`` at ``@champion`` or ``--model-version``. Output: ``predictions`` rows
(``volpipe.tables.PREDICTION_COLUMNS``, partitioned by ``date`` like every table) for those
days, replaced idempotently (``replaceWhere`` on the days' partitions): a re-run leaves one copy. When
the range's rows can be labelled (the model's label mode and tau, complete horizons), the
realised metrics go to MLflow as an evaluation run. Run as a module or with spark-submit::

    .venv/bin/python -m spark_jobs.batch_inference --start 2026-01-01 --end 2026-01-01
    source .venv/bin/activate && spark-submit $(python -m volpipe.spark submit-args) \\
        spark_jobs/batch_inference.py --start 2026-01-01 --model-version 3
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from collections.abc import Iterator
from typing import Any

import numpy as np
import pandas as pd
from pyspark.sql import DataFrame, SparkSession

from spark_jobs.delta_tables import ensure_table
from spark_jobs.entry import job_parser, run_job
from volpipe.config import Settings
from volpipe.dates import DateRange
from volpipe.modeling import registry
from volpipe.schema import model_sql, struct_of, with_layout
from volpipe.tables import FEATURES, PREDICTION_KEYS, PREDICTIONS

log = logging.getLogger(__name__)
SCORED_SCHEMA = struct_of((*PREDICTION_KEYS, "probability", "predicted_label"))
# Bigger Arrow batches: each predict call has a fixed cost (schema check, DataFrame build).
SPARK_CONF = {"spark.sql.execution.arrow.maxRecordsPerBatch": "50000"}


def read(spark: SparkSession, settings: Settings, dates: DateRange) -> DataFrame:
    """Feature rows of ``dates`` (the partition filter prunes, the nanosecond one is exact)."""
    return (
        spark.read.format("delta")
        .load(str(settings.delta_table(FEATURES)))
        .where(dates.where_partitions())
        .where(dates.where_ns("exchange_ts_ns"))
    )


def transform(features: DataFrame, tracking_uri: str, model: registry.ScoringModel) -> DataFrame:
    """Scores every row with ``model`` (``volpipe.modeling.models.probabilities``, as the stream does).

    The estimator is loaded once per partition iterator inside the Python worker, not per batch.
    Only the keys, the probability and the label cross to and from Python; the model's constant
    columns are added in the JVM (strings through Arrow cost more than the prediction).
    """
    columns = list(model.columns)

    def predict(batches: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        from volpipe.modeling.models import decide, probabilities

        estimator = registry.load_estimator(tracking_uri, model)
        for batch in batches:
            probability = probabilities(estimator, batch[columns])
            yield batch[list(PREDICTION_KEYS)].assign(
                probability=probability, predicted_label=decide(probability, model.threshold)
            )

    scored = features.select(*PREDICTION_KEYS, *columns).mapInPandas(predict, SCORED_SCHEMA)
    columns_out = (*PREDICTION_KEYS, "probability", "predicted_label", *model_sql(model))
    return with_layout(scored.selectExpr(*columns_out), PREDICTIONS)


def write(predictions: DataFrame, settings: Settings, dates: DateRange) -> None:
    """Replaces the days of ``dates`` in ``predictions`` (created with its layout on first use)."""
    ensure_table(predictions.sparkSession, settings, PREDICTIONS, predictions.schema)
    (
        predictions.write.format("delta")
        .mode("overwrite")
        .option("replaceWhere", dates.where_partitions())
        .save(str(settings.delta_table(PREDICTIONS)))
    )


def written_rows(spark: SparkSession, settings: Settings, dates: DateRange) -> int:
    """Rows of ``predictions`` in the range (an empty range may commit nothing)."""
    return (
        spark.read.format("delta").load(str(settings.delta_table(PREDICTIONS))).where(dates.where_partitions()).count()
    )


def realised_metrics(
    settings: Settings, model: registry.ScoringModel, start_ns: int, end_ns: int
) -> dict[str, float] | None:
    """Metrics of the written predictions against labels of the model's definition; None if unlabelled."""
    from volpipe.modeling import label as L
    from volpipe.modeling import models as M
    from volpipe.modeling.dataset import logged_label, read_window

    spec, tau = logged_label(settings, model.run_id)
    frame = read_window(settings.delta_table(FEATURES), L.label_columns(spec), start_ns, end_ns).frame
    y = L.labels_as_trained(frame, spec, tau)
    labelled = frame[list(PREDICTION_KEYS)].assign(y=y)[np.isfinite(y)]
    predicted = read_window(settings.delta_table(PREDICTIONS), ["probability"], start_ns, end_ns).frame
    joined = labelled.merge(predicted, on=list(PREDICTION_KEYS))
    if joined.empty or joined["y"].nunique() < 2:
        log.info("no realised metrics start_ns=%d end_ns=%d labelled_rows=%d", start_ns, end_ns, len(joined))
        return None
    return M.metrics(joined["y"].to_numpy(), joined["probability"].to_numpy(), model.threshold)


def log_evaluation(
    settings: Settings, model: registry.ScoringModel, metrics: dict[str, float], start_ns: int, end_ns: int
) -> str:
    """One MLflow run with the realised metrics of a scored range; returns its id."""
    import mlflow

    mlflow.set_tracking_uri(settings.mlflow_tracking_uri)
    mlflow.set_experiment(settings.mlflow_experiment)
    with mlflow.start_run(run_name="batch-inference-evaluation") as run:
        mlflow.set_tags({"model_name": model.name, "model_version": model.version, "model_run_id": model.run_id})
        mlflow.log_params(
            {
                "start_ns": start_ns,
                "end_ns": end_ns,
                "label_mode": model.label_mode,
                "decision_threshold": model.threshold,
            }
        )
        mlflow.log_metrics({f"realised_{key}": value for key, value in metrics.items()})
    return run.info.run_id


def run(spark: SparkSession, settings: Settings, dates: DateRange, model_version: str | None = None) -> dict[str, Any]:
    """Scores [start, end] into ``predictions`` and logs realised metrics when labels exist.

    Returns:
        rows written, the model's name/version/run id, and the evaluation run id (or None).

    Raises:
        ModelRegistryError: No champion (or no such version): nothing is written.
    """
    began = time.perf_counter()
    start_ns, end_ns = dates.bounds_ns
    model = registry.scoring_model(settings.mlflow_tracking_uri, settings.model_name, model_version)
    write(transform(read(spark, settings, dates), settings.mlflow_tracking_uri, model), settings, dates)
    rows = written_rows(spark, settings, dates)
    scored = time.perf_counter()
    metrics = realised_metrics(settings, model, start_ns, end_ns)
    evaluation = log_evaluation(settings, model, metrics, start_ns, end_ns) if metrics else None
    log.info(
        "predictions written range=%s rows=%d model=%s version=%s evaluation_run=%s score_write_s=%.2f metrics_s=%.2f",
        dates,
        rows,
        model.name,
        model.version,
        evaluation,
        scored - began,
        time.perf_counter() - scored,
    )
    return {
        "rows": rows,
        "model_name": model.name,
        "model_version": model.version,
        "run_id": model.run_id,
        "evaluation_run_id": evaluation,
        "metrics": metrics,
        "score_write_seconds": scored - began,
        "metrics_seconds": time.perf_counter() - scored,
    }


def main(argv: list[str] | None = None) -> int:
    parser = job_parser("spark_jobs.batch_inference", __doc__)
    parser.add_argument("--model-version", help="registered version to use (default or empty: @champion)")
    parser.add_argument("--model-name", help="MODEL_NAME")

    def score(spark: SparkSession, settings: Settings, args: argparse.Namespace) -> int:
        print(json.dumps(run(spark, settings, args.dates, args.model_version or None), default=str))
        return 0

    return run_job(
        parser,
        argv,
        "volpipe-batch-inference",
        score,
        failure="batch inference failed",
        overrides=lambda args: {"model_name": args.model_name},
        extra_conf=SPARK_CONF,
    )


if __name__ == "__main__":
    sys.exit(main())
