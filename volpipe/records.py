"""Build the pipeline's wire records (see docs/record-format.md); the one definition of them.

Inputs: an exchange frame as received, and the ingestor's metadata. Outputs: the bytes
that go to Kafka and to the NDJSON files. Nothing here parses prices: that is the
ingestor's validation and the Spark jobs' parsing.
"""

from __future__ import annotations

import orjson


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
    head = b'{"ingest_seq":%d,"recv_ns":%d,"conn_id":' % (ingest_seq, recv_ns)
    return head + orjson.dumps(conn_id) + b',"msg":' + frame.strip() + b"}"


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
