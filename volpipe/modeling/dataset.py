"""Windows of the pipeline's Delta tables: the one reader of feature and prediction rows.

Inputs: a table keyed by ``volpipe.tables.ROW_KEYS`` with an ``exchange_ts_ns`` time and a
``date`` partition (``features``, ``features_replay``, ``predictions``, ``predictions_live``),
an exchange-time range ``[start_ns, end_ns)`` and optional products. Output: the rows (only
the columns asked for, or all), in the kernel's order per product, and the Delta version read,
which training logs so a run can be reproduced. Training, walk-forward evaluation, monitoring
and batch inference's realised metrics all read through ``read_window`` (delta-rs, no Spark):
only the range's ``date`` partitions are opened. ``logged_label`` is the label definition a
registered version's run logged, the one lookup of it.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import logging
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from volpipe.config import Settings, parse_products
from volpipe.dates import DateRange, day_of_ns, parse_range
from volpipe.errors import TableReadError
from volpipe.modeling import label as L
from volpipe.tables import FEATURES, PARTITION_COLUMN, PREDICTIONS, ROW_KEYS

log = logging.getLogger(__name__)
# The time every windowed table is read by (and stores exactly, as integer UTC nanoseconds).
TIME_COLUMN = "exchange_ts_ns"


def add_window_arguments(parser: argparse.ArgumentParser) -> None:
    """``--start``/``--end`` (UTC dates, default: every row) and ``--products``: the window the
    trainer and the walk-forward evaluation read (``volpipe.dates.optional_bounds_ns`` turns the dates into bounds)."""
    parser.add_argument("--start", type=dt.date.fromisoformat, help="first UTC date, YYYY-MM-DD (default: all)")
    parser.add_argument("--end", type=dt.date.fromisoformat, help="last UTC date (default: --start, or all)")
    parser.add_argument("--products", type=parse_products, help="comma-separated")


@dataclasses.dataclass(frozen=True)
class FeatureData:
    """Rows read from Delta and where they came from."""

    frame: pd.DataFrame
    table: Path
    version: int


def read_window(
    table: Path,
    columns: Sequence[str] | None = None,
    start_ns: int | None = None,
    end_ns: int | None = None,
    products: Sequence[str] | None = None,
) -> FeatureData:
    """Rows of a table in ``[start_ns, end_ns)`` for ``products``, ordered per product.

    Args:
        table: Path of the Delta table (``settings.delta_table(FEATURES)``, ``PREDICTIONS``, ...).
        columns: Columns to return besides the row key and ``exchange_ts_ns``; None = every column
            (the derived ``exchange_ts`` and ``date`` included).
        start_ns: First exchange time (inclusive); None = from the beginning.
        end_ns: End of the range (exclusive); None = to the end.
        products: Products to keep; None or empty = all.

    Returns:
        The rows sorted by ``ROW_KEYS`` (the kernel's order per product) and the Delta version read.

    Raises:
        TableReadError: The table does not exist or lacks a requested column.
    """
    import pyarrow.compute as pc
    from deltalake import DeltaTable
    from deltalake.exceptions import TableNotFoundError

    try:
        delta = DeltaTable(str(table))
    except TableNotFoundError:
        raise TableReadError(f"no Delta table at {table}: run the stream or a replay first") from None
    present = [field.name for field in delta.schema().fields]
    wanted = present if columns is None else list(dict.fromkeys((*ROW_KEYS, TIME_COLUMN, *columns)))
    missing = sorted({name for name in (*ROW_KEYS, TIME_COLUMN, *wanted) if name not in present})
    if missing:
        raise TableReadError(f"table {table} (version {delta.version()}) lacks columns {missing}")
    condition = None
    partitioned = PARTITION_COLUMN in delta.metadata().partition_columns
    for clause in (
        pc.field(TIME_COLUMN) >= start_ns if start_ns is not None else None,
        pc.field(TIME_COLUMN) < end_ns if end_ns is not None else None,
        # The same bounds on the partition column: only those days' files are opened, even where
        # the files carry no statistics of the time column to skip them by.
        pc.field(PARTITION_COLUMN) >= day_of_ns(start_ns) if partitioned and start_ns is not None else None,
        pc.field(PARTITION_COLUMN) <= day_of_ns(end_ns - 1) if partitioned and end_ns is not None else None,
        pc.field("product_id").isin(list(products)) if products else None,
    ):
        if clause is not None:
            condition = clause if condition is None else condition & clause
    frame = delta.to_pyarrow_dataset().to_table(columns=wanted, filter=condition).to_pandas()
    log.info(
        "window read table=%s version=%d rows=%d start_ns=%s end_ns=%s products=%s",
        table,
        delta.version(),
        len(frame),
        start_ns,
        end_ns,
        ",".join(products or []) or "all",
    )
    return FeatureData(L.order_rows(frame), Path(table), delta.version())


def logged_label(settings: Settings, run_id: str) -> tuple[L.LabelSpec, float]:
    """The label definition and tau the training run ``run_id`` logged (a registered version's run),
    the settings' label filling what an older run did not log.

    ``label.labels_as_trained(rows, *logged_label(...))`` then judges scored rows exactly as that
    model was trained to answer (batch inference's realised metrics, monitoring's classification
    quality).
    """
    from volpipe.modeling import registry

    params = registry.client(settings.mlflow_tracking_uri).get_run(run_id).data.params
    return L.logged_definition(params, L.label_spec(settings))


def newest_ns(table: Path) -> int | None:
    """The newest ``exchange_ts_ns`` of a table, from its file statistics (no data read); None
    when the table does not exist or is empty."""
    from deltalake import DeltaTable
    from deltalake.exceptions import TableNotFoundError

    try:
        actions = DeltaTable(str(table)).get_add_actions(flatten=True)
    except TableNotFoundError:
        return None
    if "max.exchange_ts_ns" not in actions.column_names:
        return None
    values = [value for value in actions.column("max.exchange_ts_ns").to_pylist() if value is not None]
    return max(values, default=None)


def days_to_score(settings: Settings, start: str | None = None, end: str | None = None) -> DateRange | None:
    """The days batch inference should score: the given ones, else the days from the newest
    prediction's to the newest feature row's (that first day again: it may have been scored
    while still filling). None when every feature row is scored already."""
    if start:
        return parse_range(start, end)
    newest_feature = newest_ns(settings.delta_table(FEATURES))
    if newest_feature is None:
        return None
    newest_prediction = newest_ns(settings.delta_table(PREDICTIONS))
    if newest_prediction is not None and newest_prediction >= newest_feature:
        return None
    if newest_prediction is None:
        return DateRange(oldest_day(settings.delta_table(FEATURES)), day_of_ns(newest_feature))
    return DateRange(day_of_ns(newest_prediction), day_of_ns(newest_feature))


def oldest_day(table: Path) -> dt.date:
    """The first ``date`` partition of a table (metadata only)."""
    from deltalake import DeltaTable

    days = DeltaTable(str(table)).get_add_actions(flatten=True).column(f"partition.{PARTITION_COLUMN}").to_pylist()
    return min(days)
