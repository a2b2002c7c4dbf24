"""The supervised live path (`make live`): the ingestor against the local exchange and the stream
with spark-submit, each killed with SIGKILL (the ingestor; the stream's Python driver; its JVM)
and restarted by its supervisor, counted in `status`; then `down` stops them and their whole
process trees, and every ticker the ingestor stored in NDJSON is in Delta `ticks` exactly once."""

from __future__ import annotations

import dataclasses
import os
import re
import signal
import subprocess
import sys

import orjson
import psutil
import pytest
from deltalake import DeltaTable

from tests.spark.pipeline_helpers import pipeline_settings
from volpipe.config import PROJECT_ROOT
from volpipe.ops.harness import ExchangeProcess, ndjson_records, survivors, wait_until
from volpipe.ops.services import INGESTOR, STREAM
from volpipe.ops.services.live import program_env, state_file, stream_lag
from volpipe.ops.services.process import SupervisorState, process_tree

pytestmark = [pytest.mark.integration, pytest.mark.spark]


def _state(settings, name: str) -> SupervisorState:
    state = SupervisorState.load(state_file(settings, name))
    assert state is not None, f"no state for {name}"
    return state


def _restarted(settings, name: str, restarts: int, killed: int) -> bool:
    state = _state(settings, name)
    return state.restarts == restarts and state.pid not in (None, killed) and psutil.pid_exists(state.pid)


def _last(settings, log: str) -> int:
    folder = settings.checkpoint("features") / log
    return max((int(p.name) for p in folder.glob("[0-9]*") if p.name.isdigit()), default=-1) if folder.exists() else -1


def _ticks(settings) -> list[tuple[int, int]]:
    path = settings.delta_table("ticks")
    if not (path / "_delta_log").exists():
        return []
    table = DeltaTable(str(path)).to_pyarrow_table(columns=["ingest_seq", "ticker_idx"])
    return sorted(zip(table["ingest_seq"].to_pylist(), table["ticker_idx"].to_pylist(), strict=True))


def _stored_tickers(settings) -> list[tuple[int, int]]:
    """(ingest_seq, ticker_idx) of every ticker in the ingestor's NDJSON files."""
    keys = []
    for line in ndjson_records(settings.raw_dir):
        record = orjson.loads(line)
        if record["msg"].get("channel") == "ticker":
            count = sum(len(event.get("tickers", [])) for event in record["msg"]["events"])
            keys += [(record["ingest_seq"], idx) for idx in range(count)]
    return sorted(keys)


def _runs(proc: psutil.Process, script: str) -> bool:
    try:
        return script in " ".join(proc.cmdline())
    except (psutil.ZombieProcess, psutil.NoSuchProcess):  # the JVM's short-lived helpers
        return False


def _wait_new_batch(settings, after: int, what: str) -> None:
    wait_until(lambda: _last(settings, "commits") > after, 360, what, interval=1)


def test_each_supervised_process_killed_comes_back_counted_and_nothing_is_lost(kafka_broker, tmp_path):
    exchange = ExchangeProcess("--products", "BTC-USD,ETH-USD", "--rate", "20")
    settings = dataclasses.replace(
        pipeline_settings(kafka_broker, tmp_path, window=5),
        coinbase_ws_url=exchange.url,
        product_ids=("BTC-USD", "ETH-USD"),
        stream_scoring=False,
        spark_driver_memory="1g",
        stream_trigger_seconds=2.0,
        restart_initial_seconds=1.0,
        restart_max_seconds=4.0,
    )
    trees: list[psutil.Process] = []
    try:
        STREAM.start(settings)
        INGESTOR.start(settings)
        _wait_new_batch(settings, -1, "a first batch")

        killed = _state(settings, "ingestor").pid
        os.kill(killed, signal.SIGKILL)
        wait_until(lambda: _restarted(settings, "ingestor", 1, killed), 120, "ingestor restarted", interval=0.5)

        jvm = _state(settings, "stream").pid
        # The driver is the JVM's first child running the script (a short-lived helper may show the
        # same command line for a moment).
        driver = min(
            (p for p in psutil.Process(jvm).children() if _runs(p, "features_stream.py")), key=lambda p: p.create_time()
        )
        batch = _last(settings, "commits")
        os.kill(driver.pid, signal.SIGKILL)  # the Python driver: its JVM exits, the supervisor restarts both
        wait_until(lambda: _restarted(settings, "stream", 1, jvm), 120, "stream restarted after its driver died", 0.5)
        _wait_new_batch(settings, batch, "a batch after the driver's restart")

        jvm = _state(settings, "stream").pid
        batch = _last(settings, "commits")
        os.kill(jvm, signal.SIGKILL)  # the JVM: its orphaned driver is killed by the supervisor
        wait_until(lambda: _restarted(settings, "stream", 2, jvm), 120, "stream restarted after its JVM died", 0.5)
        _wait_new_batch(settings, batch, "a batch after the JVM's restart")

        status = subprocess.run(
            [sys.executable, "-m", "volpipe.ops.services", "status", "stream", "ingestor"],
            cwd=PROJECT_ROOT,
            env={**os.environ, **program_env(settings)},
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert status.returncode == 0, status.stdout + status.stderr
        lines = dict(line.split(None, 1) for line in status.stdout.splitlines())
        assert re.search(
            r"^healthy +pid \d+ up \d+s, restarts 2 \(last exit -?\d+\), .*lag \d+ records$", lines["stream"]
        ), status.stdout
        assert re.search(r"^healthy +pid \d+ up \d+s, restarts 1 \(last exit -9\)", lines["ingestor"]), status.stdout

        trees = [*process_tree(INGESTOR.process(settings).pid()), *process_tree(STREAM.process(settings).pid())]
        assert INGESTOR.stop(settings)  # as `down` does: the ingestor first, then the stream catches up
        wait_until(
            lambda: stream_lag(settings) == 0 and _last(settings, "commits") == _last(settings, "offsets"),
            360,
            "the stream caught up",
            interval=1,
        )
        assert STREAM.stop(settings)
    finally:
        INGESTOR.stop(settings)
        STREAM.stop(settings)
        exchange.stop()
    assert survivors(trees) == []
    stored = _stored_tickers(settings)
    assert len(stored) > 100
    assert _ticks(settings) == stored  # every stored ticker, once
