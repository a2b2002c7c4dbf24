"""The NDJSON side of the sinks: daily files, midnight rotation, resuming ingest_seq from the tail."""

from __future__ import annotations

import asyncio
from pathlib import Path

import orjson

from ingest.sinks import Record, Writer, last_ingest_seq
from volpipe.dates import daily_file_stem
from volpipe.ops.sandbox import isolated_settings
from volpipe.records import deadletter_record, raw_record

MIDNIGHT_NS = 1_775_433_600 * 1_000_000_000  # 2026-04-06T00:00:00Z


def _raw(seq: int, recv_ns: int) -> Record:
    value = raw_record(seq, recv_ns, "c1-1", b'{"channel":"ticker","sequence_num":%d}' % seq)
    return Record(False, b"BTC-USD", value, seq, recv_ns)


def _dead(seq: int, recv_ns: int) -> Record:
    return Record(True, None, deadletter_record(seq, recv_ns, "c1-1", "not JSON", b"{oops"), seq, recv_ns)


def _write(tmp_path: Path, records: list[Record]) -> Writer:
    settings = isolated_settings(tmp_path)
    queue: asyncio.Queue = asyncio.Queue()
    for record in records:
        queue.put_nowait(record)
    writer = Writer(settings, queue, kafka=None)
    writer.drain()
    writer.close()
    return writer


def test_daily_file_stem_is_the_utc_date():
    assert daily_file_stem(MIDNIGHT_NS - 1) == "20260405"
    assert daily_file_stem(MIDNIGHT_NS) == "20260406"


def test_records_rotate_at_utc_midnight_and_dead_letters_go_to_quarantine(tmp_path):
    records = [_raw(0, MIDNIGHT_NS - 2_000), _raw(1, MIDNIGHT_NS - 1), _dead(2, MIDNIGHT_NS - 1),
               _raw(3, MIDNIGHT_NS), _raw(4, MIDNIGHT_NS + 5)]
    _write(tmp_path, records)
    before = (tmp_path / "raw" / "20260405.ndjson").read_bytes().splitlines()
    after = (tmp_path / "raw" / "20260406.ndjson").read_bytes().splitlines()
    dead = (tmp_path / "quarantine" / "20260405.ndjson").read_bytes().splitlines()
    assert [orjson.loads(line)["ingest_seq"] for line in before] == [0, 1]
    assert [orjson.loads(line)["ingest_seq"] for line in after] == [3, 4]
    assert orjson.loads(dead[0]) == {"ingest_seq": 2, "recv_ns": MIDNIGHT_NS - 1, "conn_id": "c1-1",
                                     "reason": "not JSON", "raw": "{oops"}
    assert before[0] == records[0].value  # the bytes are the record, unchanged


def test_appending_keeps_earlier_lines(tmp_path):
    _write(tmp_path, [_raw(0, MIDNIGHT_NS)])
    _write(tmp_path, [_raw(1, MIDNIGHT_NS + 1)])
    lines = (tmp_path / "raw" / "20260406.ndjson").read_bytes().splitlines()
    assert [orjson.loads(line)["ingest_seq"] for line in lines] == [0, 1]


def test_resume_takes_the_highest_seq_of_the_raw_and_quarantine_files(tmp_path):
    _write(tmp_path, [_raw(0, MIDNIGHT_NS - 10), _raw(1, MIDNIGHT_NS - 5), _dead(2, MIDNIGHT_NS - 4),
                      _raw(3, MIDNIGHT_NS + 1), _dead(9, MIDNIGHT_NS - 3)])
    assert last_ingest_seq(tmp_path / "raw", tmp_path / "quarantine") == 9
    assert last_ingest_seq(tmp_path / "raw") == 3


def test_resume_sees_an_import_appended_to_an_older_day(tmp_path):
    _write(tmp_path, [_raw(0, MIDNIGHT_NS + 1), _raw(1, MIDNIGHT_NS - 5)])  # seq 1 went to the day before
    assert last_ingest_seq(tmp_path / "raw") == 1


def test_resume_with_no_files_is_none(tmp_path):
    assert last_ingest_seq(tmp_path / "raw", tmp_path / "missing") is None


def test_resume_skips_an_empty_newest_file(tmp_path):
    _write(tmp_path, [_raw(41, MIDNIGHT_NS - 10)])
    (tmp_path / "raw" / "20260406.ndjson").write_bytes(b"")
    assert last_ingest_seq(tmp_path / "raw") == 41


def test_resume_cuts_a_partial_last_line_and_reads_only_the_tail(tmp_path):
    records = [_raw(i, MIDNIGHT_NS + i) for i in range(5000)]  # ~400 KB: more than one tail read
    _write(tmp_path, records)
    path = tmp_path / "raw" / "20260406.ndjson"
    complete = path.read_bytes()
    with open(path, "ab") as handle:
        handle.write(b'{"ingest_seq":5000,"recv_ns":17')  # a crash mid-write
    assert last_ingest_seq(tmp_path / "raw") == 4999
    assert path.read_bytes() == complete


def test_the_producer_takes_the_dead_letter_of_the_largest_frame_the_websocket_accepts(tmp_path):
    from ingest.sinks import KafkaSink, Record
    from volpipe.ops.sandbox import isolated_settings
    from volpipe.records import deadletter_record

    settings = isolated_settings(tmp_path)  # 1 MiB: its worst dead letter is over librdkafka's 1 MB default
    failed = []
    sink = KafkaSink(settings, lambda _ns: None, lambda *args: failed.append(args))
    try:
        worst = deadletter_record(1, 2, "c1-1", "not JSON", bytes([1]) * settings.ws_max_message_bytes)
        assert len(worst) <= settings.kafka_max_message_bytes
        sink.produce(Record(True, None, worst, 1, 2))  # librdkafka refuses a too-big record at once
        assert failed == []
    finally:
        sink.producer.purge()
        sink.close(0)
