"""Helpers of the feature pipeline tests: per-test topics and tables, Kafka I/O, an independent reference."""

from __future__ import annotations

import dataclasses
import uuid
from pathlib import Path

import numpy as np
import orjson
import pandas as pd
from confluent_kafka import Consumer, Producer

from volpipe.coinbase import parse_timestamp
from volpipe.config import Settings
from volpipe.dates import daily_file_stem
from volpipe.features import INPUT_COLUMNS, WindowState, featurize_frame


def pipeline_settings(broker: Settings, root: Path, window: int = 5) -> Settings:
    """The broker's settings with fresh topics and every table/checkpoint/raw file under ``root``."""
    from volpipe.ops.services.kafka import create_topics

    tag = uuid.uuid4().hex[:8]
    settings = dataclasses.replace(
        broker,
        data_dir=root,
        raw_dir=root / "raw",
        delta_dir=root / "delta",
        checkpoint_dir=root / "checkpoints",
        kafka_input_topic=f"raw-{tag}",
        kafka_output_topic=f"features-{tag}",
        kafka_deadletter_topic=f"dead-{tag}",
        kafka_predictions_topic=f"predictions-{tag}",
        feature_window_size=window,
    )
    create_topics(settings)
    return settings


def produce(settings: Settings, records: list[tuple[str, bytes]]) -> None:
    """Sends (key, value) records to the input topic, like the ingestor does."""
    producer = Producer({"bootstrap.servers": settings.kafka_bootstrap_servers, "linger.ms": 20})
    for key, value in records:
        producer.produce(settings.kafka_input_topic, key=key.encode(), value=value)
    assert producer.flush(30) == 0


def write_raw_files(settings: Settings, records: list[tuple[str, bytes]]) -> None:
    """Daily NDJSON files by UTC receipt date, as the ingestor writes them."""
    settings.raw_dir.mkdir(parents=True, exist_ok=True)
    for _, value in records:
        path = settings.raw_dir / f"{daily_file_stem(orjson.loads(value)['recv_ns'])}.ndjson"
        with path.open("ab") as out:
            out.write(value + b"\n")


def stream_everything(spark, settings: Settings, records: list[tuple[str, bytes]]) -> None:
    """Produces ``records`` and runs the feature stream until it has processed all of them."""
    from spark_jobs import features_stream

    produce(settings, records)
    query = features_stream.start(spark, settings)
    try:
        query.processAllAvailable()
    finally:
        query.stop()


def consume(settings: Settings, topic: str, expected: int, rounds: int = 30) -> list[dict]:
    """JSON values of ``topic`` from the start, until ``expected`` arrived or ``rounds`` idle seconds."""
    consumer = Consumer(
        {
            "bootstrap.servers": settings.kafka_bootstrap_servers,
            "group.id": f"test-{uuid.uuid4()}",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
        }
    )
    consumer.subscribe([topic])
    values: list[dict] = []
    try:
        for _ in range(rounds):
            for message in consumer.consume(num_messages=5000, timeout=1.0):
                assert message.error() is None, message.error()
                values.append(orjson.loads(message.value()))
            if len(values) >= expected:
                break
    finally:
        consumer.close()
    return values


def reference_features(records: list[tuple[str, bytes]], window: int) -> pd.DataFrame:
    """Features computed without Spark: parse records in Python, run the kernel once per product."""
    rows = []
    for _, value in records:
        rec = orjson.loads(value)
        msg = rec["msg"]
        for idx, ticker in enumerate(t for event in msg["events"] for t in event["tickers"]):
            rows.append(
                {
                    "product_id": ticker["product_id"],
                    "ingest_seq": rec["ingest_seq"],
                    "ticker_idx": idx,
                    "conn_id": rec["conn_id"],
                    "sequence_num": msg["sequence_num"],
                    "exchange_ts_ns": parse_timestamp(msg["timestamp"]),
                    "recv_ns": rec["recv_ns"],
                    "event_type": msg["events"][0]["type"],
                    **{
                        k: float(ticker[k])
                        for k in ("price", "best_bid", "best_ask", "best_bid_quantity", "best_ask_quantity")
                    },
                }
            )
    frame = pd.DataFrame(rows, columns=list(INPUT_COLUMNS))
    outs = [featurize_frame(group, WindowState(), window)[0] for _, group in frame.groupby("product_id")]
    out = pd.concat(outs, ignore_index=True)
    return out[out["ready"]].drop(columns="ready").sort_values(["product_id", "ingest_seq"]).reset_index(drop=True)


def same_bits(left: pd.Series, right: pd.Series) -> bool:
    """Float columns equal bit for bit; null and NaN both count as absent and must line up."""
    a = left.to_numpy(np.float64, na_value=np.nan)
    b = right.to_numpy(np.float64, na_value=np.nan)
    if a.shape != b.shape or not np.array_equal(np.isnan(a), np.isnan(b)):
        return False
    present = ~np.isnan(a)
    return bool(np.array_equal(a[present].view(np.int64), b[present].view(np.int64)))


def register_versions(settings, count: int) -> list[str]:
    """Trains ``count`` times on feature rows a model can predict (another folder): registered
    versions, oldest first; the first training promotes its candidate (the gate passes)."""
    from tests.model.skill import skilled_rows
    from volpipe.modeling import train
    from volpipe.modeling.synthetic import write_features

    train_settings = dataclasses.replace(settings, delta_dir=settings.data_dir / "training-delta", train_min_rows=1000)
    write_features(train_settings.delta_table("features"), skilled_rows())
    return [
        str(train.run(dataclasses.replace(train_settings, model_seed=seed))["registered_version"])
        for seed in range(count)
    ]
