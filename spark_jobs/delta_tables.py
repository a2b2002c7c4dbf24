"""Creates the pipeline's Delta tables with their layout and properties: one place for every writer.

Inputs: a table name from ``volpipe.tables`` and its Spark schema. Output: the table,
partitioned by ``date``, with ``volpipe.tables.DELTA_PROPERTIES`` and, for tables the feature
kernel fills, the kernel's parameters; an existing table is checked instead (another kernel
or an older layout is refused, missing Delta properties are set).
"""

from __future__ import annotations

import logging

from pyspark.sql import SparkSession
from pyspark.sql.types import StructType

from volpipe.config import Settings
from volpipe.tables import (
    DELTA_PROPERTIES,
    KERNEL_TABLES,
    PARTITION_COLUMN,
    check_table,
    kernel_properties,
    table_properties,
)

log = logging.getLogger(__name__)


def ensure_table(spark: SparkSession, settings: Settings, table: str, schema: StructType) -> None:
    """Creates ``table`` under ``settings.delta_dir`` unless it exists; checks it when it does.

    Raises:
        KernelMismatch: A kernel table holds rows of other kernel parameters.
        TableLayoutError: The table is not partitioned by ``date`` (an older layout).
    """
    from delta.tables import DeltaTable

    path = settings.delta_table(table)
    wanted = dict(DELTA_PROPERTIES.get(table, {}))
    if table in KERNEL_TABLES:
        wanted.update(kernel_properties(settings.feature_window_size))
    current = table_properties(path)
    if current is None:
        builder = DeltaTable.createIfNotExists(spark).location(str(path)).addColumns(schema)
        builder = builder.partitionedBy(PARTITION_COLUMN)
        for key, value in wanted.items():
            builder = builder.property(key, value)
        builder.execute()
        log.info("Delta table created table=%s path=%s", table, path)
        return
    check_table(path, settings.feature_window_size if table in KERNEL_TABLES else None)
    stale = {key: value for key, value in wanted.items() if current.get(key) != value}
    if stale:
        pairs = ", ".join(f"'{key}' = '{value}'" for key, value in stale.items())
        spark.sql(f"ALTER TABLE delta.`{path}` SET TBLPROPERTIES ({pairs})")
