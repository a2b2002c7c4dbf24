"""The replay over NDJSON equals the stream over Kafka on the same input, with zero differences."""

from __future__ import annotations

import dataclasses
import datetime as dt

import pytest

from spark_jobs import compare, features_stream, replay
from tests.spark.pipeline_helpers import pipeline_settings, produce, stream_everything, write_raw_files
from volpipe.dates import DateRange
from volpipe.errors import KernelMismatch, ReplayMismatch
from volpipe.market import DEFAULT_START_NS, synthetic_raw_records

pytestmark = [pytest.mark.integration, pytest.mark.spark]

DAY1, DAY2 = dt.date(2025, 12, 31), dt.date(2026, 1, 1)
ONLY_DAY2, BOTH_DAYS = DateRange(DAY2, DAY2), DateRange(DAY1, DAY2)


def test_replay_matches_stream_bit_for_bit_and_compare_finds_changes(spark, kafka_broker, tmp_path):
    settings = pipeline_settings(kafka_broker, tmp_path, window=5)
    # Minutes before midnight onwards: two daily files, two products.
    records = list(synthetic_raw_records(4000, ("BTC-USD", "ETH-USD"), seed=5, start_ns=DEFAULT_START_NS - 200 * 10**9))
    write_raw_files(settings, records)
    assert sorted(p.name for p in settings.raw_dir.iterdir()) == ["20251231.ndjson", "20260101.ndjson"]
    # The stream sees the records in uneven micro-batches, with redeliveries.
    settings = dataclasses.replace(settings, stream_max_offsets_per_trigger=700)
    produce(settings, records[:2500] + records[2400:2450] + records[2500:])
    query = features_stream.start(spark, settings)
    try:
        query.processAllAvailable()
    finally:
        query.stop()

    written = replay.run(spark, settings, ONLY_DAY2)  # warm-up from DAY1's file
    assert written > 0
    report = compare.compare(spark, settings, ONLY_DAY2)
    assert report.ok, report.summary()
    assert report.stream_rows == report.replay_rows == written

    assert replay.run(spark, settings, BOTH_DAYS) == 4000 - 2 * 5  # idempotent over the overlap
    report = compare.check(spark, settings, BOTH_DAYS)
    assert report.replay_rows == 4000 - 2 * 5

    table = f"delta.`{settings.delta_table('features_replay')}`"
    spark.sql(f"UPDATE {table} SET rolling_vol = rolling_vol * (1 + 1e-15) WHERE ingest_seq = 3000")
    spark.sql(f"DELETE FROM {table} WHERE ingest_seq = 3001")
    report = compare.compare(spark, settings, BOTH_DAYS)
    assert (report.only_stream, report.only_replay, report.differing["rolling_vol"]) == (1, 0, 1)
    assert sum(report.differing.values()) == 1
    with pytest.raises(ReplayMismatch, match="only_stream=1"):
        compare.check(spark, settings, BOTH_DAYS)


def test_window_parameters_travel_with_the_tables(spark, kafka_broker, tmp_path):
    """Tables record the kernel that made them; another W is refused by the stream, the replay and the comparison."""
    from volpipe.tables import FEATURES, FEATURES_REPLAY, table_properties

    settings = pipeline_settings(kafka_broker, tmp_path, window=5)
    records = list(synthetic_raw_records(300, ("BTC-USD",), seed=2, start_ns=DEFAULT_START_NS))
    write_raw_files(settings, records)
    stream_everything(spark, settings, records)
    replay.run(spark, settings, ONLY_DAY2)
    for table in (FEATURES, FEATURES_REPLAY):  # readable without Spark, one delta-rs call
        properties = table_properties(settings.delta_table(table))
        assert properties["volpipe.kernel.window"] == "5"
        assert properties["volpipe.kernel.version"] == "1"
        assert "vol_300t:std:300" in properties["volpipe.kernel.extraWindows"]

    other = dataclasses.replace(settings, feature_window_size=7)
    with pytest.raises(KernelMismatch, match=r"window=5.*window=7"):
        features_stream.start(spark, other)
    with pytest.raises(KernelMismatch, match=r"window=5.*window=7"):
        replay.run(spark, other, ONLY_DAY2)
    # A replay table rebuilt with another W cannot be compared with the stream's.
    moved = dataclasses.replace(other, delta_dir=tmp_path / "other-delta")
    (moved.delta_dir / FEATURES).parent.mkdir(parents=True)
    (settings.delta_table(FEATURES)).rename(moved.delta_table(FEATURES))
    replay.run(spark, moved, ONLY_DAY2)
    with pytest.raises(ReplayMismatch, match="different kernels"):
        compare.compare(spark, moved, ONLY_DAY2)
