"""The NDJSON side of the sinks: daily files, midnight rotation, resuming ingest_seq from the tail."""

from __future__ import annotations

import asyncio
import logging
import resource
from pathlib import Path

import orjson
import pytest

from ingest.metrics import COUNTERS, Stats
from ingest.resend import tail_lines
from ingest.sinks import Record, Writer, last_record
from volpipe.dates import daily_file_stem
from volpipe.errors import StorageError
from volpipe.ops.sandbox import isolated_settings
from volpipe.records import deadletter_record, raw_record

MIDNIGHT_NS = 1_775_433_600 * 1_000_000_000  # 2026-04-06T00:00:00Z


def test_stats_declares_every_counter():
    declared = {name for name, kind in Stats.__annotations__.items() if kind == "int"}
    assert declared == set(COUNTERS) and Stats().snapshot() == dict.fromkeys(COUNTERS, 0)


def _raw(seq: int, recv_ns: int) -> Record:
    value = raw_record(seq, recv_ns, "c1-1", b'{"channel":"ticker","sequence_num":%d}' % seq)
    return Record(False, b"BTC-USD", value, seq, recv_ns, recv_ns)


def _dead(seq: int, recv_ns: int) -> Record:
    return Record(True, None, deadletter_record(seq, recv_ns, "c1-1", "not JSON", b"{oops"), seq, recv_ns, recv_ns)


def _write(tmp_path: Path, records: list[Record]) -> Writer:
    settings = isolated_settings(tmp_path)
    queue: asyncio.Queue = asyncio.Queue()
    for record in records:
        queue.put_nowait(record)
    writer = Writer(settings, queue, kafka=None, stats=Stats())
    writer.drain()
    writer.close()
    return writer


def test_daily_file_stem_is_the_utc_date():
    assert daily_file_stem(MIDNIGHT_NS - 1) == "20260405"
    assert daily_file_stem(MIDNIGHT_NS) == "20260406"


def test_records_rotate_at_utc_midnight_and_dead_letters_go_to_quarantine(tmp_path):
    records = [
        _raw(0, MIDNIGHT_NS - 2_000),
        _raw(1, MIDNIGHT_NS - 1),
        _dead(2, MIDNIGHT_NS - 1),
        _raw(3, MIDNIGHT_NS),
        _raw(4, MIDNIGHT_NS + 5),
    ]
    _write(tmp_path, records)
    before = (tmp_path / "raw" / "20260405.ndjson").read_bytes().splitlines()
    after = (tmp_path / "raw" / "20260406.ndjson").read_bytes().splitlines()
    dead = (tmp_path / "quarantine" / "20260405.ndjson").read_bytes().splitlines()
    assert [orjson.loads(line)["ingest_seq"] for line in before] == [0, 1]
    assert [orjson.loads(line)["ingest_seq"] for line in after] == [3, 4]
    assert orjson.loads(dead[0]) == {
        "ingest_seq": 2,
        "recv_ns": MIDNIGHT_NS - 1,
        "conn_id": "c1-1",
        "reason": "not JSON",
        "raw": "{oops",
    }
    assert before[0] == records[0].value  # the bytes are the record, unchanged


def test_appending_keeps_earlier_lines(tmp_path):
    _write(tmp_path, [_raw(0, MIDNIGHT_NS)])
    _write(tmp_path, [_raw(1, MIDNIGHT_NS + 1)])
    lines = (tmp_path / "raw" / "20260406.ndjson").read_bytes().splitlines()
    assert [orjson.loads(line)["ingest_seq"] for line in lines] == [0, 1]


def test_resume_takes_the_highest_seq_of_the_raw_and_quarantine_files(tmp_path):
    _write(
        tmp_path,
        [
            _raw(0, MIDNIGHT_NS - 10),
            _raw(1, MIDNIGHT_NS - 5),
            _dead(2, MIDNIGHT_NS - 4),
            _raw(3, MIDNIGHT_NS + 1),
            _dead(9, MIDNIGHT_NS - 3),
        ],
    )
    assert last_record(tmp_path / "raw", tmp_path / "quarantine")["ingest_seq"] == 9
    assert last_record(tmp_path / "raw")["ingest_seq"] == 3


def test_resume_sees_an_import_appended_to_an_older_day(tmp_path):
    _write(tmp_path, [_raw(0, MIDNIGHT_NS + 1), _raw(1, MIDNIGHT_NS - 5)])  # seq 1 went to the day before
    assert last_record(tmp_path / "raw")["ingest_seq"] == 1


def test_resume_with_no_files_is_none(tmp_path):
    assert last_record(tmp_path / "raw", tmp_path / "missing") is None


def test_resume_skips_an_empty_newest_file(tmp_path):
    _write(tmp_path, [_raw(41, MIDNIGHT_NS - 10)])
    (tmp_path / "raw" / "20260406.ndjson").write_bytes(b"")
    assert last_record(tmp_path / "raw")["ingest_seq"] == 41


def test_resume_cuts_a_partial_last_line_and_reads_only_the_tail(tmp_path):
    records = [_raw(i, MIDNIGHT_NS + i) for i in range(5000)]  # ~400 KB: more than one tail read
    _write(tmp_path, records)
    path = tmp_path / "raw" / "20260406.ndjson"
    complete = path.read_bytes()
    with open(path, "ab") as handle:
        handle.write(b'{"ingest_seq":5000,"recv_ns":17')  # a crash mid-write
    assert last_record(tmp_path / "raw")["ingest_seq"] == 4999
    assert path.read_bytes() == complete


@pytest.mark.parametrize("first_seq", [0, 1, 4990, 100, 5000])
def test_the_restart_recheck_reads_the_records_from_an_ingest_seq_on_across_tail_chunks(tmp_path, first_seq):
    _write(tmp_path, [_raw(i, MIDNIGHT_NS + i) for i in range(5000)])  # ~400 KB: several chunks back
    path = tmp_path / "raw" / "20260406.ndjson"
    with open(path, "ab") as handle:
        handle.write(b'{"ingest_seq":5000,"recv_ns":17')  # a crash mid-write: not a record
    assert [orjson.loads(line)["ingest_seq"] for line in tail_lines(path, first_seq)] == list(range(first_seq, 5000))


def test_a_full_disk_cuts_the_failed_write_off_counts_it_unstored_and_stops_the_writer(tmp_path, caplog):
    """RLIMIT_FSIZE stands in for ENOSPC: a write past it fails with EFBIG after a partial write."""
    stats = Stats()
    queue: asyncio.Queue = asyncio.Queue()
    writer = Writer(isolated_settings(tmp_path), queue, kafka=None, stats=stats)
    first = [_raw(i, MIDNIGHT_NS + i) for i in range(100)]
    writer._write(first)
    path = tmp_path / "raw" / "20260406.ndjson"
    stored = path.read_bytes()
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    resource.setrlimit(resource.RLIMIT_FSIZE, (len(stored) + 1000, hard))  # the next batch (~10 KB) fits in part
    try:
        with pytest.raises(StorageError, match=f"path={path} errno=EFBIG"):
            writer._write([_raw(i, MIDNIGHT_NS + i) for i in range(100, 200)])
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
    assert path.read_bytes() == stored  # the 1,000 bytes that did reach the file were cut off again
    assert any(
        r.levelno == logging.ERROR
        and f"path={path} errno=EFBIG" in r.getMessage()
        and "records_not_stored=100" in r.getMessage()
        for r in caplog.records
    )
    queue.put_nowait(_raw(200, MIDNIGHT_NS + 200))
    writer.drain()  # at shutdown: counted, not written, though the disk has room again
    writer.close()
    assert path.read_bytes() == stored
    assert (stats.stored, stats.unstored) == (100, 101)


def test_an_unwritable_folder_or_file_is_a_storage_error_naming_path_and_errno(tmp_path):
    """Stand-ins for a read-only folder that also stop root: a file where the folder should be, a
    folder where a daily file should be (chmod does not stop root's writes)."""
    stats = Stats()
    (tmp_path / "raw").write_text("")
    writer = Writer(isolated_settings(tmp_path), asyncio.Queue(), kafka=None, stats=stats)
    with pytest.raises(StorageError, match=f"path={tmp_path / 'raw' / '20260406.ndjson'} errno=EEXIST"):
        writer._write([_raw(0, MIDNIGHT_NS)])
    assert (stats.stored, stats.unstored) == (0, 1)
    (tmp_path / "quarantine" / "20260406.ndjson").mkdir(parents=True)
    with pytest.raises(StorageError, match=f"path={tmp_path / 'quarantine' / '20260406.ndjson'} errno=EISDIR"):
        last_record(tmp_path / "quarantine")  # on start: the ingestor stops before it connects


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
        sink.produce(Record(True, None, worst, 1, 2, 2))  # librdkafka refuses a too-big record at once
        assert failed == []
    finally:
        sink.producer.purge()
        sink.close(0)
