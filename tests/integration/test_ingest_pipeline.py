"""The ingestor against the real local exchange and a real broker, both as the user runs them.

Each test gets its own topics on the session broker and its own data folder, runs the real
commands as subprocesses, and checks what landed in Kafka and in the NDJSON files.
"""

from __future__ import annotations

import collections
import re
import uuid
from pathlib import Path

import orjson
import pytest

from tests.recordings import real_recording
from volpipe.coinbase import ticker_frame
from volpipe.config import Settings
from volpipe.market import SyntheticMarket
from volpipe.ops.harness import (
    ExchangeProcess,
    IngestorProcess,
    ingestor_env,
    ndjson_records,
    topic_records,
    wait_until,
)
from volpipe.ops.sandbox import isolated_settings
from volpipe.ops.services import kafka

pytestmark = pytest.mark.integration


def _settings(tmp_path: Path, broker: Settings, products: str = "BTC-USD") -> Settings:
    tag = uuid.uuid4().hex[:8]
    settings = isolated_settings(
        tmp_path,
        KAFKA_BOOTSTRAP_SERVERS=broker.kafka_bootstrap_servers,
        PRODUCT_IDS=products,
        KAFKA_INPUT_TOPIC=f"ingest-raw-{tag}",
        KAFKA_DEADLETTER_TOPIC=f"ingest-dead-{tag}",
        KAFKA_OUTPUT_TOPIC=f"ingest-features-{tag}",
    )
    kafka.create_topics(settings)
    return settings


def _lines(tmp_path: Path, folder: str) -> list[dict]:
    return [orjson.loads(line) for line in ndjson_records(tmp_path / folder)]


def _assert_kafka_matches_ndjson(settings: Settings, lines: list[bytes], topic: str) -> None:
    """Same records in Kafka as in the file; per partition in file order; keyed by product."""
    records = topic_records(settings, topic, len(lines))
    assert len(records) == len(lines)
    by_partition = collections.defaultdict(list)
    for partition, key, value in records:
        by_partition[partition].append(value)
        if topic == settings.kafka_input_topic:
            assert key.decode() == orjson.loads(value)["msg"]["events"][0]["tickers"][0]["product_id"]
    position = {value: i for i, value in enumerate(lines)}
    for values in by_partition.values():
        order = [position[value] for value in values]
        assert order == sorted(order)
    assert sorted(v for _, _, v in records) == sorted(lines)


def test_n_ticks_served_are_n_ticks_in_kafka_and_ndjson_in_order(tmp_path, kafka_broker):
    settings = _settings(tmp_path, kafka_broker, "BTC-USD,ETH-USD")
    n = 5000
    exchange = ExchangeProcess("--speed", "0", "--max-ticks", str(n), "--products", "BTC-USD,ETH-USD")
    ingestor = IngestorProcess(ingestor_env(settings, exchange.url), tmp_path / "ingest.log")
    try:
        wait_until(lambda: exchange.stats()["exhausted"] and len(ndjson_records(tmp_path / "raw")) >= n, 120, "n ticks")
        final = ingestor.stop()
        served = exchange.stats()["tickers_sent"]
    finally:
        exchange.stop()
    raw = ndjson_records(tmp_path / "raw")
    assert served == n == final["tickers"] == len(raw)
    assert final["failed"] == 0 and final["delivered"] == n and final["gaps"] == 0 and final["invalid"] == 0
    records = [orjson.loads(line) for line in raw]
    assert [r["ingest_seq"] for r in records] == list(range(n))
    seqs = [r["msg"]["sequence_num"] for r in records]
    assert seqs == sorted(seqs) and len(set(seqs)) == n
    first = {}
    for r in records:
        ticker = r["msg"]["events"][0]
        first.setdefault(ticker["tickers"][0]["product_id"], ticker["type"])
    assert first == {"BTC-USD": "snapshot", "ETH-USD": "snapshot"}
    _assert_kafka_matches_ndjson(settings, raw, settings.kafka_input_topic)


def test_reconnects_after_drop_stall_and_clean_close(tmp_path, kafka_broker):
    settings = _settings(tmp_path, kafka_broker)
    exchange = ExchangeProcess("--speed", "1", "--rate", "200")
    env = ingestor_env(
        settings, exchange.url, STALE_FEED_SECONDS="1.5", RECONNECT_INITIAL_SECONDS="0.1", RECONNECT_MAX_SECONDS="0.5"
    )
    ingestor = IngestorProcess(env, tmp_path / "ingest.log")
    try:

        def flowing_on(connection: int):
            def check() -> bool:
                stats = exchange.stats()
                return stats["connections"] == connection and any(c["tickers_sent"] > 20 for c in stats["clients"])

            return check

        wait_until(flowing_on(1), 90, "first connection")
        exchange.control("drop")
        wait_until(flowing_on(2), 90, "reconnect after drop")
        exchange.control("stall", seconds=30)  # longer than STALE_FEED_SECONDS: the watchdog must act
        wait_until(flowing_on(3), 90, "reconnect after stall")
        exchange.control("close1000")
        wait_until(flowing_on(4), 90, "reconnect after a clean 1000 close")
        final = ingestor.stop()
    finally:
        exchange.stop()
    log = (tmp_path / "ingest.log").read_text()
    assert "stale feed" in log and "1000" in log
    assert final["reconnects"] == 3
    raw = ndjson_records(tmp_path / "raw")
    records = [orjson.loads(line) for line in raw]
    assert [r["ingest_seq"] for r in records] == list(range(len(records)))
    conn_ids = list(dict.fromkeys(r["conn_id"] for r in records))
    assert len(conn_ids) == 4
    for conn_id in conn_ids:  # each connection starts with a snapshot
        assert next(r for r in records if r["conn_id"] == conn_id)["msg"]["events"][0]["type"] == "snapshot"
    assert final["tickers"] == len(raw) and final["failed"] == 0
    _assert_kafka_matches_ndjson(settings, raw, settings.kafka_input_topic)


def test_malformed_input_goes_to_the_dead_letter_topic_and_quarantine_with_a_reason(tmp_path, kafka_broker):
    settings = _settings(tmp_path, kafka_broker)
    exchange = ExchangeProcess("--speed", "1", "--rate", "100")
    ingestor = IngestorProcess(ingestor_env(settings, exchange.url), tmp_path / "ingest.log")
    try:
        wait_until(lambda: any(c["tickers_sent"] > 10 for c in exchange.stats()["clients"]), 90, "ticks")
        exchange.control("skip", n=5)
        exchange.control("repeat", n=3)
        for kind in ("json", "structure", "price", "product"):
            exchange.control("malformed", kind=kind)
        exchange.control("error", message="injected failure")
        wait_until(lambda: len(ndjson_records(tmp_path / "quarantine")) >= 5, 90, "dead letters")
        wait_until(
            lambda: exchange.stats()["clients"][0]["seq"] > 0 and len(ndjson_records(tmp_path / "raw")) > 30,
            90,
            "more ticks",
        )
        final = ingestor.stop()
    finally:
        exchange.stop()
    dead = ndjson_records(tmp_path / "quarantine")
    reasons = [orjson.loads(line)["reason"] for line in dead]
    assert len(dead) == 5 == final["invalid"]
    assert reasons[0].startswith("not JSON")
    assert "events is not a non-empty list" in reasons[1]
    assert "price is not a positive decimal: '-1'" in reasons[2]
    assert "product not subscribed: 'NOPE-USD'" in reasons[3]
    assert "exchange error: 'injected failure'" in reasons[4] and final["exchange_errors"] == 1
    assert orjson.loads(dead[0])["raw"] == '{"channel":"ticker","timestamp":"2026-'
    assert final["gaps"] >= 5 and final["repeats"] >= 3
    # Raw records and dead letters together number every accepted or rejected frame once.
    seqs = sorted(r["ingest_seq"] for r in _lines(tmp_path, "raw") + _lines(tmp_path, "quarantine"))
    assert seqs == list(range(len(seqs)))
    _assert_kafka_matches_ndjson(settings, dead, settings.kafka_deadletter_topic)


def test_sigterm_while_ticks_flow_keeps_everything_received_and_a_restart_resumes(tmp_path, kafka_broker):
    settings = _settings(tmp_path, kafka_broker)
    exchange = ExchangeProcess("--speed", "1", "--rate", "3000")
    try:
        first = IngestorProcess(ingestor_env(settings, exchange.url), tmp_path / "ingest.log")
        wait_until(lambda: len(ndjson_records(tmp_path / "raw")) > 600, 180, "ticks flowing")  # CI: busy cores
        final = first.stop()
        count = len(ndjson_records(tmp_path / "raw"))
        second = IngestorProcess(ingestor_env(settings, exchange.url), tmp_path / "ingest2.log")
        wait_until(lambda: len(ndjson_records(tmp_path / "raw")) > count + 200, 180, "ticks after restart")
        final2 = second.stop()
    finally:
        exchange.stop()
    assert final["tickers"] == count and final["delivered"] == count and final["failed"] == 0
    records = _lines(tmp_path, "raw")
    assert len(records) == count + final2["tickers"]
    assert [r["ingest_seq"] for r in records] == list(range(len(records)))
    assert records[count - 1]["conn_id"] != records[count]["conn_id"]
    _assert_kafka_matches_ndjson(settings, ndjson_records(tmp_path / "raw"), settings.kafka_input_topic)


@pytest.mark.parametrize("source", ["generated", "real"])
def test_a_replay_with_kept_timestamps_reaches_the_files_with_the_recorded_times(tmp_path, kafka_broker, source):
    if source == "real":
        recording = real_recording()
    else:
        recording = tmp_path / "recording.ndjson"
        events = SyntheticMarket(["BTC-USD"], seed=8, start_ns=1_775_383_200_123_456_780)
        frames = [ticker_frame(e, i) for i, e in zip(range(500), events, strict=False)]
        frames[7] = re.sub(rb'"timestamp":"[^"]*"', b'"timestamp":"2026-04-05T10:00:01.500000000Z"', frames[7])
        recording.write_bytes(b"\n".join(frames) + b"\n")
    recorded = [
        m["timestamp"] for m in map(orjson.loads, recording.read_bytes().splitlines()) if m["channel"] == "ticker"
    ]
    settings = _settings(tmp_path, kafka_broker)
    exchange = ExchangeProcess(
        "--source", "replay", "--replay-file", str(recording), "--speed", "0", "--keep-timestamps"
    )
    ingestor = IngestorProcess(ingestor_env(settings, exchange.url), tmp_path / "ingest.log")
    try:
        wait_until(lambda: len(ndjson_records(tmp_path / "raw")) >= len(recorded), 120, "the whole recording")
        final = ingestor.stop()
    finally:
        exchange.stop()
    records = _lines(tmp_path, "raw")
    assert final["tickers"] == len(recorded) and final["invalid"] == 0
    assert [r["msg"]["timestamp"] for r in records] == recorded  # the recorded text, not the send time
