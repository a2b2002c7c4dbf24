"""Reads the ``features`` Delta table for a time range and products, with delta-rs and pyarrow.

Inputs: ``settings.delta_table("features")``, an exchange-time range ``[start_ns, end_ns)``
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

from volpipe.errors import TrainingDataError
from volpipe.modeling.label import order_rows

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
        table: Path of the Delta table (``settings.delta_table("features")``).
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
    for clause in (
        pc.field("exchange_ts_ns") >= start_ns if start_ns is not None else None,
        pc.field("exchange_ts_ns") < end_ns if end_ns is not None else None,
        pc.field("product_id").isin(list(products)) if products else None,
    ):
        if clause is not None:
            condition = clause if condition is None else condition & clause
    dataset = delta.to_pyarrow_dataset()
    frame = dataset.to_table(columns=wanted, filter=condition).to_pandas()
    log.info("features read table=%s version=%d rows=%d start_ns=%s end_ns=%s products=%s",
             table, delta.version(), len(frame), start_ns, end_ns, ",".join(products or []) or "all")
    return FeatureData(order_rows(frame), Path(table), delta.version())


def day_range_ns(start: dt.date | None, end: dt.date | None) -> tuple[int | None, int | None]:
    """[start 00:00 UTC, end + 1 day 00:00 UTC) in epoch ns; (None, None) when no date is given.

    ``end`` defaults to ``start``. The one import of the date helper (moving to a date module).
    """
    if start is None and end is None:
        return None, None
    from spark_jobs.replay import day_bounds_ns

    start_ns, end_ns = day_bounds_ns(start or end, end or start)  # type: ignore[arg-type]
    if end_ns <= start_ns:
        raise TrainingDataError(f"end date {end} is before start date {start}")
    return start_ns, end_ns
