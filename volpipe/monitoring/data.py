"""What the monitoring reports compare: the champion's training window and rows read from Delta.

Inputs: the MLflow model registry (the registered model's ``champion`` alias and the params of
the run behind it) and the Delta tables ``features`` and ``predictions`` (read with delta-rs,
no Spark). Outputs: the reference window's bounds, products and feature columns; pandas
frames of the rows of a time window.

Contract with the training stage: the champion's run logs the params ``train_start_ns`` and
``train_end_ns`` (half-open ``exchange_ts_ns`` bounds of its training rows), ``products`` and
``feature_columns`` (both comma-separated).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

import pandas as pd

from volpipe.errors import MonitoringDataError, ReferenceWindowError

if TYPE_CHECKING:
    from mlflow.entities.model_registry import ModelVersion
    from mlflow.tracking import MlflowClient

log = logging.getLogger(__name__)

CHAMPION_ALIAS = "champion"
REFERENCE_PARAMS = ("train_start_ns", "train_end_ns", "products", "feature_columns")
# The key of a feature row and of its prediction (docs/querying.md).
ROW_KEY = ("product_id", "ingest_seq", "ticker_idx")


class ReferenceWindow(NamedTuple):
    """The champion's training window: ``exchange_ts_ns`` in [start_ns, end_ns), products, feature columns."""

    start_ns: int
    end_ns: int
    products: tuple[str, ...]
    feature_columns: tuple[str, ...]


def champion_version(client: MlflowClient, model_name: str) -> ModelVersion:
    """The model version behind ``model_name@champion``.

    Raises:
        ReferenceWindowError: The model does not exist or no version has the alias.
    """
    from mlflow.exceptions import MlflowException

    try:
        return client.get_model_version_by_alias(model_name, CHAMPION_ALIAS)
    except MlflowException as exc:
        raise ReferenceWindowError(
            f"no {CHAMPION_ALIAS} for model {model_name!r} ({exc.error_code}): train and promote a model first"
        ) from exc


def _csv(text: str) -> tuple[str, ...]:
    return tuple(item.strip() for item in text.split(",") if item.strip())


def reference_window(client: MlflowClient, model_name: str) -> ReferenceWindow:
    """Reads the champion's training window from the params of its MLflow run.

    Args:
        client: An MLflow client of the tracking server that holds the registry.
        model_name: The registered model (MODEL_NAME, e.g. ``volpipe-volatility``).

    Returns:
        ``(start_ns, end_ns, products, feature_columns)`` as a ``ReferenceWindow``.

    Raises:
        ReferenceWindowError: No champion, or its run lacks or garbles one of ``REFERENCE_PARAMS``.
    """
    version = champion_version(client, model_name)
    params = client.get_run(version.run_id).data.params
    context = f"model={model_name} version={version.version} run_id={version.run_id}"
    missing = [name for name in REFERENCE_PARAMS if not params.get(name)]
    if missing:
        raise ReferenceWindowError(f"champion run lacks params {missing} ({context})")
    try:
        start_ns, end_ns = int(params["train_start_ns"]), int(params["train_end_ns"])
    except ValueError as exc:
        raise ReferenceWindowError(f"train_start_ns/train_end_ns are not integers: {exc} ({context})") from None
    if start_ns > end_ns:
        raise ReferenceWindowError(f"train_start_ns={start_ns} is after train_end_ns={end_ns} ({context})")
    window = ReferenceWindow(start_ns, end_ns, _csv(params["products"]), _csv(params["feature_columns"]))
    if not window.products or not window.feature_columns:
        raise ReferenceWindowError(f"champion run has empty products or feature_columns ({context})")
    log.info("reference window %s start_ns=%d end_ns=%d products=%s", context, start_ns, end_ns,
             ",".join(window.products))
    return window


def table_exists(path: Path) -> bool:
    """Whether a Delta table (its log) exists at ``path``."""
    return (path / "_delta_log").is_dir()


def read_window(
    path: Path, start_ns: int, end_ns: int, products: tuple[str, ...] | list[str] | None,
    columns: list[str] | None = None,
) -> pd.DataFrame:
    """Rows of a Delta table whose ``exchange_ts_ns`` lies in the window, for ``products``.

    Extra columns in the table (partition columns, timestamps) are ignored unless asked for.

    Args:
        path: The table.
        start_ns: Inclusive lower bound of ``exchange_ts_ns``.
        end_ns: Exclusive upper bound.
        products: ``product_id`` values to keep; None keeps all.
        columns: Columns to read (default all).

    Returns:
        The rows, sorted by ``(product_id, ingest_seq, ticker_idx)`` when the table has that key.

    Raises:
        MonitoringDataError: The table does not exist or lacks one of ``columns``.
    """
    import pyarrow.dataset as ds
    from deltalake import DeltaTable

    if not table_exists(path):
        raise MonitoringDataError(f"Delta table does not exist at {path}")
    dataset = DeltaTable(str(path)).to_pyarrow_dataset()
    absent = [c for c in (columns or []) if c not in dataset.schema.names]
    if absent:
        raise MonitoringDataError(f"table {path} lacks columns {absent}")
    ts = ds.field("exchange_ts_ns")
    where = (ts >= start_ns) & (ts < end_ns)
    if products:
        where = where & ds.field("product_id").isin(list(products))
    frame = dataset.to_table(columns=columns, filter=where).to_pandas()
    key = [c for c in ROW_KEY if c in frame.columns]
    if len(key) == len(ROW_KEY):
        frame = frame.sort_values(key, ignore_index=True)
    log.info("rows read table=%s start_ns=%d end_ns=%d rows=%d", path.name, start_ns, end_ns, len(frame))
    return frame


def sample_rows(frame: pd.DataFrame, max_rows: int, seed: int = 0) -> pd.DataFrame:
    """At most ``max_rows`` rows drawn uniformly without replacement (seeded), in their original order.

    Sampling noise is far below the drift thresholds (two 20,000-row samples of one
    distribution score 0.001-0.02 against thresholds of 0.1 and 0.2, tests/unit), and the
    report's time grows linearly with the rows, so a long training window is sampled.
    """
    if len(frame) <= max_rows:
        return frame
    return frame.sample(n=max_rows, random_state=seed).sort_index()
