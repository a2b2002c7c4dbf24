"""Kafka down for 30 s while ticks flow: the NDJSON keeps growing, nothing is lost once it is back.

Needs its own broker (it is stopped and started again), on free ports under tmp_path.
"""

from __future__ import annotations

import time

import orjson
import pytest

from volpipe.ops.harness import ExchangeProcess, IngestorProcess, ingestor_env, ndjson_records, topic_records, wait_until
from volpipe.ops.sandbox import isolated_settings
from volpipe.ops.services import KAFKA

pytestmark = pytest.mark.integration


def test_broker_stopped_for_30s_loses_nothing(tmp_path):
    settings = isolated_settings(tmp_path / "pipeline")
    KAFKA.start(settings)
    exchange = None
    try:
        exchange = ExchangeProcess("--speed", "1", "--rate", "200")
        ingestor = IngestorProcess(ingestor_env(settings, exchange.url), tmp_path / "ingest.log")
        raw = settings.raw_dir
        wait_until(lambda: len(ndjson_records(raw)) > 200, 30, "ticks flowing")
        KAFKA.stop(settings)
        stopped_at = len(ndjson_records(raw))
        time.sleep(30)
        during = len(ndjson_records(raw))
        assert during > stopped_at + 3000  # the read loop and the files never waited for Kafka
        KAFKA.start(settings)
        wait_until(lambda: len(ndjson_records(raw)) > during + 200, 60, "ticks after the broker is back")
        final = ingestor.stop(timeout=120)
    finally:
        if exchange is not None:
            exchange.stop()
        lines = ndjson_records(settings.raw_dir)
        records = topic_records(settings, settings.kafka_input_topic, len(lines), timeout=60)
        KAFKA.stop(settings)
    assert final["failed"] == 0 and final["reconnects"] == 0
    assert final["tickers"] == final["delivered"] == len(lines)
    assert sorted(value for _, _, value in records) == sorted(lines)
    seqs = [orjson.loads(line)["ingest_seq"] for line in lines]
    assert seqs == list(range(len(lines)))
