"""The streaming job end to end: real Kafka in, real Delta and Kafka out, restart, malformed input."""

from __future__ import annotations

import dataclasses
import time

import orjson
import pytest
from delta.tables import DeltaTable
from pyspark.sql import functions as F

from spark_jobs import features_stream
from tests.spark.pipeline_helpers import consume, pipeline_settings, produce, reference_features, same_bits
from volpipe.features import FEATURE_COLUMNS
from volpipe.market import synthetic_raw_records
from volpipe.tables import DELTA_PROPERTIES, FEATURES, kernel_properties

pytestmark = [pytest.mark.integration, pytest.mark.spark]

BAD = [
    ("BTC-USD", b"not json at all"),
    (
        "BTC-USD",
        b'{"ingest_seq":900000,"recv_ns":1,"conn_id":"c","msg":{"channel":"ticker","timestamp":"yesterday",'
        b'"sequence_num":1,"events":[{"type":"update","tickers":[{"product_id":"BTC-USD","price":"1"}]}]}}',
    ),
    (
        "BTC-USD",
        b'{"ingest_seq":900001,"recv_ns":1,"conn_id":"c","msg":{"channel":"ticker","timestamp":'
        b'"2026-01-01T00:00:00Z","sequence_num":2,"events":[{"type":"update","tickers":[{"product_id":"BTC-USD",'
        b'"price":"-5"}]}]}}',
    ),
]


def _table(spark, settings, name):
    return spark.read.format("delta").load(str(settings.delta_table(name))).toPandas()


def test_stream_writes_ticks_features_quarantine_and_kafka_and_restarts(spark, kafka_broker, tmp_path):
    settings = pipeline_settings(kafka_broker, tmp_path, window=5)
    records = list(synthetic_raw_records(3000, ("BTC-USD", "ETH-USD"), seed=11))
    produce(settings, records[:1200] + BAD)
    query = features_stream.start(spark, settings)
    try:
        query.processAllAvailable()
        produce(settings, records[1200:2000] + records[1000:1100])  # 100 redeliveries
        query.processAllAvailable()
        assert query.exception() is None and query.isActive
    finally:
        query.stop()
    # A restart from the same checkpoint continues the state and writes each tick once.
    produce(settings, records[2000:])
    query = features_stream.start(spark, settings)
    try:
        query.processAllAvailable()
    finally:
        query.stop()

    ticks = _table(spark, settings, "ticks")
    assert len(ticks) == 3000 and not ticks.duplicated(["product_id", "ingest_seq", "ticker_idx"]).any()
    assert sorted(ticks["ingest_seq"]) == list(range(3000))

    quarantine = _table(spark, settings, "quarantine").sort_values("ingest_seq", na_position="first")
    assert len(quarantine) == 3
    assert quarantine["raw"].map(bytes).tolist() == [value for _, value in BAD]
    assert [r.split(":")[0] for r in quarantine["reason"]] == [
        "not a raw record (JSON with ingest_seq, recv_ns, conn_id, msg)",
        "unparseable exchange timestamp",
        "no positive price and no valid book",
    ]

    expected = reference_features(records, window=5)
    features = _table(spark, settings, "features").sort_values(["product_id", "ingest_seq"]).reset_index(drop=True)
    assert len(features) == 3000 - 2 * 5
    assert features["ingest_seq"].tolist() == expected["ingest_seq"].tolist()
    for column in FEATURE_COLUMNS:
        assert same_bits(features[column].astype(float), expected[column].astype(float)), column
    assert (features["produced_ns"] >= features["recv_ns"]).all()
    stored = spark.read.format("delta").load(str(settings.delta_table("features")))
    nans = [c for c in FEATURE_COLUMNS if c != "mid_fallback" and stored.where(F.isnan(c)).count()]
    assert nans == []  # absent values are SQL nulls, never NaN

    messages = consume(settings, settings.kafka_output_topic, expected=len(features))
    keys = {(m["product_id"], m["ingest_seq"], m["ticker_idx"]) for m in messages}
    assert keys == set(zip(features["product_id"], features["ingest_seq"], features["ticker_idx"], strict=True))
    sample = next(m for m in messages if m["ingest_seq"] == features["ingest_seq"].iloc[-1])
    assert sample["rolling_vol"] == features["rolling_vol"].iloc[-1]


def test_stream_checkpoints_its_delta_logs_in_the_background(spark, kafka_broker, tmp_path):
    settings = dataclasses.replace(
        pipeline_settings(kafka_broker, tmp_path, window=5),
        stream_max_offsets_per_trigger=200,
        stream_delta_checkpoint_commits=4,
    )
    produce(settings, list(synthetic_raw_records(2000, ("BTC-USD",), seed=2)))
    query = features_stream.start(spark, settings)
    try:
        query.processAllAvailable()
    finally:
        query.stop()

    for name in ("ticks", "features"):
        detail = DeltaTable.forPath(spark, str(settings.delta_table(name))).detail().first()
        expected = {**DELTA_PROPERTIES[name], **(kernel_properties(5) if name == FEATURES else {})}
        assert detail["properties"] == expected
        assert detail["partitionColumns"] == ["date"]
        last_checkpoint = settings.delta_table(name) / "_delta_log" / "_last_checkpoint"
        deadline = time.monotonic() + 60
        while not last_checkpoint.exists() and time.monotonic() < deadline:
            time.sleep(0.5)
        # 10 batches of 200 (table versions 1-10): the background writes a checkpoint after every
        # 4th commit; Delta itself would not before version 10,000.
        assert orjson.loads(last_checkpoint.read_bytes())["version"] >= 4, name
    # No malformed input, so no commit to quarantine after its creation, so no checkpoint either.
    assert not (settings.delta_table("quarantine") / "_delta_log" / "_last_checkpoint").exists()
