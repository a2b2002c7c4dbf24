"""Re-send records Kafka never acknowledged, from the NDJSON files (``python -m ingest.resend``).

Input: the file and ``ingest_seq`` ranges the ingestor logged (``kafka undelivered
file=... ingest_seq=120-340,512``). Output: those lines produced again, same key and bytes,
to ``ticks.raw`` (files under ``raw/``) or ``ticks.deadletter`` (under ``quarantine/``).
Consumers drop records whose ``(product_id, ingest_seq)`` they have seen, so re-sending a
record that did arrive after all is harmless.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

import orjson
from confluent_kafka import Producer

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
                key = None
                if "msg" in record:  # raw records are keyed by their first product, like the ingestor does
                    key = record["msg"]["events"][0]["tickers"][0]["product_id"].encode()
                chosen.append((key, line.rstrip(b"\n")))
    return chosen


def resend(settings: Settings, path: Path, ranges: list[tuple[int, int]], timeout: float = 60) -> int:
    """Produces the chosen lines again (idempotent producer, acks=all); returns how many.

    Raises:
        ResendError: Some were still not acknowledged after ``timeout`` seconds.
    """
    chosen = select(path, ranges)
    producer = Producer({**settings.kafka_client_config(), "enable.idempotence": True,
                         "acks": "all", "compression.type": "lz4"})
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
