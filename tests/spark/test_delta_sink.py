"""The stream's Delta sink: one collect split in Arrow gives each table exactly what Spark's
``table_frames`` gives it, and the delta-rs appends land in the tables Delta-Spark created,
marked, partitioned and with the statistics their properties ask for."""

from __future__ import annotations

import dataclasses
import json
from concurrent.futures import Future

import pyarrow as pa
import pytest
from deltalake import DeltaTable

from spark_jobs.delta_sink import BatchWriter, prepare_tables, split_tables, stream_rows, table_frames
from volpipe.config import Settings
from volpipe.modeling.registry import ScoringModel
from volpipe.schema import struct_of
from volpipe.tables import PROCESSOR_COLUMNS, STREAM_TABLES, table_columns

pytestmark = [pytest.mark.spark, pytest.mark.integration]

DAY_NS = 86_400 * 10**9
T0_NS = 20_454 * DAY_NS + 3_600 * 10**9  # 2026-01-01T01:00Z
MODEL = ScoringModel(
    name="volpipe-test", version="3", run_id="run-1", threshold=0.25, label_mode="forward", columns=("rolling_vol",)
)


def processor_rows() -> list[dict]:
    """Tick rows (scored, unscored, before the window fills, a day later) and two quarantine rows."""
    base = dict.fromkeys(PROCESSOR_COLUMNS)
    base.update(
        product_id="BTC-USD",
        conn_id="c1",
        event_type="update",
        sequence_num=7,
        ticker_idx=0,
        price=100.5,
        best_bid=100.0,
        best_ask=101.0,
        best_bid_quantity=1.5,
        best_ask_quantity=2.5,
        mid_fallback=False,
        produced_ns=T0_NS + 5,
        predicted_label=-1,
        kind="tick",
    )
    rows = []
    for seq, (rolling_vol, probability) in enumerate([(None, None), (0.01, 0.75), (0.02, None), (0.03, 0.125)]):
        rows.append(
            {
                **base,
                "ingest_seq": seq,
                "exchange_ts_ns": T0_NS + seq * DAY_NS // 2,
                "recv_ns": T0_NS + seq,
                "rolling_vol": rolling_vol,
                "midprice": 100.5,
                "probability": probability,
                "predicted_label": -1 if probability is None else int(probability > 0.25),
            }
        )
    # Quarantine rows: placeholders (-1) where the record had nothing; dated by receipt time.
    for seq, recv_ns in ((10, T0_NS + DAY_NS), (-1, T0_NS + 2 * DAY_NS)):
        rows.append(
            {
                **dict.fromkeys(PROCESSOR_COLUMNS),
                "kind": "quarantine",
                "ingest_seq": seq,
                "ticker_idx": -1,
                "sequence_num": -1,
                "exchange_ts_ns": -1,
                "recv_ns": recv_ns,
                "predicted_label": -1,
                "mid_fallback": False,
                "produced_ns": T0_NS,
                "error": "not json",
                "raw": b"{",
                "source": "raw:0:9",
                "conn_id": "c1",
            }
        )
    return rows


def test_the_arrow_split_gives_each_table_what_spark_gives_it(spark):
    batch = spark.createDataFrame(processor_rows(), struct_of(PROCESSOR_COLUMNS))
    frame, stored = stream_rows(batch, MODEL)
    arrow = split_tables(frame.toArrow(), stored)
    expected = {name: rows.toArrow() for name, rows in table_frames(batch, MODEL).items()}
    assert set(arrow) == set(STREAM_TABLES)
    for name in STREAM_TABLES:
        assert arrow[name].schema == expected[name].schema, name
        assert arrow[name].column_names == list(table_columns(name))
        assert arrow[name].to_pylist() == expected[name].to_pylist(), name
    assert [arrow[name].num_rows for name in STREAM_TABLES] == [4, 3, 2, 2]
    quarantine = arrow["quarantine"].to_pylist()
    assert [row["ingest_seq"] for row in quarantine] == [10, None]  # the placeholder became a null
    assert [str(row["date"]) for row in quarantine] == ["2026-01-02", "2026-01-03"]  # by receipt time
    predictions = arrow["predictions_live"].to_pylist()
    assert [(row["probability"], row["predicted_label"], row["model_version"]) for row in predictions] == [
        (0.75, 1, "3"),
        (0.125, 0, "3"),
    ]


def test_the_predictions_carry_the_pinned_model_exactly(spark):
    """The batch's frame is built from SQL text: quotes, backslashes and a threshold's last digit survive it."""
    model = dataclasses.replace(MODEL, name="it's a \\ model", version="12", run_id="r'1\\'", threshold=0.1 + 0.2)
    batch = spark.createDataFrame(processor_rows(), struct_of(PROCESSOR_COLUMNS))
    frame, stored = stream_rows(batch, model)
    predictions = split_tables(frame.toArrow(), stored)["predictions_live"].to_pylist()
    assert len(predictions) == 2
    for row in predictions:
        assert (row["model_name"], row["model_version"], row["run_id"], row["label_mode"]) == (
            "it's a \\ model",
            "12",
            "r'1\\'",
            "forward",
        )
        assert row["threshold"] == 0.30000000000000004


def stream_tables(spark, session_settings, tmp_path) -> tuple[Settings, Future[None]]:
    """The stream's tables and a checkpoint of query id q1 under ``tmp_path``, and a done ``tables_ready``."""
    settings = dataclasses.replace(
        session_settings, delta_dir=tmp_path / "delta", checkpoint_dir=tmp_path / "checkpoints"
    )
    prepare_tables(spark, settings)
    (settings.checkpoint("features")).mkdir(parents=True)
    (settings.checkpoint("features") / "metadata").write_text(json.dumps({"id": "q1"}))
    ready: Future[None] = Future()
    ready.set_result(None)
    return settings, ready


def test_a_batch_is_appended_by_delta_rs_with_its_marker_and_read_back_by_spark(spark, session_settings, tmp_path):
    settings, ready = stream_tables(spark, session_settings, tmp_path)
    batch = spark.createDataFrame(processor_rows(), struct_of(PROCESSOR_COLUMNS))
    writer = BatchWriter(settings, ready)
    writer(batch, 0)
    writer(batch, 1)
    for name, rows in {"ticks": 4, "features": 3, "quarantine": 2, "predictions_live": 2}.items():
        path = str(settings.delta_table(name))
        assert spark.read.format("delta").load(path).count() == 2 * rows, name
        markers = [commit.get("userMetadata") for commit in DeltaTable(path).history()]
        assert markers[:3] == ["features-stream-q1 batch 1", "features-stream-q1 batch 0", None], name
    ticks = DeltaTable(str(settings.delta_table("ticks")))
    assert ticks.metadata().partition_columns == ["date"]
    adds = pa.table(ticks.get_add_actions(flatten=True))
    assert sorted({str(day) for day in adds["partition.date"].to_pylist()}) == ["2026-01-01", "2026-01-02"]
    assert "min.exchange_ts_ns" in adds.column_names and "min.price" not in adds.column_names  # stats columns
    # A restarted run's first batch finds batch 1 already written and appends nothing again.
    BatchWriter(settings, ready)(batch, 1)
    assert spark.read.format("delta").load(str(settings.delta_table("ticks"))).count() == 8


def test_appends_go_on_after_another_writer_committed_between_batches(spark, session_settings, tmp_path):
    """A commit of another writer between two batches (the maintenance DAG's OPTIMIZE) is kept, and the
    next batch is appended after it with its own marker."""
    settings, ready = stream_tables(spark, session_settings, tmp_path)
    batch = spark.createDataFrame(processor_rows(), struct_of(PROCESSOR_COLUMNS))
    writer = BatchWriter(settings, ready)
    ticks = str(settings.delta_table("ticks"))
    writer(batch, 0)
    writer(batch, 1)
    spark.sql(f"OPTIMIZE delta.`{ticks}`")
    writer(batch, 2)
    assert spark.read.format("delta").load(ticks).count() == 3 * 4
    history = DeltaTable(ticks).history()
    assert [(commit["operation"], commit.get("userMetadata")) for commit in history[:4]] == [
        ("WRITE", "features-stream-q1 batch 2"),
        ("OPTIMIZE", None),
        ("WRITE", "features-stream-q1 batch 1"),
        ("WRITE", "features-stream-q1 batch 0"),
    ]
