"""Kafka traffic for the streaming benchmarks, defined once: a backlog, live ticks, latency consumers.

The stream benchmarks (``features_throughput``, ``features_latency``) and the first featurizer
(``first_featurizer``) feed and read Kafka the same way, so their figures compare.
"""

from __future__ import annotations

import threading
import time
import uuid

import orjson
from confluent_kafka import Consumer, Producer

from volpipe.coinbase import ticker_frame
from volpipe.config import Settings
from volpipe.market import SyntheticMarket, synthetic_raw_records
from volpipe.records import raw_record


def produce_backlog(settings: Settings, ticks: int, products: tuple[str, ...]) -> float:
    """Produces ``ticks`` raw records; returns the seconds it took."""
    began = time.perf_counter()
    # Idempotent, as the ingestor's producer is (ingest/sinks.py).
    producer = Producer(
        {
            "bootstrap.servers": settings.kafka_bootstrap_servers,
            "enable.idempotence": True,
            "linger.ms": 50,
            "batch.size": 1_000_000,
            "queue.buffering.max.messages": 2_000_000,
            "compression.type": "lz4",
        }
    )
    for key, value in synthetic_raw_records(ticks, products, seed=3):
        while True:
            try:
                producer.produce(settings.kafka_input_topic, key=key.encode(), value=value)
                break
            except BufferError:
                producer.poll(0.1)
    assert producer.flush(120) == 0
    return time.perf_counter() - began


def produce_live(settings: Settings, rate: float, seconds: float, stop: threading.Event) -> int:
    """Ticker frames stamped 'now' at ``rate`` per second; returns how many were sent."""
    producer = Producer({"bootstrap.servers": settings.kafka_bootstrap_servers, "linger.ms": 0})
    market = iter(SyntheticMarket(("BTC-USD", "ETH-USD"), seed=9))
    began = time.monotonic()
    sent = 0
    while not stop.is_set() and time.monotonic() - began < seconds:
        event = next(market)._replace(time_ns=time.time_ns())
        value = raw_record(sent, time.time_ns(), "bench-0", ticker_frame(event, sent))
        producer.produce(settings.kafka_input_topic, key=event.product_id.encode(), value=value)
        producer.poll(0)
        sent += 1
        time.sleep(max(0.0, began + sent / rate - time.monotonic()))
    producer.flush(30)
    return sent


def consume_latencies(settings: Settings, topic: str, stop: threading.Event, out: list[tuple[int, int]]) -> None:
    """Appends (exchange_ts_ns, latency_ns) of every message of ``topic`` until ``stop``."""
    consumer = Consumer(
        {
            "bootstrap.servers": settings.kafka_bootstrap_servers,
            "group.id": f"bench-{uuid.uuid4()}",
            "auto.offset.reset": "earliest",
            "fetch.wait.max.ms": 10,
        }
    )
    consumer.subscribe([topic])
    try:
        while not stop.is_set():
            for message in consumer.consume(num_messages=1000, timeout=0.1):
                value = message.value()
                if message.error() is None and value is not None:  # feature rows: never a tombstone
                    now = time.time_ns()
                    ts = orjson.loads(value)["exchange_ts_ns"]
                    out.append((ts, now - ts))
    finally:
        consumer.close()
