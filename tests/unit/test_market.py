"""The synthetic market: deterministic, in Coinbase's exact wire format, and roughly real-shaped."""

from __future__ import annotations

import itertools
import re
from decimal import Decimal

import numpy as np
import orjson
import pytest

from volpipe.coinbase import format_timestamp, parse_timestamp, ticker_frame
from volpipe.market import SyntheticMarket, synthetic_raw_records
from volpipe.records import raw_record

TICKER_KEYS = [
    "type", "product_id", "price", "volume_24_h", "low_24_h", "high_24_h", "low_52_w", "high_52_w",
    "price_percent_chg_24_h", "best_bid", "best_ask", "best_bid_quantity", "best_ask_quantity",
]
DECIMAL = re.compile(r"^-?\d+(\.\d*[1-9])?$")  # no exponent, no trailing zeros


def _take(market: SyntheticMarket, n: int) -> list:
    return list(itertools.islice(market, n))


def test_same_seed_gives_same_bytes_and_another_seed_does_not():
    first = list(synthetic_raw_records(2000, ("BTC-USD", "ETH-USD"), seed=3))
    again = list(synthetic_raw_records(2000, ("BTC-USD", "ETH-USD"), seed=3))
    other = list(synthetic_raw_records(2000, ("BTC-USD", "ETH-USD"), seed=4))
    assert first == again
    assert first != other


def test_a_product_stream_does_not_depend_on_the_other_products():
    alone = [e for e in _take(SyntheticMarket(["BTC-USD"], seed=11), 500)]
    mixed = [e for e in _take(SyntheticMarket(["ETH-USD", "BTC-USD", "SOL-USD"], seed=11), 3000)]
    btc = [e for e in mixed if e.product_id == "BTC-USD"]
    assert btc[: len(alone)] == alone[: len(btc)]
    assert len(btc) > 300


def test_events_are_in_time_order_across_products():
    events = _take(SyntheticMarket(["BTC-USD", "ETH-USD", "XYZ-USD"], seed=1, start_ns=10**18), 5000)
    times = [e.time_ns for e in events]
    assert times == sorted(times)
    assert times[0] > 10**18
    assert {e.product_id for e in events} == {"BTC-USD", "ETH-USD", "XYZ-USD"}


def test_ticker_frame_matches_the_coinbase_wire_format():
    event = next(iter(SyntheticMarket(["BTC-USD"], seed=5)))
    frame = ticker_frame(event, 17, "snapshot")
    msg = orjson.loads(frame)
    assert list(msg) == ["channel", "timestamp", "sequence_num", "events"]
    assert msg["channel"] == "ticker" and msg["sequence_num"] == 17
    assert "client_id" not in msg
    assert parse_timestamp(msg["timestamp"]) == event.time_ns
    (ev,) = msg["events"]
    assert ev["type"] == "snapshot"
    (ticker,) = ev["tickers"]
    assert list(ticker) == TICKER_KEYS
    assert ticker["type"] == "ticker" and ticker["product_id"] == "BTC-USD"
    for key in TICKER_KEYS[2:]:
        assert isinstance(ticker[key], str) and DECIMAL.match(ticker[key]), (key, ticker[key])
    assert Decimal(ticker["best_bid"]) == Decimal(event.best_bid_c) / 100
    assert Decimal(ticker["best_ask"]) > Decimal(ticker["best_bid"])
    assert Decimal(ticker["best_bid_quantity"]) == Decimal(event.best_bid_qty) / 10**8


@pytest.mark.parametrize(
    ("t_ns", "text"),
    [
        (1_775_428_513_925_327_620, "2026-04-05T22:35:13.92532762Z"),
        (1_775_428_513_925_000_000, "2026-04-05T22:35:13.925000Z"),
        (1_775_428_513_000_000_000, "2026-04-05T22:35:13.000000Z"),
        (1_775_428_513_000_000_001, "2026-04-05T22:35:13.000000001Z"),
    ],
)
def test_timestamps_keep_nanoseconds_with_6_to_9_digits(t_ns, text):
    assert format_timestamp(t_ns) == text
    assert parse_timestamp(text) == t_ns


def test_parse_timestamp_rejects_non_utc():
    with pytest.raises(ValueError):
        parse_timestamp("2026-04-05T22:35:13.1+01:00")


def test_raw_records_are_what_the_ingestor_writes():
    records = list(synthetic_raw_records(300, ("BTC-USD", "ETH-USD"), seed=2, start_seq=1000, conn_id="c-9"))
    kinds: dict[str, list[str]] = {}
    last_recv = 0
    for i, (key, value) in enumerate(records):
        rec = orjson.loads(value)
        assert list(rec) == ["ingest_seq", "recv_ns", "conn_id", "msg"]
        assert rec["ingest_seq"] == 1000 + i and rec["conn_id"] == "c-9"
        msg = rec["msg"]
        assert msg["sequence_num"] == i
        assert msg["events"][0]["tickers"][0]["product_id"] == key
        exchange_ns = parse_timestamp(msg["timestamp"])
        assert exchange_ns < rec["recv_ns"] < exchange_ns + 50_000_000
        assert rec["recv_ns"] > last_recv
        last_recv = rec["recv_ns"]
        # The frame is spliced in verbatim: rebuilding the record from it gives the same bytes.
        frame = value[value.index(b'"msg":') + 6 : -1]
        assert raw_record(rec["ingest_seq"], rec["recv_ns"], "c-9", frame) == value
        kinds.setdefault(key, []).append(msg["events"][0]["type"])
    for product_kinds in kinds.values():
        assert product_kinds[0] == "snapshot" and set(product_kinds[1:]) == {"update"}


def test_statistical_shape_is_roughly_real():
    events = _take(SyntheticMarket(["BTC-USD"], seed=7), 60_000)
    t = np.array([e.time_ns for e in events])
    bid = np.array([e.best_bid_c for e in events])
    ask = np.array([e.best_ask_c for e in events])
    mid = (bid + ask) / 2
    rate = len(t) / ((t[-1] - t[0]) / 1e9)
    assert 3 < rate < 8  # real BTC-USD: ~5 a second
    unchanged = np.mean(np.diff(mid) == 0)
    assert 0.6 < unchanged < 0.8  # real: ~70%
    assert 0.7 < np.mean(ask - bid == 1) < 0.95  # real: 84% one-cent spreads
    assert np.percentile(ask - bid, 99) > 100  # but some are dollars wide
    # Volatility clusters: one minute's realised volatility predicts the next's ...
    minute = (t[1:] - t[0]) // 60_000_000_000
    ret = np.diff(np.log(mid))
    rv = np.sqrt(np.bincount(minute, weights=ret**2))[:-1]
    counts = np.bincount(minute)[:-1]
    assert np.corrcoef(rv[:-1], rv[1:])[0, 1] > 0.3
    # ... and ticks come faster when the market moves.
    assert np.corrcoef(counts, rv)[0, 1] > 0.3
    assert rv.max() > 2.5 * np.median(rv)


def test_products_get_different_price_levels():
    events = _take(SyntheticMarket(["BTC-USD", "ETH-USD", "ABC-USD"], seed=1), 300)
    first = {e.product_id: e.best_bid_c for e in reversed(events)}
    assert len({round(np.log10(v)) for v in first.values()}) == 3


def test_invalid_arguments_are_rejected():
    with pytest.raises(ValueError):
        SyntheticMarket([], seed=1)
    with pytest.raises(ValueError):
        SyntheticMarket(["BTC-USD", "BTC-USD"], seed=1)


def test_bursts_move_the_mid_more_and_tick_faster_than_calm_stretches():
    market = SyntheticMarket(["BTC-USD"], seed=5)
    events = _take(market, 80_000)
    mids = np.array([e.mid for e in events])
    times = np.array([e.time_ns for e in events])
    burst = np.array([market.burst(t) for t in times[1:]])
    squared = np.diff(np.log(mids)) ** 2
    gaps = np.diff(times)
    assert 0.05 < burst.mean() < 0.6  # both regimes occur
    assert squared[burst].mean() > 2 * squared[~burst].mean()
    assert gaps[burst].mean() < gaps[~burst].mean()
