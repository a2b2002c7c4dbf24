"""The stream's Delta sink: ``ticks``, ``features``, ``quarantine`` and ``predictions_live``, exactly once.

Inputs: each micro-batch of ``PROCESSOR_COLUMNS`` rows (``foreachBatch``). Outputs: one
append per table and batch, marked with the query and batch id so that a batch re-run after a
crash is not appended twice; the tables' log checkpoints, written off the micro-batch path.
The batch is collected to the driver once, as Arrow, and appended with delta-rs: Delta-Spark
spent a Spark job and a transaction rebuild on every append, the largest share of the live
latency. docs/streaming.md explains the guarantees and the measurements behind these choices.
"""

from __future__ import annotations

import functools
import json
import logging
import time
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TYPE_CHECKING

import deltalake
import pyarrow as pa
from deltalake import ColumnProperties, CommitProperties, WriterProperties
from deltalake.exceptions import TableNotFoundError
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from spark_jobs.delta_tables import ensure_table
from volpipe.config import Settings
from volpipe.schema import model_sql, nullable_int_sql, struct_of
from volpipe.tables import (
    COLUMNS,
    FEATURES,
    MODEL_COLUMNS,
    PREDICTIONS_LIVE,
    PROCESSOR_COLUMNS,
    REPEATING_STRING_COLUMNS,
    ROW_RULES,
    STREAM_TABLES,
    layout_columns,
)

if TYPE_CHECKING:
    from spark_jobs.live_scoring import LiveScoring
    from volpipe.modeling.registry import ScoringModel

log = logging.getLogger(__name__)

HISTORY_LOOKBACK = 100  # commits read first when looking for a resumed batch's marker
# Parquet dictionaries only on the strings that repeat (the Spark writers' setting, volpipe/spark.py).
WRITER_PROPERTIES = WriterProperties(
    default_column_properties=ColumnProperties(dictionary_enabled=False),
    column_properties={name: ColumnProperties(dictionary_enabled=True) for name in REPEATING_STRING_COLUMNS},
)


def _member(table: str) -> str:
    return f"in {table}"


def stream_rows(rows: DataFrame, model: ScoringModel | None = None) -> tuple[DataFrame, dict[str, dict[str, str]]]:
    """``PROCESSOR_COLUMNS`` rows -> one frame holding every stream table's stored columns.

    Built from SQL text (two ``selectExpr``), not ``F`` columns: it runs on every micro-batch,
    and each ``F`` call is a round trip to the JVM (120-150 ms a batch here, docs/streaming.md).

    Args:
        rows: The micro-batch.
        model: The one pinned for the batch: its constant columns complete the predictions.

    Returns:
        The frame, with a boolean column per table saying which rows it takes
        (``volpipe.tables.ROW_RULES``), and per table its stored column names in order, each
        mapped to the frame's column holding it (a derived column whose name two tables
        compute differently, such as ``date``, is held once per definition).
    """
    completed = {("reason" if name == "error" else name): name for name in PROCESSOR_COLUMNS}
    nulled = rows.selectExpr(*(nullable_int_sql(name, alias) for alias, name in completed.items()), *model_sql(model))
    derived: dict[str, str] = {}  # frame column -> SQL
    stored: dict[str, dict[str, str]] = {}
    for table in STREAM_TABLES:
        stored[table] = {name: name for name in COLUMNS[table]}
        for name, sql in layout_columns(table).items():
            column = name if derived.get(name, sql) == sql else f"{name} of {table}"
            derived[column] = sql
            stored[table][name] = column
    frame = nulled.selectExpr(
        *(f"`{name}`" for name in (*completed, *MODEL_COLUMNS) if any(name in columns for columns in stored.values())),
        *(f"{sql} AS `{column}`" for column, sql in derived.items()),
        *(f"{rule} AS `{_member(table)}`" for table, rule in ROW_RULES.items()),
    )
    return frame, stored


def table_frames(rows: DataFrame, model: ScoringModel | None = None) -> dict[str, DataFrame]:
    """``PROCESSOR_COLUMNS`` rows -> what goes into each stream table, in its stored columns."""
    frame, stored = stream_rows(rows, model)
    return {
        table: frame.where(F.col(_member(table))).select(
            *(F.col(f"`{column}`").alias(name) for name, column in columns.items())
        )
        for table, columns in stored.items()
    }


def split_tables(batch: pa.Table, stored: dict[str, dict[str, str]]) -> dict[str, pa.Table]:
    """The collected ``stream_rows`` frame -> each table's rows, in its stored columns (``table_frames`` in Arrow)."""
    return {
        table: batch.filter(batch[_member(table)]).select(list(columns.values())).rename_columns(list(columns))
        for table, columns in stored.items()
    }


def _delta_log(path: str) -> deltalake.DeltaTable | None:
    """The table's log read with delta-rs (no Spark job, no JVM), or None when there is no table.

    Delta-Spark's ``detail()`` and ``history()`` run Spark jobs, which at stream start queue
    behind the first micro-batch's tasks (seconds, docs/streaming.md).
    """
    try:
        return deltalake.DeltaTable(path, without_files=True)
    except TableNotFoundError:
        return None


def prepare_tables(spark: SparkSession, settings: Settings) -> None:
    """Creates the stream's tables (layout, properties) if missing; sets missing properties."""
    empty = spark.createDataFrame([], struct_of(PROCESSOR_COLUMNS))
    for name, frame in table_frames(empty).items():
        ensure_table(spark, settings, name, frame.schema)


class DeltaCheckpointer:
    """Writes the Delta log checkpoints of the stream's tables in a background thread.

    Readers replay the JSON commits since the last checkpoint, so checkpoints must keep coming,
    but not inside a micro-batch. A table is checkpointed once the stream has committed to it
    ``every_commits`` times since its last one (so ``quarantine``, rarely written, rarely is).
    delta-rs writes them (``DeltaTable.create_checkpoint``), then deletes the log files older
    than ``delta.logRetentionDuration`` as Delta-Spark does after its own checkpoints. A
    failure is logged and retried after the next commit; the query never waits for it.
    """

    def __init__(self, settings: Settings, every_commits: int) -> None:
        self.settings = settings
        self.every_commits = every_commits
        self._commits = dict.fromkeys(STREAM_TABLES, 0)
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="delta-checkpoint")
        self._running: Future[None] | None = None

    def committed(self, tables: list[str]) -> None:
        """Counts a commit to each of ``tables``; starts checkpointing the due ones unless a checkpoint runs."""
        for name in tables:
            self._commits[name] += 1
        due = [name for name, count in self._commits.items() if count >= self.every_commits]
        if due and (self._running is None or self._running.done()):
            self._running = self._pool.submit(self._checkpoint, due)

    def _checkpoint(self, tables: list[str]) -> None:
        began = time.perf_counter()
        for name in tables:
            try:
                table = deltalake.DeltaTable(str(self.settings.delta_table(name)))
                table.create_checkpoint()
                table.cleanup_metadata()
                self._commits[name] = 0
            except Exception:  # logged; retried after the next commit
                log.exception("Delta checkpoint failed table=%s", name)
        log.info("Delta checkpoints written tables=%s seconds=%.2f", ",".join(tables), time.perf_counter() - began)


class BatchWriter:
    """The ``foreachBatch`` sink of the four Delta tables, exactly once.

    Each Delta append records ``<app id> batch <batch id>`` as the commit's ``userMetadata``
    (see ``DESCRIBE HISTORY``). Only the first batch of a run can be one that a crashed run
    already wrote (Spark plans batch N+1 only after committing N), so only that batch looks
    the marker up and skips the tables that have it; later batches append without a lookup.
    Delta's own ``txnAppId``/``txnVersion`` would check every append, rebuilding the table
    state each time (0.4 s a commit here, docs/streaming.md).
    """

    def __init__(self, settings: Settings, tables_ready: Future[None], scoring: LiveScoring | None = None) -> None:
        self.settings = settings
        self.tables_ready = tables_ready
        self.scoring = scoring
        self.checkpointer = DeltaCheckpointer(settings, settings.stream_delta_checkpoint_commits)
        self._app_id: str | None = None
        self._first_batch = True

    def app_id(self) -> str:
        """The query id persisted in the checkpoint: stable across restarts, new for a new checkpoint."""
        if self._app_id is None:
            meta = json.loads((self.settings.checkpoint("features") / "metadata").read_text())
            self._app_id = f"features-stream-{meta['id']}"
        return self._app_id

    def __call__(self, batch: DataFrame, batch_id: int) -> None:
        began = time.perf_counter()
        model = self.scoring.pin(batch.sparkSession) if self.scoring else None  # before any job of the batch
        frame, stored = stream_rows(batch, model)
        tables = split_tables(frame.toArrow(), stored)  # the batch's one Spark job
        computed = time.perf_counter()
        self.tables_ready.result()  # raises what prepare_tables raised
        pending = [name for name, rows in tables.items() if rows.num_rows]
        if self._first_batch:
            pending = [name for name in pending if not self._written_before(name, batch_id)]
        # Independent appends, run concurrently (delta-rs releases the GIL): a batch costs its slowest commit.
        writes = [functools.partial(self._append, name, tables[name], batch_id) for name in pending]
        with ThreadPoolExecutor(max_workers=max(1, len(writes))) as pool:
            for future in [pool.submit(write) for write in writes]:
                future.result()
        self._first_batch = False
        counts = {name: rows.num_rows for name, rows in tables.items()}
        scored = counts[PREDICTIONS_LIVE]
        scoring_s = self.scoring.record(scored, counts[FEATURES] - scored) if self.scoring else 0.0
        log.info(
            "batch written batch_id=%d ticks=%d features=%d quarantine=%d predictions=%d model_version=%s "
            "compute_s=%.2f scoring_s=%.3f delta_s=%.2f",
            batch_id,
            counts["ticks"],
            counts["features"],
            counts["quarantine"],
            scored,
            model.version if model else None,
            computed - began,
            scoring_s,
            time.perf_counter() - computed,
        )
        self.checkpointer.committed(pending)

    def _marker(self, batch_id: int) -> str:
        return f"{self.app_id()} batch {batch_id}"

    def _written_before(self, name: str, batch_id: int) -> bool:
        """Whether this query's newest commit to table ``name`` is batch ``batch_id`` (or later)."""
        table = _delta_log(str(self.settings.delta_table(name)))
        if table is None:
            return False
        prefix = f"{self.app_id()} batch "

        def newest_marker(commits: list[dict]) -> str | None:
            return next((c["userMetadata"] for c in commits if str(c.get("userMetadata")).startswith(prefix)), None)

        # This query is the table's usual writer: its newest commit is near the top of the log.
        newest = newest_marker(table.history(HISTORY_LOOKBACK)) or newest_marker(table.history())
        if newest is None:
            return False
        last_batch = int(newest.rsplit(" ", 1)[1])
        if last_batch >= batch_id:
            log.info("skipping Delta append already committed table=%s batch_id=%d", name, batch_id)
        return last_batch >= batch_id

    def _append(self, name: str, rows: pa.Table, batch_id: int) -> None:
        # By path, not a DeltaTable kept between batches: a kept one took longer with every commit
        # (0.06 s to 0.25 s per batch over 1,200 batches, docs/streaming.md); a path reads the log
        # from its last checkpoint, which DeltaCheckpointer keeps recent.
        deltalake.write_deltalake(
            str(self.settings.delta_table(name)),
            rows,
            mode="append",
            writer_properties=WRITER_PROPERTIES,
            commit_properties=CommitProperties(custom_metadata={"userMetadata": self._marker(batch_id)}),
        )
