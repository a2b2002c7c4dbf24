"""The NDJSON folder full or unwritable under the real ingestor: it says so at ERROR with the path
and the errno, stops (exit 1) after Kafka took everything it stored, never counts or sends a record
it could not store, and a restart once there is room again resumes with nothing lost or duplicated.

"Full" is RLIMIT_FSIZE on the ingestor's process (EFBIG past it, in the middle of a write), since
a real full filesystem needs root to mount; "unwritable" is a read-only folder (chmod) or, for
root, whom chmod does not stop, a regular file where the folder should be.
"""

from __future__ import annotations

import os
import re
import uuid
from pathlib import Path

import orjson
import pytest

from volpipe.config import Settings
from volpipe.ops.harness import (
    ExchangeProcess,
    IngestorProcess,
    ingestor_env,
    ndjson_records,
    topic_records,
    wait_until,
)
from volpipe.ops.sandbox import isolated_settings
from volpipe.ops.services import kafka

pytestmark = pytest.mark.integration

LIMIT = 200_000  # bytes: ~400 records, reached in about 2 s at 300 ticks/s


def _settings(tmp_path: Path, broker: Settings) -> Settings:
    tag = uuid.uuid4().hex[:8]
    settings = isolated_settings(
        tmp_path,
        KAFKA_BOOTSTRAP_SERVERS=broker.kafka_bootstrap_servers,
        KAFKA_INPUT_TOPIC=f"full-raw-{tag}",
        KAFKA_DEADLETTER_TOPIC=f"full-dead-{tag}",
        KAFKA_OUTPUT_TOPIC=f"full-features-{tag}",
    )
    kafka.create_topics(settings)
    return settings


def _final(log: str) -> dict[str, int]:
    """The counters of the ``final`` summary line the ingestor logs on every stop."""
    (line,) = re.findall(r" INFO ingest\.ingestor final (.*)", log)
    return {key: int(value) for key, value in re.findall(r"(\w+)=(\d+)\b(?!\.)", line)}


def _stopped_by_itself(ingestor: IngestorProcess) -> tuple[dict[str, int], str]:
    assert ingestor.proc.wait(90) == 1, ingestor.log_path.read_text()[-3000:]
    log = ingestor.log_path.read_text()
    return _final(log), log


def _kafka_equals_ndjson(settings: Settings) -> list[bytes]:
    lines = ndjson_records(settings.raw_dir)
    records = topic_records(settings, settings.kafka_input_topic, len(lines))
    assert sorted(value for _, _, value in records) == sorted(lines)
    assert [orjson.loads(line)["ingest_seq"] for line in lines] == list(range(len(lines)))
    return lines


def test_a_full_disk_stops_the_ingestor_loudly_and_a_restart_loses_nothing(tmp_path, kafka_broker):
    settings = _settings(tmp_path, kafka_broker)
    exchange = ExchangeProcess("--rate", "300")
    try:
        full = IngestorProcess(ingestor_env(settings, exchange.url), tmp_path / "ingest.log", file_size_limit=LIMIT)
        counts, log = _stopped_by_itself(full)
        (path,) = settings.raw_dir.glob("*.ndjson")
        assert re.search(
            rf" ERROR ingest\.sinks ndjson storage failed path={path} errno=EFBIG \(File too large\): "
            r"stopping; records_not_stored=[1-9]",
            log,
        ), log[-3000:]
        assert f" ERROR ingest.ingestor ingestor stopped: ndjson storage failed path={path} errno=EFBIG" in log
        data = path.read_bytes()
        assert len(data) <= LIMIT and data.endswith(b"\n")  # the failed write was cut off: whole lines only
        lines = _kafka_equals_ndjson(settings)  # Kafka got everything stored, and nothing else
        assert counts["stored"] == counts["delivered"] == len(lines) > 100
        assert counts["unstored"] > 0 and counts["failed"] == 0 and counts["invalid"] == 0
        assert counts["tickers"] == counts["stored"] + counts["unstored"]

        # Room again (the limit is gone): ingest_seq resumes after the last stored line.
        again = IngestorProcess(ingestor_env(settings, exchange.url), tmp_path / "ingest-again.log")
        wait_until(lambda: len(ndjson_records(settings.raw_dir)) > len(lines) + 300, 120, "ticks after the restart")
        final = again.stop()
    finally:
        exchange.stop()
    assert final["stored"] == final["tickers"] == final["delivered"] and final["unstored"] == 0
    assert len(_kafka_equals_ndjson(settings)) == len(lines) + final["stored"]


def test_an_unwritable_folder_stops_the_ingestor_before_anything_is_reported_stored(tmp_path, kafka_broker):
    settings = _settings(tmp_path, kafka_broker)
    if os.geteuid() == 0:  # chmod does not stop root
        settings.raw_dir.write_text("")
        reason = r"errno=EEXIST \(File exists\)"
    else:
        settings.raw_dir.mkdir(mode=0o500)
        reason = r"errno=EACCES \(Permission denied\)"
    exchange = ExchangeProcess("--rate", "300")
    try:
        counts, log = _stopped_by_itself(IngestorProcess(ingestor_env(settings, exchange.url), tmp_path / "ingest.log"))
    finally:
        exchange.stop()
    assert re.search(
        rf" ERROR ingest\.sinks ndjson storage failed path={settings.raw_dir}/\d{{8}}\.ndjson {reason}", log
    )
    assert counts["stored"] == counts["delivered"] == 0 and counts["unstored"] == counts["tickers"] > 0
    assert topic_records(settings, settings.kafka_input_topic, 0, timeout=5) == []
