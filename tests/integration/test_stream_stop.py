"""A polite stop of the stream started as users start it (spark-submit): SIGTERM to spark-submit,
or Ctrl-C to its process group, during the first micro-batch lets that batch commit to every
Delta table, the job exits 0, and no process of its tree is left.

The batch is held in its compute while the stop is asked for, not caught by a sleep: the test
freezes (SIGSTOP) the Python workers of the stateful stage as soon as they fork, so the batch's
Spark job cannot end until the test lets them go on. A batch that had finished its Spark job is
past what an interrupt can stop (its Delta appends run in the driver's Python): a sleep-timed
stop that landed there on a fast machine saw that batch commit despite the interrupt.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess

import psutil
import pytest
from deltalake import DeltaTable

from tests.spark.pipeline_helpers import pipeline_settings, produce
from volpipe.config import PROJECT_ROOT
from volpipe.market import synthetic_raw_records
from volpipe.ops.harness import survivors, wait_until
from volpipe.ops.services.live import program_env, stream_command
from volpipe.ops.services.process import process_tree

pytestmark = [pytest.mark.integration, pytest.mark.spark]

# Without MLflow no champion, so no predictions_live: the batch's tables are these three.
TABLES = ("ticks", "features", "quarantine")
ASKED = "stopping features stream signal_received=True"
INTERRUPTED = "batch_id=0 still running after STREAM_STOP_TIMEOUT_SECONDS=1: interrupting it"


def _batch_ids(settings, table: str) -> list[int]:
    """Batch ids of the stream's commits to ``table`` (its userMetadata: ``<app id> batch <id>``)."""
    history = DeltaTable(str(settings.delta_table(table))).history()
    return [int(entry["userMetadata"].rsplit(" ", 1)[1]) for entry in history if entry.get("userMetadata")]


def _stateful_workers(pid: int) -> list[psutil.Process]:
    """The Python workers under ``pid`` that run the batch's stateful stage: forks of ``pyspark.daemon``
    (the only Python UDF of the query without scoring)."""
    workers = []
    for proc in psutil.Process(pid).children(recursive=True):
        try:
            if "pyspark.daemon" in proc.cmdline() and "pyspark.daemon" in proc.parent().cmdline():
                workers.append(proc)
        except psutil.NoSuchProcess:
            pass
    return workers


def _hold_compute(proc: subprocess.Popen) -> list[psutil.Process]:
    """Freezes the first stateful workers of batch 0 as soon as they fork; returns them."""
    held: list[psutil.Process] = []

    def forked() -> bool:
        held.extend(_stateful_workers(proc.pid))
        return bool(held) or proc.poll() is not None

    wait_until(forked, 240, "batch 0's stateful workers", interval=0.01)
    for worker in held:
        worker.suspend()
    return held


def _release(held: list[psutil.Process]) -> None:
    for worker in held:
        with contextlib.suppress(psutil.NoSuchProcess):
            worker.resume()


def _stop_during_first_batch(
    settings, tmp_path, stop: str, timeout_seconds: int, release_on: str | None
) -> tuple[str, list, list]:
    """Starts the stream as `make stream` does, holds batch 0 in its compute, asks for a stop, and
    lets the batch go on once the log says ``release_on`` (None: never, the stop must end it).

    Returns:
        Its log, its process tree as it was before the stop, and the workers that were held.
    """
    produce(settings, [*synthetic_raw_records(20_000, ("BTC-USD", "ETH-USD"), seed=8), ("BTC-USD", b"not json")])
    env = {
        **os.environ,
        **program_env(settings),
        "STREAM_SCORING": "false",
        "SPARK_DRIVER_MEMORY": "1g",
        "STREAM_STOP_TIMEOUT_SECONDS": str(timeout_seconds),
    }
    log_path = tmp_path / "stream.log"
    with log_path.open("ab") as log:
        proc = subprocess.Popen(
            stream_command(settings),
            cwd=PROJECT_ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    held: list[psutil.Process] = []
    try:
        held = _hold_compute(proc)
        assert proc.poll() is None, log_path.read_text()[-4000:]
        # Held: batch 0 is planned and its Spark job cannot end, so nothing of it is committed.
        assert (settings.checkpoint("features") / "offsets" / "0").exists()
        assert not (settings.checkpoint("features") / "commits" / "0").exists()
        tree = process_tree(proc.pid)
        assert len(tree) >= 2, "spark-submit's JVM and its Python driver"
        if stop == "SIGTERM to spark-submit":
            proc.send_signal(signal.SIGTERM)  # the JVM only: it must hand the stop to the driver
        else:
            os.killpg(proc.pid, signal.SIGINT)  # what a terminal's Ctrl-C does
        if release_on is not None:
            wait_until(lambda: release_on in log_path.read_text() or proc.poll() is not None, 240, release_on)
            _release(held)
        assert proc.wait(240) == 0, log_path.read_text()[-4000:]
    finally:
        _release(held)  # a held worker never outlives the test, whatever failed
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    return log_path.read_text(), tree, held


@pytest.mark.parametrize("stop", ["SIGTERM to spark-submit", "Ctrl-C to the process group"])
def test_a_stop_during_a_batch_lets_it_commit_every_table_then_exits_0_leaving_no_process(kafka_broker, tmp_path, stop):
    settings = pipeline_settings(kafka_broker, tmp_path, window=5)
    log, tree, _ = _stop_during_first_batch(settings, tmp_path, stop, timeout_seconds=180, release_on=ASKED)
    assert survivors(tree) == []
    checkpoint = settings.checkpoint("features")
    # The stop was asked for while batch 0 was held, and batch 0 still committed everywhere.
    asked, written = log.index(ASKED), log.index("batch written batch_id=0")
    assert asked < written, log[-4000:]
    assert (checkpoint / "commits" / "0").exists()
    for table in TABLES:
        assert 0 in _batch_ids(settings, table), table


def test_a_batch_longer_than_the_stop_timeout_is_interrupted_and_the_job_still_exits_0(kafka_broker, tmp_path):
    settings = pipeline_settings(kafka_broker, tmp_path, window=5)
    # Never released: the interrupt must cancel the held batch (Spark kills its frozen workers).
    log, tree, held = _stop_during_first_batch(
        settings, tmp_path, "SIGTERM to spark-submit", timeout_seconds=1, release_on=None
    )
    assert survivors([proc for proc in tree if proc not in held]) == []
    # A frozen worker can take no signal but SIGKILL: once let go, it must exit too.
    wait_until(lambda: survivors(held) == [], 90, "the held workers to exit once let go")
    assert INTERRUPTED in log
    assert "batch written batch_id=0" not in log
    assert not (settings.checkpoint("features") / "commits" / "0").exists()  # redone on the next start
    for table in TABLES:
        assert 0 not in (
            _batch_ids(settings, table) if (settings.delta_table(table) / "_delta_log").exists() else []
        ), table
