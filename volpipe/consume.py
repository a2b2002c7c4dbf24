"""Reads ``ticks.features`` or ``ticks.predictions`` and passes each row on once.

Inputs: a topic the stream publishes to: JSON rows keyed by product (``spark_jobs.kafka_rows``).
Outputs: each row's JSON value once, in topic order; ``python -m volpipe.consume`` prints
them as NDJSON on stdout.

The stream publishes at least once: a micro-batch re-run after a crash publishes its rows
again (docs/reliability.md). Repeats are easy to spot, though: the stream publishes each
product's rows in increasing ``(ingest_seq, ticker_idx)`` order (the kernel sorts and drops
what it has seen), to one partition (the message key is the product), and a re-run only
publishes a prefix of them again. So a row whose key is at or below the highest key of its
product seen so far is a repeat, and one key per product is all the memory it takes
(docs/streaming.md, "Consuming the stream's topics").
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
import uuid
from collections.abc import Iterator, Mapping
from typing import Any

import orjson
from confluent_kafka import OFFSET_BEGINNING, OFFSET_END, Consumer, KafkaException, TopicPartition

from volpipe.config import Settings
from volpipe.errors import PipelineError

log = logging.getLogger(__name__)


class RepeatFilter:
    """Tells a row seen for the first time from a repeat, by ``volpipe.tables.ROW_KEYS``.

    Keeps the highest ``(ingest_seq, ticker_idx)`` passed per product: correct as long as each
    product's rows arrive in increasing key order apart from repeated prefixes, as the stream
    publishes them.
    """

    def __init__(self) -> None:
        self._highest: dict[str, tuple[int, int]] = {}
        self.passed = 0
        self.dropped = 0

    def first_time(self, row: Mapping[str, Any]) -> bool:
        """Whether ``row`` (with ``product_id``, ``ingest_seq``, ``ticker_idx``) is new; remembers it."""
        product, key = row["product_id"], (row["ingest_seq"], row["ticker_idx"])
        highest = self._highest.get(product)
        if highest is not None and key <= highest:
            self.dropped += 1
            return False
        self._highest[product] = key
        self.passed += 1
        return True


def _partitions(consumer: Consumer, topic: str, start: int) -> list[TopicPartition]:
    try:
        metadata = consumer.list_topics(topic, timeout=10).topics.get(topic)
    except KafkaException as exc:
        raise PipelineError(f"Kafka topic {topic}: no metadata from the brokers: {exc}") from exc
    if metadata is None or metadata.error is not None:
        raise PipelineError(f"Kafka topic {topic} not readable: {metadata.error if metadata else 'missing'}")
    return [TopicPartition(topic, partition, start) for partition in sorted(metadata.partitions)]


def rows_once(
    settings: Settings,
    topic: str,
    *,
    from_beginning: bool = True,
    timeout_seconds: float | None = None,
    max_rows: int | None = None,
    repeats: RepeatFilter | None = None,
) -> Iterator[tuple[bytes, dict]]:
    """Reads ``topic`` (``read_committed``, no consumer group) and yields each row once.

    Args:
        settings: Kafka client settings (``Settings.kafka_client_config()``).
        topic: ``ticks.features`` or ``ticks.predictions`` (any topic of rows with ``ROW_KEYS``).
        from_beginning: Start at the topic's start; otherwise at its end (new rows only).
        timeout_seconds: Stop after this long without a message; None: follow the topic forever.
        max_rows: Stop after yielding this many rows.
        repeats: The filter to use (its counters tell how many rows were dropped); a new one by default.

    Yields:
        ``(value, row)``: the message's JSON value and its decoded row.

    Raises:
        PipelineError: The topic cannot be read, or a message is not a row.
    """
    repeats = repeats if repeats is not None else RepeatFilter()
    consumer = Consumer(
        {
            **settings.kafka_client_config(),
            "group.id": f"volpipe-consume-{uuid.uuid4()}",
            "isolation.level": "read_committed",
            "enable.auto.commit": False,
        }
    )
    try:
        consumer.assign(_partitions(consumer, topic, OFFSET_BEGINNING if from_beginning else OFFSET_END))
        yielded, last_message = 0, time.monotonic()
        while max_rows is None or yielded < max_rows:
            messages = consumer.consume(num_messages=1000, timeout=0.5)
            if not messages and timeout_seconds is not None and time.monotonic() - last_message > timeout_seconds:
                return
            for message in messages:
                last_message = time.monotonic()
                error, value = message.error(), message.value()
                if error is not None:
                    if error.fatal():
                        raise PipelineError(f"Kafka topic {topic}: {error}")
                    log.warning("Kafka consumer error topic=%s error=%s", topic, error)
                    continue
                try:
                    if value is None:  # a tombstone
                        raise TypeError("no value")
                    row = orjson.loads(value)
                    new = repeats.first_time(row)
                except (orjson.JSONDecodeError, KeyError, TypeError) as exc:
                    raise PipelineError(
                        f"Kafka {topic} partition {message.partition()} offset {message.offset()}: "
                        f"not a row with product_id, ingest_seq, ticker_idx: {exc!r}"
                    ) from exc
                if new:
                    yield value, row
                    yielded += 1
                    if yielded == max_rows:
                        return
    finally:
        consumer.close()


def main(argv: list[str] | None = None) -> int:
    """Prints each row of a topic once as NDJSON; says on stderr how many repeats it dropped."""
    from volpipe.logs import configure_logging

    parser = argparse.ArgumentParser(prog="python -m volpipe.consume", description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--topic",
        help="topic to read (default: KAFKA_OUTPUT_TOPIC, i.e. ticks.features; "
        "KAFKA_PREDICTIONS_TOPIC is ticks.predictions)",
    )
    parser.add_argument("--bootstrap-servers", help="Kafka (KAFKA_BOOTSTRAP_SERVERS)")
    parser.add_argument("--new-only", action="store_true", help="start at the end of the topic, not its beginning")
    parser.add_argument(
        "--timeout",
        type=float,
        metavar="SECONDS",
        help="exit after SECONDS without a message (default: follow the topic until Ctrl-C)",
    )
    parser.add_argument("--max-messages", type=int, metavar="N", help="exit after printing N rows")
    args = parser.parse_args(argv)
    configure_logging()
    repeats, topic = RepeatFilter(), args.topic
    try:
        settings = Settings.from_env(kafka_bootstrap_servers=args.bootstrap_servers)
        topic = topic or settings.kafka_output_topic
        out = sys.stdout.buffer
        for value, _row in rows_once(
            settings,
            topic,
            from_beginning=not args.new_only,
            timeout_seconds=args.timeout,
            max_rows=args.max_messages,
            repeats=repeats,
        ):
            out.write(value + b"\n")
        out.flush()
    except PipelineError as exc:
        log.error("consume failed: %s", exc)
        return 1
    except KeyboardInterrupt:
        pass
    log.info("consumed topic=%s rows=%d repeats_dropped=%d", topic, repeats.passed, repeats.dropped)
    return 0


if __name__ == "__main__":
    sys.exit(main())
