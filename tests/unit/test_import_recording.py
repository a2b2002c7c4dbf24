"""``python -m ingest.import_recording`` without Kafka (--no-kafka): what lands in the NDJSON files.

The Kafka side (same records in ``ticks.raw``/``ticks.deadletter``) and the real recording
are in tests/integration/test_import_recording.py.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import orjson

from ingest.import_recording import LINE_COUNTS, main
from ingest.ingestor import Ingestor
from ingest.metrics import Stats
from ingest.sinks import Record, Writer
from tests.recordings import NOT_JSON, ODD_STAMP, PRODUCTS, generated_recording
from volpipe.coinbase import parse_timestamp
from volpipe.ops.sandbox import isolated_settings
from volpipe.records import raw_record


def _import(capsys, data_dir: Path, *files: Path) -> tuple[int, dict]:
    code = main(["--no-kafka", "--data-dir", str(data_dir), "--products", ",".join(PRODUCTS), *map(str, files)])
    out = capsys.readouterr().out.strip().splitlines()
    return code, orjson.loads(out[-1]) if out else {}


def _lines(folder: Path) -> list[bytes]:
    return [line for path in sorted(folder.glob("*.ndjson")) for line in path.read_bytes().splitlines()]


def _sha12(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()[:12]


def test_every_line_is_imported_dead_lettered_or_skipped_and_keeps_its_recorded_time(tmp_path, capsys):
    recording = tmp_path / "recording.ndjson"
    expected = generated_recording(recording)
    code, out = _import(capsys, tmp_path / "data", recording)
    assert code == 0
    (result,) = out["files"]
    assert {k: result[k] for k in (*LINE_COUNTS, "gaps")} == expected
    assert result["lines"] == sum(result[k] for k in LINE_COUNTS[1:])  # every line accounted for once
    assert result["status"] == "done" and result["repeats"] == 0

    sent = [line for line in recording.read_bytes().splitlines() if line.strip()]
    raw = [orjson.loads(line) for line in _lines(tmp_path / "data" / "raw")]
    dead = [orjson.loads(line) for line in _lines(tmp_path / "data" / "quarantine")]
    assert len(raw) == expected["imported"] and len(dead) == expected["deadlettered"]
    # The message is stored byte for byte: recorded timestamp text and sequence_num included.
    raw_bytes = _lines(tmp_path / "data" / "raw")
    tickers = [
        line
        for line in sent
        if b'"channel":"ticker"' in line
        and line != NOT_JSON
        and b'"price":"-1"' not in line
        and b"NOPE-USD" not in line
    ]
    assert [line.split(b',"msg":', 1)[1][:-1] for line in raw_bytes] == tickers
    for record in raw:
        assert record["recv_ns"] == parse_timestamp(record["msg"]["timestamp"])  # exact nanoseconds
        assert record["conn_id"] == f"import-{_sha12(recording)}"
    odd = next(r for r in raw if r["msg"]["timestamp"] == ODD_STAMP.decode())
    assert odd["recv_ns"] == 1_775_383_201_500_000_000
    # ingest_seq: strictly increasing in file order, contiguous across raw + quarantine.
    assert [r["ingest_seq"] for r in raw] == sorted(r["ingest_seq"] for r in raw)
    assert sorted(r["ingest_seq"] for r in raw + dead) == list(range(len(raw) + len(dead)))
    assert result["first_ingest_seq"] == 0 and result["last_ingest_seq"] == len(raw) + len(dead) - 1
    # Dead letters: the live ingestor's reasons; a line without a time takes the previous line's.
    reasons = [d["reason"] for d in dead]
    assert reasons[0].startswith("not JSON") and dead[0]["raw"] == NOT_JSON.decode()
    assert dead[0]["recv_ns"] == odd["recv_ns"]
    assert "price is not a positive decimal: '-1'" in reasons[1]
    assert "product not subscribed: 'NOPE-USD'" in reasons[2]
    assert [p.name for p in (tmp_path / "data" / "raw").iterdir()] == ["20260405.ndjson"]  # the recorded day


def test_reimporting_is_a_no_op_and_ingest_seq_continues_around_an_import(tmp_path, capsys):
    settings = isolated_settings(tmp_path / "data")
    writer = Writer(settings, None, None, Stats())  # what a live ingestor wrote today, before the import
    today_ns = 1_795_000_000_000_000_000
    writer._write(
        [
            Record(
                False,
                b"BTC-USD",
                raw_record(i, today_ns + i, "c1-1", b'{"channel":"ticker"}'),
                i,
                today_ns + i,
                today_ns + i,
            )
            for i in range(3)
        ]
    )
    writer.close()
    recording = tmp_path / "recording.ndjson"
    expected = generated_recording(recording)
    code, out = _import(capsys, tmp_path / "data", recording)
    assert code == 0 and out["files"][0]["first_ingest_seq"] == 3
    last = out["files"][0]["last_ingest_seq"]
    assert last == 3 + expected["imported"] + expected["deadlettered"] - 1
    stored = {p: p.read_bytes() for p in (tmp_path / "data").rglob("*.ndjson")}

    code, out = _import(capsys, tmp_path / "data", recording, recording)
    assert code == 0 and out["total"]["messages"] == 0
    assert [f["status"] for f in out["files"]] == ["already imported", "duplicate in this run"]
    assert {p: p.read_bytes() for p in (tmp_path / "data").rglob("*.ndjson")} == stored
    # The import went to an older day's file; a live ingestor started now resumes after it.
    assert Ingestor(settings, kafka=False).next_seq == last + 1

    # An import that did not finish leaves its manifest "started": a new import is refused.
    manifest = next(settings.imports_dir.glob("*.json"))
    manifest.write_bytes(manifest.read_bytes().replace(b'"done"', b'"started"'))
    code, _ = _import(capsys, tmp_path / "data", recording)
    assert code == 1
    assert {p: p.read_bytes() for p in (tmp_path / "data").rglob("*.ndjson")} == stored


def test_the_ingestors_own_files_reimport_with_their_envelopes_time_and_frames(tmp_path, capsys):
    recording = tmp_path / "recording.ndjson"
    generated_recording(recording)
    assert _import(capsys, tmp_path / "first", recording)[0] == 0
    raw_file = next((tmp_path / "first" / "raw").iterdir())
    dead_file = next((tmp_path / "first" / "quarantine").iterdir())
    code, out = _import(capsys, tmp_path / "second", raw_file, dead_file)
    assert code == 0
    raw_result, dead_result = out["files"]
    assert raw_result["imported"] == raw_result["lines"] and raw_result["deadlettered"] == 0
    assert dead_result["deadlettered"] == dead_result["lines"] == 3

    def split(line: bytes) -> tuple[dict, bytes]:
        head, frame = line.split(b',"msg":', 1)
        return orjson.loads(head + b"}"), frame

    first = [split(line) for line in _lines(tmp_path / "first" / "raw")]
    second = [split(line) for line in _lines(tmp_path / "second" / "raw")]
    assert [frame for _, frame in second] == [frame for _, frame in first]
    assert [h["recv_ns"] for h, _ in second] == [h["recv_ns"] for h, _ in first]
    assert {h["conn_id"] for h, _ in second} == {f"import-{_sha12(raw_file)}-import-{_sha12(recording)}"}
    first_dead = [orjson.loads(line) for line in _lines(tmp_path / "first" / "quarantine")]
    second_dead = [orjson.loads(line) for line in _lines(tmp_path / "second" / "quarantine")]
    assert [(d["reason"], d["raw"], d["recv_ns"]) for d in second_dead] == [
        (d["reason"], d["raw"], d["recv_ns"]) for d in first_dead
    ]
