"""``python -m ingest.import_recording`` as a user runs it, against the session's real broker.

Each test gets its own topics and data folder, runs the command as a subprocess, and checks
that Kafka holds exactly what the NDJSON files hold, with the recorded times kept.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import uuid
from pathlib import Path

import orjson
import pytest

from tests.recordings import generated_recording, real_recording
from volpipe.coinbase import parse_timestamp
from volpipe.config import PROJECT_ROOT, Settings
from volpipe.ops.harness import ingestor_env, ndjson_records, topic_records
from volpipe.ops.sandbox import isolated_settings
from volpipe.ops.services import kafka

pytestmark = pytest.mark.integration


def _settings(tmp_path: Path, broker: Settings, products: str) -> Settings:
    tag = uuid.uuid4().hex[:8]
    settings = isolated_settings(
        tmp_path,
        KAFKA_BOOTSTRAP_SERVERS=broker.kafka_bootstrap_servers,
        PRODUCT_IDS=products,
        KAFKA_INPUT_TOPIC=f"import-raw-{tag}",
        KAFKA_DEADLETTER_TOPIC=f"import-dead-{tag}",
        KAFKA_OUTPUT_TOPIC=f"import-features-{tag}",
    )
    kafka.create_topics(settings)
    return settings


def _import(settings: Settings, *files: Path) -> dict:
    env = {**os.environ, **ingestor_env(settings, "ws://127.0.0.1:1")}  # the URL is not used by an import
    done = subprocess.run(
        [sys.executable, "-m", "ingest.import_recording", *map(str, files)],
        env=env,
        cwd=PROJECT_ROOT,
        capture_output=True,
        timeout=180,
    )
    assert done.returncode == 0, done.stderr.decode()[-3000:]
    # Kafka's ack latency is timed from the read, not from the recorded time (months ago): seconds at most.
    for p50 in re.findall(rb"ack_p50_ms=([\d.]+)", done.stderr):
        assert float(p50) < 60_000, done.stderr.decode()[-3000:]
    return orjson.loads(done.stdout.splitlines()[-1])


def _assert_topic_holds_the_file(settings: Settings, topic: str, lines: list[bytes]) -> None:
    records = topic_records(settings, topic, len(lines))
    assert sorted(value for _, _, value in records) == sorted(lines)  # each once, byte for byte
    for _, key, value in records:
        msg = orjson.loads(value).get("msg")
        assert key == (msg["events"][0]["tickers"][0]["product_id"].encode() if msg else None)


def test_a_generated_recording_lands_in_kafka_and_the_files_and_a_reimport_adds_nothing(tmp_path, kafka_broker):
    settings = _settings(tmp_path, kafka_broker, "BTC-USD,ETH-USD")
    recording = tmp_path / "recording.ndjson"
    expected = generated_recording(recording)
    out = _import(settings, recording)
    (result,) = out["files"]
    assert {k: result[k] for k in expected} == expected
    stored = expected["imported"] + expected["deadlettered"]
    assert out["total"]["delivered"] == stored and out["total"]["failed"] == 0
    raw, dead = ndjson_records(tmp_path / "raw"), ndjson_records(tmp_path / "quarantine")
    assert len(raw) == expected["imported"] and len(dead) == expected["deadlettered"]
    seqs = [orjson.loads(line)["ingest_seq"] for line in raw]
    assert seqs == sorted(set(seqs))
    _assert_topic_holds_the_file(settings, settings.kafka_input_topic, raw)
    _assert_topic_holds_the_file(settings, settings.kafka_deadletter_topic, dead)

    again = _import(settings, recording)
    assert again["files"][0]["status"] == "already imported" and again["total"]["delivered"] == 0
    assert ndjson_records(tmp_path / "raw") == raw
    assert len(topic_records(settings, settings.kafka_input_topic, len(raw))) == len(raw)


def test_the_real_recording_keeps_its_timestamps_and_sequence_numbers_exactly(tmp_path, kafka_broker):
    path = real_recording()
    settings = _settings(tmp_path, kafka_broker, "BTC-USD")
    sent = path.read_bytes().splitlines()
    tickers = [line for line in sent if orjson.loads(line)["channel"] == "ticker"]
    out = _import(settings, path)
    (result,) = out["files"]
    assert result["lines"] == len(sent) == result["imported"] + result["skipped_acks"]  # 5,970 + 1 ack
    assert result["imported"] == len(tickers) and result["deadlettered"] == 0 and result["gaps"] == 0
    assert out["total"]["delivered"] == len(tickers) and out["total"]["failed"] == 0
    raw = ndjson_records(tmp_path / "raw")
    records = [orjson.loads(line) for line in raw]
    # The exchange's message is stored byte for byte: timestamp text, sequence_num, prices.
    assert [line.split(b',"msg":', 1)[1][:-1] for line in raw] == tickers
    assert [r["msg"]["sequence_num"] for r in records] == [orjson.loads(t)["sequence_num"] for t in tickers]
    assert [r["recv_ns"] for r in records] == [parse_timestamp(r["msg"]["timestamp"]) for r in records]
    assert [r["ingest_seq"] for r in records] == list(range(len(tickers)))
    _assert_topic_holds_the_file(settings, settings.kafka_input_topic, raw)
