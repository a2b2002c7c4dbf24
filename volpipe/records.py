"""Build the pipeline's wire records (see docs/record-format.md); the one definition of them.

Inputs: an exchange frame as received, and the ingestor's metadata. Outputs: the bytes
that go to Kafka and to the NDJSON files, and back (``unwrap``: a stored record's envelope
and frame, for imports). Nothing here parses prices: that is the ingestor's validation and
the Spark jobs' parsing.
"""

from __future__ import annotations

from typing import NamedTuple

import orjson


class Envelope(NamedTuple):
    """What a stored record says about its frame: when and on which connection it came."""

    recv_ns: int
    conn_id: str


def raw_record(ingest_seq: int, recv_ns: int, conn_id: str, frame: bytes) -> bytes:
    """The raw record for one accepted exchange message, without the trailing newline.

    The frame is spliced in unchanged, so the exchange's bytes survive exactly (number
    formats, key order, spacing). The caller has checked that ``frame`` is one JSON object.

    Args:
        ingest_seq: The ingestor's ordering key for this message.
        recv_ns: Receipt time, UTC epoch nanoseconds.
        conn_id: The connection the frame came on.
        frame: The exchange message, as received (UTF-8 JSON text).

    Returns:
        One JSON object: ``{"ingest_seq":..,"recv_ns":..,"conn_id":..,"msg":<frame>}``.
    """
    return _raw_head(ingest_seq, recv_ns, conn_id) + frame.strip() + b"}"


def _raw_head(ingest_seq: int, recv_ns: int, conn_id: str) -> bytes:
    return b'{"ingest_seq":%d,"recv_ns":%d,"conn_id":' % (ingest_seq, recv_ns) + orjson.dumps(conn_id) + b',"msg":'


def deadletter_record(ingest_seq: int, recv_ns: int, conn_id: str, reason: str, frame: bytes) -> bytes:
    """The dead-letter record for a rejected frame, without the trailing newline.

    ``raw`` is the frame as text; bytes that are not UTF-8 appear as ``\\xNN`` escapes.
    """
    return orjson.dumps(
        {
            "ingest_seq": ingest_seq,
            "recv_ns": recv_ns,
            "conn_id": conn_id,
            "reason": reason,
            "raw": frame.decode("utf-8", errors="backslashreplace"),
        }
    )


def unwrap(line: bytes) -> tuple[Envelope | None, bytes]:
    """Splits a stored line into its envelope and the exchange frame it holds.

    A raw record gives back its frame byte for byte (the text after the envelope's prefix,
    which ``raw_record`` wrote); a dead letter gives back its ``raw`` text. Any other line
    (an exchange message as recorded elsewhere, or not JSON at all) is returned as the frame
    itself, with no envelope.

    Args:
        line: One line of an NDJSON file, with or without its newline.

    Returns:
        (envelope, frame): the envelope is None when the line is not one of our records.
    """
    line = line.strip()
    try:
        record = orjson.loads(line)
    except orjson.JSONDecodeError:
        return None, line
    if not isinstance(record, dict):
        return None, line
    ingest_seq, recv_ns, conn_id = record.get("ingest_seq"), record.get("recv_ns"), record.get("conn_id")
    if type(ingest_seq) is not int or type(recv_ns) is not int or type(conn_id) is not str:
        return None, line
    envelope = Envelope(recv_ns, conn_id)
    if isinstance(record.get("msg"), dict):
        head = _raw_head(ingest_seq, recv_ns, conn_id)
        if line.startswith(head) and line.endswith(b"}"):
            return envelope, line[len(head) : -1]
        return envelope, orjson.dumps(record["msg"])  # rewritten by another tool: same values, compact
    if isinstance(record.get("raw"), str) and isinstance(record.get("reason"), str):
        return envelope, record["raw"].encode()
    return None, line
