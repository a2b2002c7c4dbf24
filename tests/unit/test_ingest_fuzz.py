"""Hostile frames through the ingestor's classifier and its sinks (docs/hostile-input.md).

The classifier is checked against an independent reference written from docs/ingest.md with
Python's ``json`` module; the flood test pushes 100k tiny frames through ``Ingestor.on_frame``,
the queue and the NDJSON writer and accounts for every one. Nothing here measures time.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re

import orjson
from hypothesis import given
from hypothesis import strategies as st

from ingest.ingestor import Ingestor
from ingest.protocol import Accepted, Rejected, classify
from tests.fuzzing import fuzz_settings
from volpipe.ops.sandbox import isolated_settings
from volpipe.records import raw_record

PRODUCTS = frozenset({"BTC-USD", "ETH-USD"})
_POSITIVE = re.compile(r"[0-9]+(?:\.[0-9]+)?")


def _not_json(token: str):
    raise ValueError(f"{token} is not strict JSON")


def reference(frame: bytes):
    """What docs/ingest.md says a frame is: ``(kind, sequence_num, products)`` or ``(reason prefix, seq, error)``."""
    try:
        msg = json.loads(frame.decode("utf-8"), parse_constant=_not_json)
    except (UnicodeDecodeError, ValueError, RecursionError):
        return "not JSON", None, False
    if not isinstance(msg, dict):
        return "not a JSON object", None, False
    if msg.get("type") == "error":
        return "exchange error", None, True
    seq = msg.get("sequence_num")
    if type(seq) is not int or seq < 0:
        return "sequence_num is not a non-negative integer", None, False
    if not isinstance(msg.get("timestamp"), str):
        return "timestamp missing or not a string", seq, False
    events = msg.get("events")
    if not (isinstance(events, list) and events and all(isinstance(e, dict) for e in events)):
        return "events is not a non-empty list of objects", seq, False
    channel = msg.get("channel")
    if channel in ("heartbeats", "subscriptions"):
        return channel, seq, ()
    if channel != "ticker":
        return "unexpected channel", seq, False
    products = []
    for event in events:
        if event.get("type") not in ("update", "snapshot"):
            return "ticker event type is not snapshot/update", seq, False
        if not isinstance(event.get("tickers"), list) or not event["tickers"]:
            return "ticker event has no tickers list", seq, False
        for ticker in event["tickers"]:
            if not isinstance(ticker, dict):
                return "ticker is not an object", seq, False
            if not isinstance(ticker.get("product_id"), str) or ticker["product_id"] not in PRODUCTS:
                return "product not subscribed", seq, False
            for name in ("price", "best_bid", "best_ask"):
                value = ticker.get(name)
                if not (isinstance(value, str) and _POSITIVE.fullmatch(value) and float(value) > 0):
                    return f"{name} is not a positive decimal", seq, False
            for name in ("volume_24_h", "best_bid_quantity", "best_ask_quantity"):
                value = ticker.get(name)
                if value is not None and not (isinstance(value, str) and _POSITIVE.fullmatch(value)):
                    return f"{name} is not a decimal", seq, False
            products.append(ticker["product_id"])
    return "ticker", seq, tuple(products)


def mostly(good, *bad):
    """``good`` twelve times in thirteen, else one of ``bad``: a frame has ~15 fields, so a third stay valid.

    Not ``one_of(good, good, ...)``: Hypothesis merges equal branches, which made every field 50/50."""
    return st.sampled_from([True] * 12 + [False]).flatmap(lambda ok: good if ok else st.one_of(*bad))


MISSING = object()
JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**63 - 1) | st.text(max_size=6),
    lambda kids: st.lists(kids, max_size=3) | st.dictionaries(st.text(max_size=4), kids, max_size=3),
    max_leaves=6,
)
DECIMALS = mostly(
    st.decimals(0, 10**7, places=4, allow_nan=False).map(str),
    st.sampled_from(
        ["0", "0.00", "-1", "1e5", "NaN", "", " 1", "1.", ".5", "1_0", "\u0661\u0662", "\uff11\uff12", "00.10"]
    ),
    st.floats(),
    st.integers(-(2**63), 2**63 - 1),
    st.none(),
    st.just(MISSING),
    JSON,
)


@st.composite
def tickers(draw):
    ticker = {
        "type": "ticker",
        "product_id": draw(
            mostly(st.sampled_from(sorted(PRODUCTS)), st.sampled_from(["DOGE-USD", "", None, MISSING, 7]), JSON)
        ),
    }
    ticker.update(
        {
            name: draw(DECIMALS)
            for name in ("price", "best_bid", "best_ask", "volume_24_h", "best_bid_quantity", "best_ask_quantity")
        }
    )
    return draw(mostly(st.just({k: v for k, v in ticker.items() if v is not MISSING}), JSON))


@st.composite
def frames(draw) -> bytes:
    """A ticker, heartbeat, ack or error frame with a few fields mutated, or hostile bytes."""
    kind = draw(st.sampled_from(["frame"] * 8 + ["bytes", "truncated", "deep", "huge"]))
    if kind == "bytes":
        return draw(st.binary(max_size=300))
    if kind == "deep":  # past orjson's (and json's) recursion limit, or well inside it
        depth = draw(st.sampled_from([200, 5000]))
        return b'{"channel":"ticker","sequence_num":1,"deep":' + b"[" * depth + b"]" * depth + b"}"
    events = [
        {
            "type": draw(mostly(st.sampled_from(["update", "snapshot"]), st.sampled_from(["other", None]))),
            "tickers": draw(mostly(st.lists(tickers(), min_size=1, max_size=3), st.sampled_from([[], None, "x"]))),
        }
    ]
    msg = {
        "channel": draw(mostly(st.just("ticker"), st.sampled_from(["heartbeats", "subscriptions", "level2", None]))),
        "timestamp": draw(mostly(st.just("2026-04-05T22:35:14.009945409Z"), st.integers(0, 2**40), st.none())),
        "sequence_num": draw(mostly(st.integers(0, 2**63 - 1), st.integers(-5, -1), st.sampled_from(["1", 1.0, True]))),
        "events": draw(mostly(st.just(events), st.sampled_from([[], [5], {}, None]))),
    }
    msg = draw(mostly(st.just(msg), st.just({"type": "error", "message": "Failed to subscribe"}), JSON))
    frame = json.dumps(msg, ensure_ascii=draw(st.booleans())).encode()
    if kind == "huge":  # 8 MB: websockets' default max_size is 1 MiB; classification has no limit of its own
        return frame[:-1] + b',"blob":"' + b"x" * 8_000_000 + b'"}' if frame.startswith(b"{") else frame
    if kind == "truncated":
        return frame[: draw(st.integers(0, len(frame) - 1))]
    return frame


@fuzz_settings(300)
@given(frames())
def test_classify_matches_the_reference_on_hostile_frames(frame):
    """Every frame is accepted exactly as the rules say or rejected with the rule's reason; nothing raises."""
    result = classify(frame, PRODUCTS)
    want = reference(frame)
    if isinstance(result, Accepted):
        assert (result.kind, result.sequence_num, result.product_ids) == want
    else:
        assert result.reason.startswith(want[0]) and (result.sequence_num, result.exchange_error) == want[1:]


def test_a_price_in_non_ascii_digits_is_not_a_positive_decimal():
    """Regression: ``\\d`` matched Arabic-Indic and fullwidth digits, which Spark then cannot read as a number."""
    for price in ("\u0661\u0662", "\uff11\uff12"):
        ticker = {"product_id": "BTC-USD", "price": price, "best_bid": "1", "best_ask": "2"}
        frame = orjson.dumps(
            {
                "channel": "ticker",
                "timestamp": "t",
                "sequence_num": 1,
                "events": [{"type": "update", "tickers": [ticker]}],
            }
        )
        reason = f"price is not a positive decimal: {price!r} product_id=BTC-USD"
        assert classify(frame, PRODUCTS) == Rejected(reason, 1)


def test_a_flood_of_100k_tiny_frames_is_accounted_for_frame_by_frame(tmp_path, caplog):
    """Every frame is counted once and is a raw line, a dead letter, or a counted heartbeat/ack: no loss under load."""
    caplog.set_level(logging.ERROR, logger="ingest")  # 100k rejection warnings are the point, not the output
    tick = (
        b'{"channel":"ticker","timestamp":"t","sequence_num":%d,"events":[{"type":"update","tickers":['
        b'{"product_id":"BTC-USD","price":"1","best_bid":"1","best_ask":"2"}]}]}'
    )
    beat = b'{"channel":"heartbeats","timestamp":"t","sequence_num":%d,"events":[{}]}'
    junk = [b"", b"{", b"1", b"[]", b"{}", b"\xff", b"null", b'{"type":"error"}']
    frames = [tick % i if i % 3 == 0 else beat % i if i % 3 == 1 else junk[i % len(junk)] for i in range(100_000)]

    async def flood():
        ingestor = Ingestor(isolated_settings(tmp_path), kafka=False)
        ingestor.new_connection()
        for frame in frames:
            record = ingestor.on_frame(frame, recv_ns=1_775_428_514_000_000_000)
            if record is not None:
                ingestor.queue.put_nowait(record)
        ingestor.writer.drain()
        ingestor.writer.close()
        return ingestor

    ingestor = asyncio.run(flood())
    stats = ingestor.stats.snapshot()
    raw = (tmp_path / "raw" / "20260405.ndjson").read_bytes().splitlines()
    dead = (tmp_path / "quarantine" / "20260405.ndjson").read_bytes().splitlines()
    tickers, beats = len(frames[::3]), len(frames[1::3])
    assert stats["messages"] == 100_000 and stats["tickers"] == tickers and stats["heartbeats"] == beats
    assert stats["invalid"] == len(dead) == 100_000 - tickers - beats and len(raw) == tickers
    assert stats["gaps"] == 100_000 - tickers - beats  # the junk frames' numbers are missing from the sequence
    seqs = sorted(orjson.loads(line)["ingest_seq"] for line in raw + dead)
    assert seqs == list(range(len(raw) + len(dead)))  # every stored frame has its own ingest_seq, none twice
    assert raw == [
        raw_record(orjson.loads(line)["ingest_seq"], 1_775_428_514_000_000_000, ingestor.conn_id, frame)
        for line, frame in zip(raw, frames[::3], strict=True)
    ]  # each frame byte for byte, in order
    assert [orjson.loads(line)["raw"] for line in dead] == [f.decode("utf-8", "backslashreplace") for f in frames[2::3]]
