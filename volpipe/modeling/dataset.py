"""Reads the ``features`` Delta table for a time range and products, with delta-rs and pyarrow.

Inputs: the ``features`` table (``volpipe.tables``), an exchange-time range ``[start_ns, end_ns)``
on ``exchange_ts_ns`` (integer UTC ns) and optional products. Output: the rows (only the
columns asked for; extra table columns such as ``exchange_ts`` or a ``date`` partition are
ignored) in the kernel's order per product, and the Delta version that was read, which
training logs so a run can be reproduced.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from volpipe.config import Settings
from volpipe.dates import DateRange, day_of_ns, parse_range
from volpipe.errors import TrainingDataError
from volpipe.modeling.label import order_rows
from volpipe.tables import FEATURES, PARTITION_COLUMN, PREDICTIONS

log = logging.getLogger(__name__)
KEY_COLUMNS = ("product_id", "ingest_seq", "ticker_idx", "exchange_ts_ns")


@dataclasses.dataclass(frozen=True)
class FeatureData:
    """Rows read from Delta and where they came from."""

    frame: pd.DataFrame
    table: Path
    version: int


def read_features(
    table: Path,
    columns: Sequence[str],
    start_ns: int | None = None,
    end_ns: int | None = None,
    products: Sequence[str] | None = None,
) -> FeatureData:
    """Rows of the feature table in ``[start_ns, end_ns)`` for ``products``, ordered per product.

    Args:
        table: Path of the Delta table (``settings.delta_table(FEATURES)``).
        columns: Columns to return besides the key columns.
        start_ns: First exchange time (inclusive); None = from the beginning.
        end_ns: End of the range (exclusive); None = to the end.
        products: Products to keep; None = all.

    Returns:
        The rows sorted by (product_id, ingest_seq, ticker_idx) and the Delta version read.

    Raises:
        TrainingDataError: The table does not exist or lacks a requested column.
    """
    import pyarrow.compute as pc
    from deltalake import DeltaTable
    from deltalake.exceptions import TableNotFoundError

    try:
        delta = DeltaTable(str(table))
    except TableNotFoundError:
        raise TrainingDataError(f"no Delta table at {table}: run the stream or a replay first") from None
    wanted = list(dict.fromkeys((*KEY_COLUMNS, *columns)))
    present = {field.name for field in delta.schema().to_arrow()}
    missing = [name for name in wanted if name not in present]
    if missing:
        raise TrainingDataError(f"features table {table} (version {delta.version()}) lacks columns {missing}")
    condition = None
    partitioned = PARTITION_COLUMN in delta.metadata().partition_columns
    for clause in (
        pc.field("exchange_ts_ns") >= start_ns if start_ns is not None else None,
        pc.field("exchange_ts_ns") < end_ns if end_ns is not None else None,
        # The same bounds on the partition column: only those days' files are opened.
        pc.field(PARTITION_COLUMN) >= day_of_ns(start_ns) if partitioned and start_ns is not None else None,
        pc.field(PARTITION_COLUMN) <= day_of_ns(end_ns - 1) if partitioned and end_ns is not None else None,
        pc.field("product_id").isin(list(products)) if products else None,
    ):
        if clause is not None:
            condition = clause if condition is None else condition & clause
    dataset = delta.to_pyarrow_dataset()
    frame = dataset.to_table(columns=wanted, filter=condition).to_pandas()
    log.info("features read table=%s version=%d rows=%d start_ns=%s end_ns=%s products=%s",
             table, delta.version(), len(frame), start_ns, end_ns, ",".join(products or []) or "all")
    return FeatureData(order_rows(frame), Path(table), delta.version())


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
    first = day_of_ns(newest_prediction) if newest_prediction is not None else oldest_day(settings.delta_table(FEATURES))
    return DateRange(first, day_of_ns(newest_feature))


def oldest_day(table: Path) -> dt.date:
    """The first ``date`` partition of a table (metadata only)."""
    from deltalake import DeltaTable

    days = DeltaTable(str(table)).get_add_actions(flatten=True).column(f"partition.{PARTITION_COLUMN}").to_pylist()
    return min(days)
