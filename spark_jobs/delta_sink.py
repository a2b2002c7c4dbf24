"""The stream's Delta sink: ``ticks``, ``features``, ``quarantine`` and ``predictions_live``, exactly once.

Inputs: each micro-batch of ``PROCESSOR_COLUMNS`` rows (``foreachBatch``). Outputs: one
append per table and batch, marked with the query and batch id so that a batch re-run after a
crash is not appended twice; the tables' log checkpoints, written off the micro-batch path.
docs/streaming.md explains the guarantees and the measurements behind these choices.
"""

from __future__ import annotations

import functools
import json
import logging
import time
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TYPE_CHECKING

import deltalake
from deltalake.exceptions import TableNotFoundError
from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F

from spark_jobs.delta_tables import ensure_table
from volpipe.config import Settings
from volpipe.modeling.registry import ScoringModel
from volpipe.schema import model_columns, nullable_ints, struct_of, with_layout
from volpipe.tables import COLUMNS, FEATURES, PREDICTIONS_LIVE, PROCESSOR_COLUMNS, ROW_RULES, STREAM_TABLES

if TYPE_CHECKING:
    from spark_jobs.live_scoring import LiveScoring

log = logging.getLogger(__name__)

HISTORY_LOOKBACK = 100  # commits read first when looking for a resumed batch's marker


def _row_kinds() -> dict[str, Column]:
    """Which ``PROCESSOR_COLUMNS`` rows each table takes (``volpipe.tables.ROW_RULES``)."""
    return {name: F.expr(rule) for name, rule in ROW_RULES.items()}


def table_frames(rows: DataFrame, model: ScoringModel | None = None) -> dict[str, DataFrame]:
    """``PROCESSOR_COLUMNS`` rows -> what goes into each stream table, in its stored columns.

    ``model`` is the one pinned for the batch: its constant columns complete the predictions.
    """
    kinds = _row_kinds()
    renamed = rows.withColumnRenamed("error", "reason").select("*", *model_columns(model))
    return {name: with_layout(nullable_ints(renamed.where(kinds[name]), COLUMNS[name]), name)
            for name in STREAM_TABLES}


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
    There is no public API for it: this calls Delta's ``DeltaLog.checkpoint()`` (stable since
    Delta 0.x; tests/integration/test_stream.py checks it). A failure is logged and retried
    after the next commit; the query never waits for it.
    """

    def __init__(self, settings: Settings, every_commits: int) -> None:
        self.settings = settings
        self.every_commits = every_commits
        self._commits = dict.fromkeys(STREAM_TABLES, 0)
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="delta-checkpoint")
        self._running: Future[None] | None = None

    def committed(self, spark: SparkSession, tables: list[str]) -> None:
        """Counts a commit to each of ``tables``; starts checkpointing the due ones unless a checkpoint runs."""
        for name in tables:
            self._commits[name] += 1
        due = [name for name, count in self._commits.items() if count >= self.every_commits]
        if due and (self._running is None or self._running.done()):
            self._running = self._pool.submit(self._checkpoint, spark, due)

    def _checkpoint(self, spark: SparkSession, tables: list[str]) -> None:
        began = time.perf_counter()
        delta_log = spark._jvm.org.apache.spark.sql.delta.DeltaLog  # type: ignore[union-attr]
        for name in tables:
            try:
                # The stream's own commits keep this (cached) log's snapshot current.
                delta_log.forTable(spark._jsparkSession, str(self.settings.delta_table(name))).checkpoint()
                self._commits[name] = 0
            except Exception:  # noqa: BLE001 - logged; retried after the next commit
                log.exception("Delta checkpoint failed table=%s", name)
        log.info("Delta checkpoints written tables=%s seconds=%.2f", ",".join(tables), time.perf_counter() - began)


class BatchWriter:
    """The ``foreachBatch`` sink of the three Delta tables, exactly once.

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
        batch.persist()
        try:
            tables = table_frames(batch, model)
            counts = batch.agg(*(F.count_if(kind).alias(name) for name, kind in _row_kinds().items())).first()
            computed = time.perf_counter()
            self.tables_ready.result()  # raises what prepare_tables raised
            pending = [name for name in tables if counts[name]]
            if self._first_batch:
                pending = [name for name in pending if not self._written_before(name, batch_id)]
            # Independent appends, run concurrently: a batch costs its slowest commit.
            writes = [functools.partial(self._append, name, tables[name], batch_id) for name in pending]
            with ThreadPoolExecutor(max_workers=max(1, len(writes))) as pool:
                for future in [pool.submit(write) for write in writes]:
                    future.result()
            self._first_batch = False
            scored = counts[PREDICTIONS_LIVE]
            scoring_s = self.scoring.record(scored, counts[FEATURES] - scored) if self.scoring else 0.0
            log.info("batch written batch_id=%d ticks=%d features=%d quarantine=%d predictions=%d model_version=%s "
                     "compute_s=%.2f scoring_s=%.3f delta_s=%.2f", batch_id, counts["ticks"], counts["features"],
                     counts["quarantine"], scored, model.version if model else None, computed - began, scoring_s,
                     time.perf_counter() - computed)
        finally:
            batch.unpersist()
        self.checkpointer.committed(batch.sparkSession, pending)

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

    def _append(self, name: str, frame: DataFrame, batch_id: int) -> None:
        (frame.write.format("delta").mode("append")
         .option("userMetadata", self._marker(batch_id))
         .save(str(self.settings.delta_table(name))))
