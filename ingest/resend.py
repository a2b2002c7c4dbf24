"""Re-send records Kafka never acknowledged, from the NDJSON files (``python -m ingest.resend``).

Input: the file and ``ingest_seq`` ranges the ingestor logged (``kafka undelivered
file=... ingest_seq=120-340,512``). Output: those lines produced again, same key and bytes,
to ``ticks.raw`` (files under ``raw/``) or ``ticks.deadletter`` (under ``quarantine/``).
Consumers drop records whose ``(product_id, ingest_seq)`` they have seen, so re-sending a
record that did arrive after all is harmless.

Also, for the ingestor's start (``unacknowledged``): the records at the end of the files that
Kafka lacks, i.e. those a killed run wrote but had not had acknowledged yet.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path

import orjson
from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition

from ingest.sinks import Record, read_tail
from volpipe.config import Settings
from volpipe.errors import PipelineError, ResendError
from volpipe.logs import configure_logging

log = logging.getLogger(__name__)


def parse_ranges(text: str) -> list[tuple[int, int]]:
    """``"120-340,512"`` -> ``[(120, 340), (512, 512)]``.

    Raises:
        ValueError: ``text`` is not comma-separated integers or ``a-b`` ranges.
    """
    ranges = []
    for part in text.split(","):
        first, _, last = part.strip().partition("-")
        ranges.append((int(first), int(last or first)))
    return ranges


def select(path: Path, ranges: list[tuple[int, int]]) -> list[tuple[bytes | None, bytes]]:
    """(key, value) of the lines of ``path`` whose ingest_seq is in ``ranges``; dead letters have no key."""
    chosen = []
    with open(path, "rb") as lines:
        for line in lines:
            record = orjson.loads(line)
            if any(first <= record["ingest_seq"] <= last for first, last in ranges):
                chosen.append((record_key(record), line.rstrip(b"\n")))
    return chosen


def record_key(record: dict) -> bytes | None:
    """The Kafka key of a stored record: its first product for a raw record, none for a dead letter."""
    return record["msg"]["events"][0]["tickers"][0]["product_id"].encode() if "msg" in record else None


def tail_lines(path: Path, first_seq: int) -> list[bytes]:
    """The lines at the end of ``path`` whose ingest_seq is ``first_seq`` or more (the file is in
    ingest_seq order)."""
    with open(path, "rb") as handle:
        lines, _ = read_tail(handle, lambda lines: bool(lines) and orjson.loads(lines[0])["ingest_seq"] < first_seq)
    return [line for line in lines if orjson.loads(line)["ingest_seq"] >= first_seq]


def kafka_seqs(settings: Settings, first_seq: int, window: int, timeout: float = 30) -> set[int]:
    """The ingest_seqs of ``first_seq`` or more among the last ``window`` messages of every
    partition of the raw and dead-letter topics.

    Raises:
        KafkaException: Kafka did not answer, or the messages were not all read within ``timeout``.
    """
    consumer = Consumer(
        {**settings.kafka_client_config(), "group.id": "volpipe-ingest-recheck", "enable.auto.commit": False}
    )
    try:
        starts: dict[tuple[str, int], int] = {}
        ends: dict[tuple[str, int], int] = {}
        for topic in (settings.kafka_input_topic, settings.kafka_deadletter_topic):
            metadata = consumer.list_topics(topic, timeout=10).topics[topic]
            if metadata.error is not None:
                raise KafkaException(metadata.error)
            for partition in metadata.partitions:
                low, high = consumer.get_watermark_offsets(TopicPartition(topic, partition), timeout=10)
                if high > low:
                    starts[(topic, partition)], ends[(topic, partition)] = max(low, high - window), high
        consumer.assign([TopicPartition(topic, partition, start) for (topic, partition), start in starts.items()])
        seqs: set[int] = set()
        deadline = time.monotonic() + timeout
        while ends:
            if time.monotonic() > deadline:
                raise KafkaException(f"partitions not read within {timeout}s: {sorted(ends)}")
            for message in consumer.consume(num_messages=10_000, timeout=1.0):
                if message.error() is not None:
                    raise KafkaException(message.error())
                seq = _ingest_seq(message.value())
                if seq is not None and seq >= first_seq:
                    seqs.add(seq)
                place = (message.topic(), message.partition())
                offset = message.offset()  # None only for an error, raised above
                if place in ends and offset is not None and offset >= ends[place] - 1:
                    del ends[place]
        return seqs
    finally:
        consumer.close()


def _ingest_seq(value: bytes | None) -> int | None:
    """A raw record's ingest_seq; None for anything else in the topics (``make up``'s Kafka health
    check writes a token to the dead-letter topic; a stranger may write anything)."""
    try:
        seq = orjson.loads(value)["ingest_seq"] if value else None
    except (orjson.JSONDecodeError, TypeError, KeyError):
        return None
    return seq if isinstance(seq, int) else None


def unacknowledged(settings: Settings, last_seq: int, window: int) -> list[Record]:
    """The records among the last ``window`` of the files that Kafka lacks, in ingest_seq order.

    A record Kafka took is among the last ``window`` messages of its partition, since the
    ingestor sent fewer than ``window`` records after it, so none is reported wrongly (a manual
    re-send after it can push it out: then it is re-sent once more, which consumers drop).

    Raises:
        KafkaException: Kafka could not be read.
    """
    first_seq = last_seq - window + 1
    have = kafka_seqs(settings, first_seq, window)
    missing = []
    for folder, deadletter in ((settings.raw_dir, False), (settings.quarantine_dir, True)):
        for path in sorted(folder.glob("*.ndjson")) if folder.is_dir() else ():
            for line in tail_lines(path, first_seq):
                record = orjson.loads(line)
                if record["ingest_seq"] not in have:
                    missing.append(
                        Record(
                            deadletter,
                            record_key(record),
                            line,
                            record["ingest_seq"],
                            record["recv_ns"],
                            time.time_ns(),
                        )
                    )
    return sorted(missing, key=lambda record: record.ingest_seq)


def resend(settings: Settings, path: Path, ranges: list[tuple[int, int]], timeout: float = 60) -> int:
    """Produces the chosen lines again (idempotent producer, acks=all); returns how many.

    Raises:
        ResendError: Some were still not acknowledged after ``timeout`` seconds.
    """
    chosen = select(path, ranges)
    producer = Producer(
        {**settings.kafka_client_config(), "enable.idempotence": True, "acks": "all", "compression.type": "lz4"}
    )
    for key, value in chosen:
        producer.produce(settings.kafka_deadletter_topic if key is None else settings.kafka_input_topic, value, key)
    left = producer.flush(timeout)
    if left:
        raise ResendError(f"{left} of {len(chosen)} records from {path} still unacknowledged after {timeout}s")
    log.info("re-sent records=%d file=%s", len(chosen), path)
    return len(chosen)


def main(argv: list[str] | None = None) -> int:
    """Re-sends the given ingest_seq ranges of one NDJSON file; prints how many."""
    parser = argparse.ArgumentParser(prog="python -m ingest.resend", description=__doc__.split("\n\n")[0])
    parser.add_argument("file", type=Path, help="data/raw/YYYYMMDD.ndjson or data/quarantine/YYYYMMDD.ndjson")
    parser.add_argument("ingest_seq", help="ranges as logged, e.g. 120-340,512")
    parser.add_argument("--bootstrap-servers", dest="kafka_bootstrap_servers", help="Kafka (KAFKA_BOOTSTRAP_SERVERS)")
    args = parser.parse_args(argv)
    configure_logging()
    try:
        ranges = parse_ranges(args.ingest_seq)
    except ValueError:
        parser.error(f"not ingest_seq ranges: {args.ingest_seq!r}")
    try:
        settings = Settings.from_env(kafka_bootstrap_servers=args.kafka_bootstrap_servers)
        print(resend(settings, args.file, ranges))
    except PipelineError as exc:
        log.error("re-send failed: %s", exc)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
