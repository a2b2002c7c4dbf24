"""The pipeline's Delta tables by name: their columns, which rows each takes, their layout.

Pure names, no Spark: the stream, the replay, the trainer, the monitor, the DAGs (as Asset
names) and the docs all take them from here. ``volpipe.schema`` turns the column names into
Spark types; ``spark_jobs.delta_tables`` creates the tables with this layout.

Layout (docs/querying.md): every table is partitioned by ``date``, the UTC day of its time
column, and carries that time as a readable ``TIMESTAMP`` (microseconds) beside the exact
integer nanoseconds. The derived columns are Spark SQL expressions over the nanoseconds, so
they depend on no session time zone.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from volpipe.dates import NS_PER_DAY
from volpipe.errors import KernelMismatch, TableLayoutError
from volpipe.features import EXTRA_WINDOWS, FEATURE_COLUMNS, INPUT_COLUMNS, KERNEL_VERSION

if TYPE_CHECKING:
    import pyarrow as pa

TICKS = "ticks"
FEATURES = "features"
QUARANTINE = "quarantine"
FEATURES_REPLAY = "features_replay"
PREDICTIONS = "predictions"
PREDICTIONS_LIVE = "predictions_live"
STREAM_TABLES = (TICKS, FEATURES, QUARANTINE, PREDICTIONS_LIVE)
ALL_TABLES = (*STREAM_TABLES, FEATURES_REPLAY, PREDICTIONS)

# The parsed rows: kernel input plus the quarantine fields (null on good rows).
PARSED_COLUMNS = (*INPUT_COLUMNS, "error", "raw", "source")
# Integer columns that ``parse_raw`` fills with -1 when absent; every output turns them into nulls.
PLACEHOLDER_INT_COLUMNS = ("ingest_seq", "ticker_idx", "sequence_num", "exchange_ts_ns", "recv_ns", "predicted_label")
# What the stream's stateful processor emits: tick rows (with features and, when a champion is
# pinned, its probability and label) and quarantine rows. The model's constant columns
# (``MODEL_COLUMNS``) are added by the driver, which pinned the model.
PROCESSOR_COLUMNS = (
    "kind",
    *INPUT_COLUMNS,
    *FEATURE_COLUMNS,
    "produced_ns",
    "probability",
    "predicted_label",
    "error",
    "raw",
    "source",
)
# The identity of a tick and of its feature row (docs/features.md).
ROW_KEYS = ("product_id", "ingest_seq", "ticker_idx")

# Columns each table's writer provides; ``LAYOUT`` adds the derived time columns.
TICK_COLUMNS = INPUT_COLUMNS
FEATURE_TABLE_COLUMNS = (
    "product_id",
    "ingest_seq",
    "ticker_idx",
    "conn_id",
    "sequence_num",
    "exchange_ts_ns",
    "recv_ns",
    "produced_ns",
    *FEATURE_COLUMNS,
)
QUARANTINE_COLUMNS = ("source", "ingest_seq", "recv_ns", "conn_id", "reason", "raw")
# A prediction's identity: the feature row it scores, and that row's exchange time.
PREDICTION_KEYS = (*ROW_KEYS, "exchange_ts_ns")
# What identifies the model that made a prediction, the same for every row it scores.
MODEL_COLUMNS = ("threshold", "model_name", "model_version", "run_id", "label_mode")
PREDICTION_COLUMNS = (*PREDICTION_KEYS, "probability", "predicted_label", *MODEL_COLUMNS)
# A live prediction's message in Kafka ``ticks.predictions``.
PREDICTION_MESSAGE_COLUMNS = (
    *PREDICTION_KEYS,
    "probability",
    "predicted_label",
    "threshold",
    "model_name",
    "model_version",
)
COLUMNS = {
    TICKS: TICK_COLUMNS,
    FEATURES: FEATURE_TABLE_COLUMNS,
    QUARANTINE: QUARANTINE_COLUMNS,
    FEATURES_REPLAY: FEATURE_TABLE_COLUMNS,
    PREDICTIONS: PREDICTION_COLUMNS,
    PREDICTIONS_LIVE: PREDICTION_COLUMNS,
}

# Which processor rows each stream table takes, as SQL over ``PROCESSOR_COLUMNS``.
ROW_RULES = {
    TICKS: "kind = 'tick'",
    FEATURES: "kind = 'tick' AND rolling_vol IS NOT NULL",
    QUARANTINE: "kind = 'quarantine'",
    PREDICTIONS_LIVE: "kind = 'tick' AND rolling_vol IS NOT NULL AND probability IS NOT NULL",
}

PARTITION_COLUMN = "date"
# Each table's time: the exact UTC nanoseconds it is stored as, and the readable TIMESTAMP column
# derived from them, as is the partition. Quarantined records may have no exchange time, so they
# go by receipt time.
_EXCHANGE_TIME = ("exchange_ts_ns", "exchange_ts")
TIME_COLUMNS = {
    TICKS: _EXCHANGE_TIME,
    FEATURES: _EXCHANGE_TIME,
    FEATURES_REPLAY: _EXCHANGE_TIME,
    PREDICTIONS: _EXCHANGE_TIME,
    PREDICTIONS_LIVE: _EXCHANGE_TIME,
    QUARANTINE: ("recv_ns", "recv_ts"),
}


def layout_columns(table: str) -> dict[str, str]:
    """The derived columns of ``table``: name -> Spark SQL expression over its nanosecond time."""
    ns, ts = TIME_COLUMNS[table]
    return {
        ts: f"timestamp_micros({ns} div 1000)",
        PARTITION_COLUMN: f"date_from_unix_date(CAST({ns} div {NS_PER_DAY} AS INT))",
    }


def arrow_layout_columns(table: str, ns: np.ndarray) -> dict[str, pa.Array]:
    """``layout_columns`` computed in Arrow from the nanoseconds, for writers without Spark
    (delta-rs in tests and benchmarks); tests/spark/test_layout.py checks both agree."""
    import pyarrow as pa

    ns = np.asarray(ns, np.int64)
    _, ts = TIME_COLUMNS[table]
    return {
        ts: pa.array(ns // 1000, pa.timestamp("us", tz="UTC")),
        PARTITION_COLUMN: pa.array((ns // NS_PER_DAY).astype(np.int32), pa.int32()).cast(pa.date32()),
    }


def table_columns(table: str) -> tuple[str, ...]:
    """Every column of ``table`` as stored: the writer's columns, then the derived ones."""
    return (*COLUMNS[table], *layout_columns(table))


# The tables' string columns with few distinct values: the only ones worth a Parquet dictionary.
REPEATING_STRING_COLUMNS = ("product_id", "conn_id", "event_type", "reason", *MODEL_COLUMNS[1:])

# Delta's own checkpoint would run inside a commit every 10 commits (1-3.5 s, the worst spike of
# the live latency); the stream writes them in the background instead, and this interval only
# remains as a fallback. Statistics cover the key and time columns (data skipping for product
# and time filters) rather than all the feature columns.
_STREAM_PROPERTIES = {"delta.checkpointInterval": "10000"}
_KEY_TIME_STATS = "product_id,ingest_seq,ticker_idx,exchange_ts_ns,recv_ns,exchange_ts"
_PREDICTION_STATS = "product_id,ingest_seq,ticker_idx,exchange_ts_ns,exchange_ts,model_version"
DELTA_PROPERTIES = {
    TICKS: {**_STREAM_PROPERTIES, "delta.dataSkippingStatsColumns": _KEY_TIME_STATS},
    FEATURES: {**_STREAM_PROPERTIES, "delta.dataSkippingStatsColumns": _KEY_TIME_STATS},
    QUARANTINE: {**_STREAM_PROPERTIES, "delta.dataSkippingStatsColumns": "ingest_seq,recv_ns,recv_ts"},
    FEATURES_REPLAY: {"delta.dataSkippingStatsColumns": _KEY_TIME_STATS},
    PREDICTIONS: {"delta.dataSkippingStatsColumns": _PREDICTION_STATS},
    PREDICTIONS_LIVE: {**_STREAM_PROPERTIES, "delta.dataSkippingStatsColumns": _PREDICTION_STATS},
}
# Tables whose rows the feature kernel computed: they record its parameters.
KERNEL_TABLES = (FEATURES, FEATURES_REPLAY)
KERNEL_PREFIX = "volpipe.kernel."


def kernel_properties(window: int) -> dict[str, str]:
    """The table properties that say which kernel made a table's rows (version, W, extra windows)."""
    extra = ",".join(f"{name}:{stat}:{size}" for name, stat, size in EXTRA_WINDOWS)
    return {
        f"{KERNEL_PREFIX}version": str(KERNEL_VERSION),
        f"{KERNEL_PREFIX}window": str(window),
        f"{KERNEL_PREFIX}extraWindows": extra,
    }


def table_properties(path: Path | str) -> dict[str, str] | None:
    """A Delta table's properties read with delta-rs (no Spark), or None when there is no table.

    The one-line equivalent: ``deltalake.DeltaTable(path).metadata().configuration``.
    """
    from deltalake import DeltaTable
    from deltalake.exceptions import TableNotFoundError

    try:
        return dict(DeltaTable(str(path), without_files=True).metadata().configuration)
    except TableNotFoundError:
        return None


def recorded_kernel(properties: dict[str, str]) -> dict[str, str]:
    """The kernel parameters among a table's properties ({} for a table made before they were recorded)."""
    return {key: value for key, value in properties.items() if key.startswith(KERNEL_PREFIX)}


def check_table(path: Path | str, window: int | None) -> None:
    """Refuses a table of an older layout, or whose rows another kernel computed (``window`` given).

    A missing table passes: whoever creates it records the layout and the parameters.

    Raises:
        KernelMismatch: Naming the table, what it records and what this run would write.
        TableLayoutError: The table is not partitioned by ``date``.
    """
    from deltalake import DeltaTable
    from deltalake.exceptions import TableNotFoundError

    try:
        metadata = DeltaTable(str(path), without_files=True).metadata()
    except TableNotFoundError:
        return
    if list(metadata.partition_columns) != [PARTITION_COLUMN]:
        raise TableLayoutError(
            f"table {path} is partitioned by {list(metadata.partition_columns)}, not [{PARTITION_COLUMN!r}]: "
            f"it was made by an older version; move it away and rebuild it (docs/operations.md)"
        )
    if window is None:
        return
    recorded, wanted = recorded_kernel(dict(metadata.configuration)), kernel_properties(window)
    if recorded != wanted:
        raise KernelMismatch(
            f"table {path} holds features of kernel {_describe(recorded)}, this run computes "
            f"{_describe(wanted)}: use the table's parameters (FEATURE_WINDOW_SIZE) or another DELTA_DIR"
        )


def _describe(params: dict[str, str]) -> str:
    if not params:
        return "(none recorded: made before kernel parameters were stored)"
    return " ".join(f"{key.removeprefix(KERNEL_PREFIX)}={value}" for key, value in sorted(params.items()))
