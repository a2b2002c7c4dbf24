"""A polite stop of the stream started as users start it (spark-submit): SIGTERM to spark-submit,
or Ctrl-C to its process group, during the first micro-batch lets that batch commit to every
Delta table, the job exits 0, and no process of its tree is left."""

from __future__ import annotations

import os
import signal
import subprocess
import time

import pytest
from deltalake import DeltaTable

from tests.spark.pipeline_helpers import pipeline_settings, produce
from volpipe.config import PROJECT_ROOT
from volpipe.market import synthetic_raw_records
from volpipe.ops.harness import process_tree, survivors, wait_until
from volpipe.ops.services.live import program_env, stream_command

pytestmark = [pytest.mark.integration, pytest.mark.spark]

# Without MLflow no champion, so no predictions_live: the batch's tables are these three.
TABLES = ("ticks", "features", "quarantine")


def _batch_ids(settings, table: str) -> list[int]:
    """Batch ids of the stream's commits to ``table`` (its userMetadata: ``<app id> batch <id>``)."""
    history = DeltaTable(str(settings.delta_table(table))).history()
    return [int(entry["userMetadata"].rsplit(" ", 1)[1]) for entry in history if entry.get("userMetadata")]


def _stop_during_first_batch(settings, tmp_path, stop: str, timeout_seconds: int) -> tuple[str, list]:
    """Starts the stream as `make stream` does, stops it 2 s into batch 0 and waits for its exit 0.

    Returns:
        Its log, and its process tree as it was before the stop.
    """
    produce(settings, [*synthetic_raw_records(20_000, ("BTC-USD", "ETH-USD"), seed=8), ("BTC-USD", b"not json")])
    env = {**os.environ, **program_env(settings), "STREAM_SCORING": "false", "SPARK_DRIVER_MEMORY": "1g",
           "STREAM_STOP_TIMEOUT_SECONDS": str(timeout_seconds)}
    log_path = tmp_path / "stream.log"
    with log_path.open("ab") as log:
        proc = subprocess.Popen(stream_command(settings), cwd=PROJECT_ROOT, env=env, stdout=log,
                                stderr=subprocess.STDOUT, start_new_session=True)
    checkpoint = settings.checkpoint("features")
    try:
        # Batch 0 planned (offsets/0) and not committed (commits/0): in flight, cold, ~8 s long.
        wait_until(lambda: (checkpoint / "offsets" / "0").exists() or proc.poll() is not None, 240, "batch 0")
        assert proc.poll() is None, log_path.read_text()[-4000:]
        time.sleep(2)  # into the batch's compute: its Delta commits come at its end
        assert not (checkpoint / "commits" / "0").exists(), "batch 0 ended before the stop: stop earlier"
        tree = process_tree(proc.pid)
        assert len(tree) >= 2, "spark-submit's JVM and its Python driver"
        if stop == "SIGTERM to spark-submit":
            proc.send_signal(signal.SIGTERM)  # the JVM only: it must hand the stop to the driver
        else:
            os.killpg(proc.pid, signal.SIGINT)  # what a terminal's Ctrl-C does
        assert proc.wait(240) == 0, log_path.read_text()[-4000:]
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    return log_path.read_text(), tree


@pytest.mark.parametrize("stop", ["SIGTERM to spark-submit", "Ctrl-C to the process group"])
def test_a_stop_during_a_batch_lets_it_commit_every_table_then_exits_0_leaving_no_process(kafka_broker, tmp_path, stop):
    settings = pipeline_settings(kafka_broker, tmp_path, window=5)
    log, tree = _stop_during_first_batch(settings, tmp_path, stop, timeout_seconds=180)
    assert survivors(tree) == []
    checkpoint = settings.checkpoint("features")
    # The stop was asked for while batch 0 ran, and batch 0 still committed everywhere.
    asked, written = log.index("stopping features stream signal_received=True"), log.index("batch written batch_id=0")
    assert asked < written, log[-4000:]
    assert (checkpoint / "commits" / "0").exists()
    for table in TABLES:
        assert 0 in _batch_ids(settings, table), table


def test_a_batch_longer_than_the_stop_timeout_is_interrupted_and_the_job_still_exits_0(kafka_broker, tmp_path):
    settings = pipeline_settings(kafka_broker, tmp_path, window=5)
    log, tree = _stop_during_first_batch(settings, tmp_path, "SIGTERM to spark-submit", timeout_seconds=1)
    assert survivors(tree) == []
    assert "batch_id=0 still running after STREAM_STOP_TIMEOUT_SECONDS=1: interrupting it" in log
    assert not (settings.checkpoint("features") / "commits" / "0").exists()  # redone on the next start
