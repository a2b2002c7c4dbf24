"""The Kafka broker SIGKILLed (its whole process tree) and restarted while the ingestor and the
feature stream run under load: both recover by themselves, and nothing is lost or duplicated
between the NDJSON files, Kafka ``ticks.raw`` and Delta ``ticks``/``features``.

Needs its own broker (it is killed), on free ports under tmp_path.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import orjson
import psutil
import pytest
from deltalake import DeltaTable
from deltalake.exceptions import TableNotFoundError

from tests.spark.pipeline_helpers import reference_features, same_bits
from volpipe.config import PROJECT_ROOT
from volpipe.features import FEATURE_COLUMNS
from volpipe.ops.harness import (
    ExchangeProcess,
    IngestorProcess,
    ingestor_env,
    ndjson_records,
    survivors,
    topic_records,
    wait_until,
)
from volpipe.ops.sandbox import isolated_settings
from volpipe.ops.services import KAFKA
from volpipe.ops.services.live import program_env
from volpipe.ops.services.process import process_tree

pytestmark = [pytest.mark.integration, pytest.mark.spark]

PRODUCTS = "BTC-USD,ETH-USD"


def _table(settings, name: str, columns: list[str]):
    try:
        return DeltaTable(str(settings.delta_table(name))).to_pandas(columns=columns)
    except TableNotFoundError:  # not created, or no commit yet
        return None


def _tick_keys(settings) -> list[tuple[int, int]]:
    ticks = _table(settings, "ticks", ["ingest_seq", "ticker_idx"])
    return [] if ticks is None else sorted(zip(ticks["ingest_seq"], ticks["ticker_idx"], strict=True))


def _stored_keys(lines: list[bytes]) -> list[tuple[int, int]]:
    """(ingest_seq, ticker_idx) of every ticker in the NDJSON lines."""
    keys = []
    for line in lines:
        record = orjson.loads(line)
        count = sum(len(event["tickers"]) for event in record["msg"]["events"])
        keys += [(record["ingest_seq"], idx) for idx in range(count)]
    return sorted(keys)


def _kill_broker(settings) -> list[psutil.Process]:
    """SIGKILL to every process of the broker's tree at once: no shutdown hook runs."""
    tree = process_tree(KAFKA.process(settings).pid())
    for proc in tree:
        proc.kill()
    psutil.wait_procs(tree, timeout=30)
    return tree


def test_broker_sigkilled_under_load_both_recover_and_nothing_is_lost(tmp_path):
    settings = isolated_settings(
        tmp_path / "pipeline",
        PRODUCT_IDS=PRODUCTS,
        FEATURE_WINDOW_SIZE="5",
        STREAM_SCORING="false",
        STREAM_TRIGGER_SECONDS="1",
        SPARK_DRIVER_MEMORY="1g",
    )
    raw = settings.raw_dir
    KAFKA.start(settings)
    exchange = stream = ingestor = None
    stream_log = tmp_path / "stream.log"
    try:
        exchange = ExchangeProcess("--products", PRODUCTS, "--rate", "300")
        ingestor = IngestorProcess(ingestor_env(settings, exchange.url), tmp_path / "ingest.log")
        with stream_log.open("ab") as out:
            stream = subprocess.Popen(
                [sys.executable, "-m", "spark_jobs.features_stream"],
                cwd=PROJECT_ROOT,
                env={**os.environ, **program_env(settings)},
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        wait_until(lambda: len(_tick_keys(settings)) > 500 or stream.poll() is not None, 240, "ticks in Delta")
        assert stream.poll() is None, stream_log.read_text()[-4000:]

        assert survivors(_kill_broker(settings)) == []
        killed_at = len(ndjson_records(raw))
        # The broker stays down while ticks keep arriving: the ingestor never waits for Kafka. A count,
        # not a time, so a busy machine only makes the outage longer.
        wait_until(lambda: len(ndjson_records(raw)) > killed_at + 1500, 180, "ticks stored with the broker down")
        assert KAFKA.process(settings).pid() is None
        KAFKA.start(settings)
        restarted_at = len(ndjson_records(raw))

        # Both recover by themselves: Delta catches up with what was stored after the restart.
        wait_until(
            lambda: len(_tick_keys(settings)) > restarted_at or stream.poll() is not None,
            240,
            "the stream past the outage",
            interval=1,
        )
        assert stream.poll() is None, stream_log.read_text()[-4000:]
        final = ingestor.stop(timeout=120)
        exchange.stop()
        lines = ndjson_records(raw)
        stored = _stored_keys(lines)
        wait_until(
            lambda: len(_tick_keys(settings)) >= len(stored) or stream.poll() is not None,
            240,
            "the stream caught up",
            interval=1,
        )
        stream.send_signal(signal.SIGTERM)  # the polite stop: the batch in flight commits
        assert stream.wait(120) == 0, stream_log.read_text()[-4000:]
        records = topic_records(settings, settings.kafka_input_topic, len(lines), timeout=60)
    finally:
        for proc in (ingestor.proc if ingestor else None, stream):
            if proc is not None and proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL) if proc is stream else proc.kill()
        if exchange is not None:
            exchange.stop()
        KAFKA.stop(settings)

    # The ingestor: every ticker stored and delivered, none failed, no reconnect to the exchange.
    assert final["failed"] == 0 and final["reconnects"] == 0 and final["gaps"] == 0
    assert final["tickers"] == final["delivered"] == len(lines)
    seqs = [orjson.loads(line)["ingest_seq"] for line in lines]
    assert seqs == list(range(len(lines)))
    # Kafka holds every NDJSON line once, byte for byte (the idempotent producer: no duplicate).
    assert sorted(value for _, _, value in records) == sorted(lines)
    # Delta ticks: every stored ticker exactly once.
    assert _tick_keys(settings) == stored
    # Delta features: the replay of the NDJSON, bit for bit.
    features = (
        _table(settings, "features", ["product_id", "ingest_seq", "ticker_idx", *FEATURE_COLUMNS])
        .sort_values(["product_id", "ingest_seq"])
        .reset_index(drop=True)
    )
    expected = reference_features([(b"", line) for line in lines], window=5)
    assert features["ingest_seq"].tolist() == expected["ingest_seq"].tolist()
    assert features["product_id"].tolist() == expected["product_id"].tolist()
    for column in FEATURE_COLUMNS:
        assert same_bits(features[column].astype(float), expected[column].astype(float)), column
