"""Hypothesis fuzz of ``parse_raw`` over hostile raw Kafka values (docs/hostile-input.md).

Each example is a batch of records parsed by ONE Spark job. Every record must come out as its
ticks with the values an independent reference computes here with Python's ``json`` module, as
quarantine rows with the reference's reason and the record's exact bytes, or (a valid non-ticker
message) as nothing; the job never fails, and no record is lost or duplicated.
"""

from __future__ import annotations

import calendar
import json
import math
import re
from collections import defaultdict
from datetime import datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.fuzzing import fuzz_settings
from volpipe.features import INPUT_COLUMNS
from volpipe.schema import parse_raw
from volpipe.tables import PARSED_COLUMNS

pytestmark = pytest.mark.spark

NOT_RAW = "not a raw record (JSON with ingest_seq, recv_ns, conn_id, msg)"
NO_TICKERS = "ticker message without tickers"
PRICES = ("price", "best_bid", "best_ask", "best_bid_quantity", "best_ask_quantity")
_TS = re.compile(r"([0-9]{4})-([0-9]{2})-([0-9]{2})T([0-9]{2}):([0-9]{2}):([0-9]{2})(?:\.([0-9]{1,9}))?Z")
_NUMBER = re.compile(r"[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")


# --- the reference: what each record should become, from Python's json module alone ---


def _long(value) -> bool:
    return type(value) is int and -(2**63) <= value < 2**63


def _double(value) -> float | None:
    """A price field as the contract reads it: a decimal string or JSON number, finite, else None."""
    if isinstance(value, str):
        number = float(value) if _NUMBER.fullmatch(value) else None
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        number = float(value)
    else:
        number = None
    return number if number is not None and math.isfinite(number) else None


def _nanos(text: str) -> int | None:
    """RFC 3339 'Z' text -> epoch ns, or None when malformed, impossible or outside [1970, 2262]."""
    match = _TS.fullmatch(text)
    if not match:
        return None
    try:
        moment = datetime(*(int(part) for part in match.groups()[:6]))
    except ValueError:
        return None
    ns = calendar.timegm(moment.timetuple()) * 10**9 + int((match.group(7) or "").ljust(9, "0"))
    return ns if 0 <= ns < 2**63 else None


def reference(value: bytes):
    """None for a dropped non-ticker message, else a list of ``(ticker_idx, good_row | reason)``."""
    try:
        record = json.loads(value.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        return [(-1, NOT_RAW)]
    msg = record.get("msg") if isinstance(record, dict) else None
    if not (
        isinstance(msg, dict)
        and _long(record.get("ingest_seq"))
        and record["ingest_seq"] >= 0
        and _long(record.get("recv_ns"))
        and record["recv_ns"] >= 0
        and isinstance(record.get("conn_id"), str)
        and isinstance(msg.get("channel"), str)
    ):
        return [(-1, NOT_RAW)]
    if msg["channel"] != "ticker":
        return None
    events = msg.get("events")
    # One mistyped event or ticker list makes the whole list unreadable (a Spark array of structs).
    if not (
        isinstance(events, list)
        and all(
            isinstance(e, dict)
            and isinstance(e.get("tickers"), list)
            and all(t is None or isinstance(t, dict) for t in e["tickers"])
            for e in events
        )
    ):
        return [(-1, NO_TICKERS)]
    tickers = [(e.get("type"), t or {}) for e in events for t in e["tickers"]]
    if not tickers:
        return [(-1, NO_TICKERS)]
    timestamp = msg.get("timestamp")
    ns = _nanos(timestamp) if isinstance(timestamp, str) else None
    sequence_num = msg.get("sequence_num") if _long(msg.get("sequence_num")) else -1
    out = []
    for idx, (event_type, ticker) in enumerate(tickers):
        product = ticker.get("product_id")
        prices = [_double(ticker.get(name)) for name in PRICES]
        price, bid, ask = prices[:3]
        if not isinstance(product, str) or not product:
            out.append((idx, "ticker without product_id"))
        elif ns is None:
            out.append((idx, f"unparseable exchange timestamp: {'missing' if timestamp is None else timestamp}"))
        elif not (
            (price is not None and price > 0)
            or (bid is not None and ask is not None and bid > 0 and ask > 0 and bid <= ask)
        ):
            out.append((idx, "no positive price and no valid book"))
        else:
            out.append(
                (
                    idx,
                    (
                        product,
                        record["ingest_seq"],
                        idx,
                        record["conn_id"],
                        sequence_num,
                        ns,
                        record["recv_ns"],
                        event_type,
                        *prices,
                    ),
                )
            )
    return out


# --- generators: JSON written by hand, so keys can repeat and NaN/Infinity appear as tokens ---


class Obj(list):
    """A JSON object as (key, value) pairs: order kept, keys may repeat."""


class Raw(bytes):
    """JSON text spliced in as is (deep nesting, megabyte strings)."""


def dump(value, ascii_only: bool) -> bytes:
    if isinstance(value, Raw):
        return bytes(value)
    if isinstance(value, Obj):
        return b"{" + b",".join(dump(k, ascii_only) + b":" + dump(v, ascii_only) for k, v in value) + b"}"
    if isinstance(value, list):
        return b"[" + b",".join(dump(v, ascii_only) for v in value) + b"]"
    return json.dumps(value, ensure_ascii=ascii_only).encode()  # NaN/Infinity tokens for non-finite floats


MISSING = object()
JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-(10**20), 10**20) | st.floats() | st.text(max_size=8),
    lambda kids: st.lists(kids, max_size=3) | st.lists(st.tuples(st.text(max_size=5), kids), max_size=3).map(Obj),
    max_leaves=8,
)
RARELY = st.sampled_from([False] * 9 + [True])  # Hypothesis favours small draws: the common case comes first


def mostly(good, *bad):
    """``good`` nine times in ten, else one of ``bad``: most records stay valid enough to compare values.

    Not ``one_of(good, good, ...)``: Hypothesis merges equal branches, which made every field 50/50.
    """
    return st.sampled_from([True] * 9 + [False]).flatmap(lambda ok: good if ok else st.one_of(*bad))


def _rfc3339(moment: datetime, digits: int) -> str:
    fraction = f"{moment.microsecond:06d}{moment.microsecond % 997:03d}"[:digits]
    return moment.strftime("%Y-%m-%dT%H:%M:%S").rjust(19, "0") + ("." + fraction if digits else "") + "Z"


POSITIVE = st.floats(1e-8, 1e7).flatmap(lambda x: st.sampled_from([repr(x), f"{x:.2f}", f"{x:.8f}", f"{x:e}"]))
AMOUNTS = mostly(
    POSITIVE,
    st.floats(-1e6, 1e12, allow_nan=False).map(repr),
    st.integers(-5, 10**9).map(str),
    st.sampled_from(
        [
            "0",
            "0.00",
            "-0",
            "-0.0",
            "1e-400",
            "1e400",
            ".5",
            "5.",
            "+7",
            "-1",
            "00012.50",
            "NaN",
            "Infinity",
            "-Infinity",
            "inf",
            "nan",
            "",
            "abc",
            "1_0",
            "1,5",
            "--1",
            "1e",
            ".",
            "1.2.3",
            "\u0661\u0662",
        ]
    ),
    st.text(alphabet="abcxyz-+. \u00e9\u20ac", max_size=6),
    st.floats(),
    st.integers(-(10**20), 10**20),
    st.booleans(),
    st.none(),
    st.just(MISSING),
    JSON,
)
PRODUCTS = mostly(
    st.sampled_from(["BTC-USD", "ETH-USD", "SOL-USD"]) | st.text(min_size=1, max_size=12),
    st.sampled_from(["", None, MISSING]),
)
TIMESTAMPS = mostly(
    st.builds(_rfc3339, st.datetimes(datetime(2026, 1, 1), datetime(2026, 12, 31)), st.integers(0, 9)),
    st.builds(_rfc3339, st.datetimes(datetime(1, 1, 1), datetime(9999, 12, 31)), st.integers(0, 9)),
    st.sampled_from(
        [
            "2026-02-30T00:00:00Z",
            "2026-04-05T24:00:00Z",
            "2026-12-31T23:59:60Z",
            "2026-4-5T22:35:14Z",
            "2026-04-05 22:35:14Z",
            "2026-04-05T22:35:14.Z",
            "2026-04-05T22:35:14.1234567890Z",
            "2026-04-05T22:35:14+00:00",
            "1969-12-31T23:59:59.999999999Z",
            "1970-01-01T00:00:00Z",
            "2262-04-11T23:47:16.854775807Z",
            "2262-04-11T23:47:16.854775808Z",
            "\u0662\u0660\u0662\u0666-04-05T22:35:14Z",
            "",
            "now",
        ]
    ),
    st.integers(0, 2**40),
    st.none(),
    st.just(MISSING),
)
LONGS = mostly(
    st.integers(0, 2**63 - 1),
    st.integers(-(2**64), 2**64),
    st.sampled_from(["7", 1.0, 2.5, True, None, MISSING, [1], Obj([])]),
)


@st.composite
def fields(draw, pairs: list) -> Obj:
    """An object of ``pairs`` and unknown keys, shuffled, missing ones left out, some keys repeated after a decoy."""
    groups = []
    for key, value, decoys in pairs:
        if value is MISSING:
            continue
        group = [(key, value)]
        if decoys is not None and draw(RARELY):
            decoy = draw(decoys.filter(lambda v: v is not MISSING))
            group.insert(0, (key, decoy))  # an earlier duplicate key: the last value must win
        groups.append(group)
    keys = st.sampled_from(["PRICE", "Product_Id", "extra", "side", "volume_24_h", "\u00fc\u00f1\u00ee"])
    groups.extend([pair] for pair in draw(st.lists(st.tuples(keys, JSON), max_size=2)))
    return Obj(pair for group in draw(st.permutations(groups)) for pair in group)


@st.composite
def tickers(draw) -> Obj | None:
    if draw(RARELY) and draw(RARELY):
        return None
    pairs = [("type", "ticker", None), ("product_id", draw(PRODUCTS), PRODUCTS)]
    pairs += [(name, draw(AMOUNTS), AMOUNTS) for name in PRICES]
    return draw(fields(pairs))


@st.composite
def messages(draw) -> Obj:
    channel = draw(mostly(st.just("ticker"), st.sampled_from(["heartbeats", "subscriptions", "level2", None, MISSING])))
    count = draw(mostly(st.integers(1, 3), st.sampled_from([0, 150])))
    drawn = draw(st.lists(tickers(), min_size=min(count, 3), max_size=min(count, 3)))
    listed = (drawn * count)[:count]  # a big message repeats a few drawn tickers
    events = [Obj([("type", draw(st.sampled_from(["update", "snapshot", "other", None]))), ("tickers", listed)])]
    shape = draw(st.sampled_from(["one"] * 9 + ["two", "bad_event", "bad_events"]))
    if shape == "two":
        events.append(Obj([("type", "update"), ("tickers", draw(st.lists(tickers(), max_size=2)))]))
    elif shape == "bad_event":
        events.append(
            draw(
                st.sampled_from(
                    [
                        Obj([("type", "update")]),
                        Obj([("tickers", None)]),
                        None,
                        5,
                        Obj([("tickers", [5])]),
                        Obj([("tickers", "x")]),
                    ]
                )
            )
        )
    elif shape == "bad_events":
        events = draw(st.sampled_from([[], Obj([("type", "update")]), "events", None, MISSING]))
    strings = st.text(max_size=5)
    sequence_num = draw(LONGS)
    # A repeated integer key whose last value is unreadable keeps the earlier one in Spark (docs/hostile-input.md).
    sequence_decoys = st.integers(0, 99) if _long(sequence_num) else None
    return draw(
        fields(
            [
                ("channel", channel, strings),
                ("timestamp", draw(TIMESTAMPS), strings),
                ("sequence_num", sequence_num, sequence_decoys),
                ("events", events, None),
            ]
        )
    )


@st.composite
def records(draw, index: int) -> bytes:
    """Raw value number ``index``: mostly ticker records (ingest_seq = index), some hostile bytes."""
    kind = draw(st.sampled_from(["record"] * 12 + ["bytes", "truncated", "json", "deep", "huge"]))
    if kind == "bytes":
        return draw(st.binary(max_size=200))
    if kind == "json":
        return dump(draw(JSON), draw(st.booleans()))
    msg = draw(messages())
    if kind == "deep":
        depth = draw(st.sampled_from([5, 200, 1500, 5000]))  # Jackson and json both stop near 1000 levels
        msg.append(("deep", Raw(b'[{"a":' * depth + b"1" + b"}]" * depth)))
    if kind == "huge":
        msg.append(("blob", "\u00e9" * draw(st.integers(10**5, 5 * 10**5))))
    # Good rows are matched to their record by ingest_seq, so any other value is an invalid one.
    ingest_seq = draw(mostly(st.just(index), st.sampled_from(["7", 1.0, True, None, MISSING, -1, -5, 2**64])))
    conn_id = draw(mostly(st.just("c1"), st.sampled_from(["", "\u00e7\u2603", None])))
    envelope = Obj(draw(st.permutations([("ingest_seq", ingest_seq), ("recv_ns", draw(LONGS)), ("conn_id", conn_id)])))
    value = dump(Obj([*(kv for kv in envelope if kv[1] is not MISSING), ("msg", msg)]), draw(st.booleans()))
    if kind == "truncated":
        return value[: draw(st.integers(0, len(value) - 1))]
    return value


@st.composite
def batches(draw) -> list[bytes]:
    return [draw(records(i)) for i in range(draw(st.integers(1, 60)))]


def _check(spark, values: list[bytes]) -> int:
    """Parses ``values`` in one job and compares every record's rows with the reference; returns the row count."""
    frame = parse_raw(
        spark.createDataFrame([(v, f"fuzz:{i}") for i, v in enumerate(values)], "value binary, source string")
    )
    assert tuple(frame.columns) == PARSED_COLUMNS
    rows = frame.collect()
    got = defaultdict(list)
    for row in rows:
        if row.error is None:
            assert (row.raw, row.source) == (None, None)
            got[row.ingest_seq].append((row.ticker_idx, tuple(row[name] for name in INPUT_COLUMNS)))
        else:
            index = int(row.source.removeprefix("fuzz:"))
            assert row.error and row.product_id is None and bytes(row.raw) == values[index]
            got[index].append((row.ticker_idx, row.error))
    expected = {i: reference(v) for i, v in enumerate(values)}
    assert set(got) <= set(expected), "rows of a record that was not in the batch"
    for i, want in expected.items():
        assert sorted(got.get(i, []), key=repr) == sorted(want or [], key=repr), values[i][:600]
    return len(rows)


@fuzz_settings(30)
@given(batches())
def test_every_record_is_parsed_as_the_reference_says_or_quarantined_once(spark, values):
    """One job per batch of hostile records: it never fails, and each record's rows equal the reference's."""
    _check(spark, values)


def test_a_30_mb_record_is_parsed_whole(spark):
    """Far beyond any real frame and Jackson's default 20 MB string limit: parsed, not cut or quarantined."""
    msg = (
        b'{"channel":"ticker","timestamp":"2026-04-05T22:35:14.000000001Z","sequence_num":1,"events":[{"type":'
        b'"update","tickers":[{"product_id":"BTC-USD","price":"1.5"}]}],"blob":"' + b"x" * 30_000_000 + b'"}'
    )
    assert _check(spark, [b'{"ingest_seq":0,"recv_ns":1,"conn_id":"c","msg":' + msg + b"}"]) == 1
