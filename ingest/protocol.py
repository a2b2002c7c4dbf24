"""Layer 2 of the ingestor: a pure classifier of Coinbase Advanced Trade frames.

Input: one frame as received (bytes). Output: ``Accepted`` (a ticker, heartbeat or
subscriptions ack) or ``Rejected`` with a reason for the quarantine. No I/O, no state:
sequence checking lives in ``SequenceTracker``, which the connection owns.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from typing import final

import orjson

TICKER, HEARTBEAT, SUBSCRIPTIONS = "ticker", "heartbeats", "subscriptions"
_is_decimal = re.compile(r"[0-9]+(?:\.[0-9]+)?").fullmatch  # ASCII only: Spark reads no other digits
_REQUIRED_PRICES = ("price", "best_bid", "best_ask")
_OPTIONAL_AMOUNTS = ("volume_24_h", "best_bid_quantity", "best_ask_quantity")


@final  # the ingestor tells the two results apart with type(result) is Accepted
@dataclass(frozen=True, slots=True)
class Accepted:
    """A frame the ingestor keeps or counts.

    Attributes:
        kind: ``ticker``, ``heartbeats`` or ``subscriptions``.
        sequence_num: The connection's message counter carried by the frame.
        product_ids: Products of a ticker frame, in order (empty otherwise).
        body: The decoded message (for logging acks; tickers are stored verbatim).
    """

    kind: str
    sequence_num: int
    product_ids: tuple[str, ...] = ()
    body: dict | None = None


@dataclass(frozen=True, slots=True)
class Rejected:
    """A frame for the dead-letter topic and the quarantine file.

    Attributes:
        reason: Why, for a human reading the quarantine.
        sequence_num: The frame's sequence_num when it had a readable one, so gap
            accounting stays right for frames that are well-formed but invalid.
        exchange_error: True for the exchange's own ``{"type":"error"}`` messages.
    """

    reason: str
    sequence_num: int | None = None
    exchange_error: bool = False


def subscribe_messages(product_ids: Sequence[str]) -> list[bytes]:
    """The subscribe requests: ticker for ``product_ids``, then heartbeats (one channel each)."""
    return [
        orjson.dumps({"type": "subscribe", "product_ids": list(product_ids), "channel": TICKER}),
        orjson.dumps({"type": "subscribe", "channel": HEARTBEAT}),
    ]


def classify(frame: bytes, products: Collection[str]) -> Accepted | Rejected:
    """Decides what one frame is; never raises on any input.

    Args:
        frame: The frame as received.
        products: The products subscribed to; tickers of others are rejected.

    Returns:
        ``Accepted`` for a valid ticker, heartbeat or subscriptions ack, else ``Rejected``.
    """
    try:
        msg = orjson.loads(frame)
    except orjson.JSONDecodeError as exc:
        return Rejected(f"not JSON: {exc}")
    if not isinstance(msg, dict):
        return Rejected(f"not a JSON object but {type(msg).__name__}")
    if msg.get("type") == "error":
        return Rejected(f"exchange error: {msg.get('message')!r}", exchange_error=True)
    channel = msg.get("channel")
    seq = msg.get("sequence_num")
    if not isinstance(seq, int) or isinstance(seq, bool) or seq < 0:
        return Rejected(f"sequence_num is not a non-negative integer: {seq!r}")
    if not isinstance(msg.get("timestamp"), str):
        return Rejected("timestamp missing or not a string", seq)
    events = msg.get("events")
    if not isinstance(events, list) or not events or not all(isinstance(e, dict) for e in events):
        return Rejected("events is not a non-empty list of objects", seq)
    if channel == TICKER:
        return _ticker(events, seq, products)
    if channel == HEARTBEAT:
        return Accepted(HEARTBEAT, seq)
    if channel == SUBSCRIPTIONS:
        return Accepted(SUBSCRIPTIONS, seq, body=msg)
    return Rejected(f"unexpected channel: {channel!r}", seq)


def _ticker(events: list[dict], seq: int, products: Collection[str]) -> Accepted | Rejected:
    # The hot path (tens of thousands of calls a second): exact type checks, one regex each.
    product_ids: list[str] = []
    for event in events:
        kind = event.get("type")
        if kind != "update" and kind != "snapshot":
            return Rejected(f"ticker event type is not snapshot/update: {kind!r}", seq)
        tickers = event.get("tickers")
        if type(tickers) is not list or not tickers:
            return Rejected("ticker event has no tickers list", seq)
        for ticker in tickers:
            if type(ticker) is not dict:
                return Rejected("ticker is not an object", seq)
            product = ticker.get("product_id")
            if type(product) is not str or product not in products:
                return Rejected(f"product not subscribed: {product!r}", seq)
            for field in _REQUIRED_PRICES:
                value = ticker.get(field)
                # strip("0.") leaves nothing only for a zero like "0" or "0.00"
                if type(value) is not str or not _is_decimal(value) or not value.strip("0."):
                    return Rejected(f"{field} is not a positive decimal: {value!r} product_id={product}", seq)
            for field in _OPTIONAL_AMOUNTS:
                value = ticker.get(field)
                if value is not None and (type(value) is not str or not _is_decimal(value)):
                    return Rejected(f"{field} is not a decimal: {value!r} product_id={product}", seq)
            product_ids.append(product)
    return Accepted(TICKER, seq, tuple(product_ids))


class SequenceTracker:
    """Checks one connection's ``sequence_num``: counts gaps (lost) and repeats.

    Coinbase counts every message of a connection from 0 across channels, so a jump means
    messages were lost (the exchange has no replay) and a step back means a repeat.
    """

    def __init__(self) -> None:
        self.last: int | None = None

    def observe(self, seq: int) -> tuple[int, bool]:
        """Records ``seq``; returns (messages missing before it, whether it is a repeat)."""
        last = self.last
        if last is None:
            self.last = seq
            return seq, False
        if seq <= last:
            return 0, True
        self.last = seq
        return seq - last - 1, False
