"""The pure frame classifier, the sequence tracker and the backoff: no sockets, no services."""

from __future__ import annotations

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from ingest.connection import Backoff
from ingest.protocol import Accepted, Rejected, SequenceTracker, classify, subscribe_messages
from volpipe.coinbase import ticker_frame
from volpipe.market import SyntheticMarket

PRODUCTS = frozenset({"BTC-USD", "ETH-USD"})


def _ticker(**fields) -> bytes:
    ticker = {
        "type": "ticker",
        "product_id": "BTC-USD",
        "price": "67468.26",
        "best_bid": "67468.26",
        "best_ask": "67469.62",
        "best_bid_quantity": "0.0035",
        "best_ask_quantity": "0.17",
    }
    ticker.update(fields)
    return orjson.dumps(
        {
            "channel": "ticker",
            "timestamp": "2026-04-05T22:35:14.009945409Z",
            "sequence_num": 2,
            "events": [{"type": "update", "tickers": [ticker]}],
        }
    )


def test_synthetic_ticker_frames_are_accepted():
    for i, event in zip(range(50), SyntheticMarket(["BTC-USD", "ETH-USD"], seed=1), strict=False):
        result = classify(ticker_frame(event, i), PRODUCTS)
        assert result == Accepted("ticker", i, (event.product_id,))


def test_heartbeats_and_acks_are_accepted_but_not_tickers():
    beat = (
        b'{"channel":"heartbeats","timestamp":"2026-04-05T22:35:14.1Z","sequence_num":7,'
        b'"events":[{"current_time":"x","heartbeat_counter":3}]}'
    )
    ack = (
        b'{"channel":"subscriptions","timestamp":"2026-04-05T22:35:13.925350911Z","sequence_num":1,'
        b'"events":[{"subscriptions":{"ticker":["BTC-USD"]}}]}'
    )
    assert classify(beat, PRODUCTS) == Accepted("heartbeats", 7)
    result = classify(ack, PRODUCTS)
    assert result.kind == "subscriptions" and result.sequence_num == 1


@pytest.mark.parametrize(
    ("frame", "reason"),
    [
        (b'{"channel":"ticker",', "not JSON"),
        (b"[1,2]", "not a JSON object"),
        (b'{"channel":"ticker","timestamp":"t","events":[]}', "sequence_num"),
        (b'{"channel":"ticker","timestamp":"t","sequence_num":3,"events":"oops"}', "events"),
        (b'{"channel":"level2","timestamp":"t","sequence_num":3,"events":[{}]}', "unexpected channel"),
        (_ticker(price="-1"), "price is not a positive decimal"),
        (_ticker(price="0.00"), "price is not a positive decimal"),
        (_ticker(price="abc"), "price is not a positive decimal"),
        (_ticker(price="1e5"), "price is not a positive decimal"),
        (_ticker(price="NaN"), "price is not a positive decimal"),
        (_ticker(price=67000), "price is not a positive decimal"),
        (_ticker(best_ask=None), "best_ask is not a positive decimal"),
        (_ticker(best_bid_quantity="-3"), "best_bid_quantity is not a decimal"),
        (_ticker(product_id="DOGE-USD"), "product not subscribed: 'DOGE-USD'"),
    ],
)
def test_invalid_frames_are_rejected_with_a_reason(frame, reason):
    result = classify(frame, PRODUCTS)
    assert isinstance(result, Rejected)
    assert reason in result.reason


def test_a_well_formed_but_invalid_ticker_keeps_its_sequence_num():
    assert classify(_ticker(price="-1"), PRODUCTS).sequence_num == 2


def test_exchange_errors_are_rejected_and_flagged():
    result = classify(b'{"type":"error","message":"Failed to subscribe"}', PRODUCTS)
    assert isinstance(result, Rejected) and result.exchange_error
    assert "Failed to subscribe" in result.reason


@given(st.binary(max_size=300))
def test_classify_never_raises(frame):
    assert isinstance(classify(frame, PRODUCTS), (Accepted, Rejected))


def test_subscribe_messages_ask_for_ticker_and_heartbeats():
    ticker, beats = (orjson.loads(m) for m in subscribe_messages(["BTC-USD", "ETH-USD"]))
    assert ticker == {"type": "subscribe", "product_ids": ["BTC-USD", "ETH-USD"], "channel": "ticker"}
    assert beats == {"type": "subscribe", "channel": "heartbeats"}


def test_sequence_tracker_counts_gaps_and_repeats():
    tracker = SequenceTracker()
    assert tracker.observe(0) == (0, False)
    assert tracker.observe(1) == (0, False)
    assert tracker.observe(5) == (3, False)
    assert tracker.observe(5) == (0, True)
    assert tracker.observe(3) == (0, True)
    assert tracker.observe(6) == (0, False)


def test_a_connection_starting_after_zero_has_lost_its_first_messages():
    assert SequenceTracker().observe(4) == (4, False)


def test_backoff_doubles_up_to_the_cap_with_jitter_and_resets():
    low = Backoff(0.5, 4.0, rand=lambda: 0.0)
    high = Backoff(0.5, 4.0, rand=lambda: 1.0)
    assert [low.next_delay() for _ in range(6)] == [0.25, 0.5, 1.0, 2.0, 2.0, 2.0]
    assert [high.next_delay() for _ in range(6)] == [0.5, 1.0, 2.0, 4.0, 4.0, 4.0]
    high.reset()
    assert high.next_delay() == 0.5


@pytest.mark.parametrize("product", [["BTC-USD"], {"a": 1}, None, 7])
def test_a_product_id_of_the_wrong_type_is_rejected_not_raised(product):
    result = classify(_ticker(product_id=product), PRODUCTS)
    assert isinstance(result, Rejected) and "product not subscribed" in result.reason


@given(
    st.recursive(
        st.none() | st.booleans() | st.integers(-(2**63), 2**63 - 1) | st.text(max_size=5),
        lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=5), children, max_size=3),
    )
)
def test_classify_never_raises_on_ticker_shaped_json(junk):
    frame = orjson.dumps(
        {
            "channel": "ticker",
            "timestamp": "t",
            "sequence_num": 1,
            "events": [{"type": "update", "tickers": [junk]}, {"type": "update", "tickers": junk}],
        }
    )
    assert isinstance(classify(frame, PRODUCTS), (Accepted, Rejected))
