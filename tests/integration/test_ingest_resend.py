"""Re-sending logged ingest_seq ranges from an NDJSON file puts exactly those lines in Kafka."""

from __future__ import annotations

import uuid

import pytest

from ingest.resend import main, parse_ranges
from volpipe.market import synthetic_raw_records
from volpipe.ops.harness import topic_records
from volpipe.ops.sandbox import isolated_settings
from volpipe.ops.services import kafka
from volpipe.records import deadletter_record

pytestmark = pytest.mark.integration


def test_parse_ranges():
    assert parse_ranges("120-140, 512") == [(120, 140), (512, 512)]
    with pytest.raises(ValueError):
        parse_ranges("12-x")


def test_resend_produces_the_chosen_lines_unchanged(tmp_path, kafka_broker, monkeypatch, capsys):
    tag = uuid.uuid4().hex[:8]
    settings = isolated_settings(
        tmp_path,
        KAFKA_BOOTSTRAP_SERVERS=kafka_broker.kafka_bootstrap_servers,
        KAFKA_INPUT_TOPIC=f"resend-raw-{tag}",
        KAFKA_DEADLETTER_TOPIC=f"resend-dead-{tag}",
        KAFKA_OUTPUT_TOPIC=f"resend-features-{tag}",
    )
    kafka.create_topics(settings)
    lines = [value for _, value in synthetic_raw_records(50, ("BTC-USD", "ETH-USD"))]
    lines.append(deadletter_record(50, 1, "c-1", "not JSON", b"{oops"))
    path = tmp_path / "20260101.ndjson"
    path.write_bytes(b"\n".join(lines) + b"\n")
    for name in ("KAFKA_BOOTSTRAP_SERVERS", "KAFKA_INPUT_TOPIC", "KAFKA_DEADLETTER_TOPIC", "KAFKA_OUTPUT_TOPIC"):
        monkeypatch.setenv(name, str(getattr(settings, name.lower())))
    assert main([str(path), "3-5,40,50"]) == 0
    assert capsys.readouterr().out.strip() == "5"
    raw = topic_records(settings, settings.kafka_input_topic, 4)
    assert sorted(value for _, _, value in raw) == sorted([lines[3], lines[4], lines[5], lines[40]])
    for _, key, value in raw:
        assert key.decode() in value.decode()
    dead = topic_records(settings, settings.kafka_deadletter_topic, 1)
    assert [value for _, _, value in dead] == [lines[50]]
