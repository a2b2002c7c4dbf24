"""Rows to Kafka as JSON, published by the stream's stateful processor: ``ticks.features`` and ``ticks.predictions``.

Why from inside ``transformWithStateInPandas`` and not from ``foreachBatch``: a row published
there waits for nothing but its own computation. From ``foreachBatch`` it also waited for its
batch's Delta commits (0.35-0.5 s, more on a slow one), which was the difference between a
p99 above and below 2 s at 100 ticks/s (docs/streaming.md).

Messages: one JSON object per row with the columns the caller names (the ``features`` table
columns; ``PREDICTION_MESSAGE_COLUMNS``), key ``product_id`` (docs/features.md). At least
once: a batch re-run after a crash, or a retried task, publishes its rows again, so consumers
drop a ``(product_id, ingest_seq, ticker_idx)`` they have seen. A batch does not complete
until every message it produced is acknowledged.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping

import duckdb
import pandas as pd
from confluent_kafka import KafkaError, Producer
from pyspark.sql.types import DataType, DoubleType

from volpipe.errors import PipelineError
from volpipe.schema import struct_of
from volpipe.tables import PLACEHOLDER_INT_COLUMNS

# One producer per Python worker process and client configuration: workers are reused across
# batches, processors are not (each batch unpickles a new one).
_PRODUCERS: dict[tuple, tuple[Producer, list[KafkaError]]] = {}


def _json_column(name: str, spark_type: DataType) -> str:
    """The SQL giving column ``name`` its JSON value: null for NaN, infinities and -1 placeholders."""
    if isinstance(spark_type, DoubleType):
        return f"CASE WHEN isfinite({name}) THEN {name} END AS {name}"
    if name in PLACEHOLDER_INT_COLUMNS:
        return f"CASE WHEN {name} >= 0 THEN {name} END AS {name}"
    return name


@functools.cache
def _connection() -> duckdb.DuckDBPyConnection:
    """This worker's DuckDB connection (one thread: Spark owns the cores)."""
    connection = duckdb.connect()
    connection.execute("SET threads = 1")
    connection.execute("SET preserve_insertion_order = true")  # the default, relied upon: values in row order
    return connection


@functools.cache
def _query(columns: tuple[str, ...]) -> str:
    selected = ", ".join(_json_column(field.name, field.dataType) for field in struct_of(columns))
    return f"SELECT to_json(row)::VARCHAR FROM (SELECT {selected} FROM rows) AS row"


def json_values(rows: pd.DataFrame, columns: tuple[str, ...]) -> list[str]:
    """``rows``' ``columns`` -> JSON values, in order; absent values are null.

    Encoded by DuckDB over the whole frame: doubles in their shortest exact form, as orjson
    would, at a fifth of the time of a per-row ``orjson.dumps`` (docs/streaming.md).
    """
    connection, query = _connection(), _query(columns)
    connection.register("rows", rows)  # the query picks the columns: no copy of the frame
    try:
        return [value for (value,) in connection.execute(query).fetchall()]
    finally:
        connection.unregister("rows")


class RowPublisher:
    """Produces rows to Kafka topics and waits for their acknowledgements (picklable: holds settings only).

    Args:
        client_config: ``Settings.kafka_client_config()``: brokers and security settings.
        timeout_seconds: How long a batch waits for its acknowledgements.
    """

    def __init__(self, client_config: Mapping[str, str], timeout_seconds: float) -> None:
        self.client_config = dict(client_config)
        self._key = tuple(sorted(self.client_config.items()))
        self.timeout_seconds = timeout_seconds

    def _producer(self) -> tuple[Producer, list[KafkaError]]:
        """This worker's producer and the list its failed deliveries are reported to."""
        if self._key not in _PRODUCERS:
            failures: list[KafkaError] = []
            producer = Producer(
                {
                    **self.client_config,
                    "enable.idempotence": True,
                    "acks": "all",
                    "compression.type": "lz4",
                    "linger.ms": 5,
                    "queue.buffering.max.messages": 1_000_000,
                    "queue.buffering.max.kbytes": 2_097_151,
                    "message.timeout.ms": int(self.timeout_seconds * 1000),
                    # A Python callback per delivered message cost a third of the publishing time.
                    "delivery.report.only.error": True,
                    "on_delivery": lambda err, _msg: failures.append(err),
                }
            )
            _PRODUCERS[self._key] = (producer, failures)
        return _PRODUCERS[self._key]

    def open(self) -> None:
        """Creates this worker's producer ahead of the first rows: its connection and idempotence
        handshake (0.5-1 s) then run in librdkafka's threads while the rows are computed."""
        self._producer()

    def produce(self, topic: str, rows: pd.DataFrame, columns: tuple[str, ...]) -> None:
        """Queues ``rows`` (one product's) as messages of ``topic``; ``flush`` waits for them."""
        if rows.empty:
            return
        producer, _ = self._producer()
        produce = producer.produce  # positional arguments: keyword parsing was a fifth of a call's cost
        key = str(rows["product_id"].iloc[0]).encode()
        for value in json_values(rows, columns):
            while True:
                try:
                    produce(topic, value, key)
                    break
                except BufferError:  # local queue full: let deliveries drain
                    producer.poll(0.1)

    def flush(self) -> None:
        """Returns once Kafka acknowledged every queued message.

        Raises:
            PipelineError: A message was rejected or not acknowledged in time: the batch fails
                and is re-run on restart, publishing again.
        """
        producer, failures = self._producer()
        unacknowledged = producer.flush(self.timeout_seconds)
        if failures or unacknowledged:
            # The batch fails and is re-run in full: drop what is queued and start afresh then.
            producer.purge()
            producer.flush(0)
            del _PRODUCERS[self._key]
            raise PipelineError(
                f"Kafka at {self.client_config['bootstrap.servers']}: {unacknowledged} messages unacknowledged after "
                f"{self.timeout_seconds:.0f} s, {len(failures)} rejected (first: {failures[:1]})"
            )
