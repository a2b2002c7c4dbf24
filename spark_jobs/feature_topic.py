"""Feature rows to Kafka ``ticks.features``, published by the stream's stateful processor.

Why from inside ``transformWithStateInPandas`` and not from ``foreachBatch``: a row published
there waits for nothing but its own computation. From ``foreachBatch`` it also waited for its
batch's Delta commits (0.35-0.5 s, more on a slow one), which was the difference between a
p99 above and below 2 s at 100 ticks/s (docs/streaming.md).

Message: one JSON object per feature row with the ``features`` table columns, key
``product_id`` (docs/features.md). At least once: a batch re-run after a crash, or a retried
task, publishes its rows again, so consumers drop a ``(product_id, ingest_seq, ticker_idx)``
they have seen. A batch does not complete until every message it produced is acknowledged.
"""

from __future__ import annotations

import orjson
import pandas as pd
from confluent_kafka import KafkaError, Producer

from volpipe.errors import PipelineError
from volpipe.schema import FEATURE_TABLE_COLUMNS, PLACEHOLDER_INT_COLUMNS

# One producer per Python worker process and broker list: workers are reused across batches,
# processors are not (each batch unpickles a new one).
_PRODUCERS: dict[str, tuple[Producer, list[KafkaError]]] = {}


def feature_values(rows: pd.DataFrame) -> list[bytes]:
    """``FEATURE_TABLE_COLUMNS`` rows -> JSON values; absent values (NaN, -1 placeholders) are null.

    orjson writes NaN as null; a placeholder column is only converted when it has a placeholder.
    Rows are zipped from column lists: pandas' ``to_dict(orient="records")`` took a third longer.
    """
    columns = []
    for name in FEATURE_TABLE_COLUMNS:
        values = rows[name]
        if name in PLACEHOLDER_INT_COLUMNS and (values < 0).any():
            values = values.astype(object).where(values >= 0, None)
        columns.append(values.tolist())
    return [orjson.dumps(dict(zip(FEATURE_TABLE_COLUMNS, record))) for record in zip(*columns)]


class FeaturePublisher:
    """Produces feature rows and waits for their acknowledgements (picklable: holds settings only)."""

    def __init__(self, bootstrap_servers: str, topic: str, timeout_seconds: float) -> None:
        self.bootstrap_servers = bootstrap_servers
        self.topic = topic
        self.timeout_seconds = timeout_seconds

    def _producer(self) -> tuple[Producer, list[KafkaError]]:
        """This worker's producer and the list its failed deliveries are reported to."""
        if self.bootstrap_servers not in _PRODUCERS:
            failures: list[KafkaError] = []
            producer = Producer({
                "bootstrap.servers": self.bootstrap_servers,
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
            })
            _PRODUCERS[self.bootstrap_servers] = (producer, failures)
        return _PRODUCERS[self.bootstrap_servers]

    def publish(self, rows: pd.DataFrame) -> None:
        """Publishes ``rows`` (one product's feature rows) and returns once Kafka acknowledged them all.

        Raises:
            PipelineError: A message was rejected or not acknowledged in time: the batch fails
                and is re-run on restart, publishing again.
        """
        if rows.empty:
            return
        producer, failures = self._producer()
        key = str(rows["product_id"].iloc[0]).encode()
        for value in feature_values(rows):
            while True:
                try:
                    producer.produce(self.topic, value=value, key=key)
                    break
                except BufferError:  # local queue full: let deliveries drain
                    producer.poll(0.1)
        unacknowledged = producer.flush(self.timeout_seconds)
        if failures or unacknowledged:
            # The batch fails and is re-run in full: drop what is queued and start afresh then.
            producer.purge()
            producer.flush(0)
            del _PRODUCERS[self.bootstrap_servers]
            raise PipelineError(
                f"Kafka {self.topic}: {unacknowledged} feature messages unacknowledged after "
                f"{self.timeout_seconds:.0f} s, {len(failures)} rejected (first: {failures[:1]})"
            )
