"""Coinbase Advanced Trade's ticker wire format: the exact frames, the exact timestamps.

Inputs: ``TickerEvent`` values (prices in integer cents, quantities in 1e-8 units). Outputs:
the bytes Coinbase sends for them (``ticker_frame``), and the timestamp text both ways
(``format_timestamp``/``parse_timestamp``, exact to the nanosecond). The synthetic market
(``volpipe.market``), the local exchange and the tests render frames only through here.
"""

from __future__ import annotations

import calendar
import functools
import time
from typing import NamedTuple

NS = 1_000_000_000
SATS = 100_000_000

FRAME = b'{"channel":"ticker","timestamp":"%s","sequence_num":%d,"events":[{"type":"%s","tickers":[%s]}]}'
_TICKER = (
    '{"type":"ticker","product_id":"%s","price":"%s","volume_24_h":"%s","low_24_h":"%s",'
    '"high_24_h":"%s","low_52_w":"%s","high_52_w":"%s","price_percent_chg_24_h":"%s",'
    '"best_bid":"%s","best_ask":"%s","best_bid_quantity":"%s","best_ask_quantity":"%s"}'
)


class TickerEvent(NamedTuple):
    """One ticker update. Prices are integer cents, quantities integer 1e-8 units."""

    time_ns: int
    product_id: str
    price_c: int
    best_bid_c: int
    best_ask_c: int
    best_bid_qty: int
    best_ask_qty: int
    volume_24h: int
    low_24h_c: int
    high_24h_c: int
    low_52w_c: int
    high_52w_c: int
    pct_chg_24h: float

    @property
    def mid(self) -> float:
        """Mid price in USD (for statistics; the wire carries exact decimals)."""
        return (self.best_bid_c + self.best_ask_c) / 200.0


def _cents(value: int) -> str:
    whole, frac = divmod(value, 100)
    if frac == 0:
        return str(whole)
    if frac % 10 == 0:
        return f"{whole}.{frac // 10}"
    return f"{whole}.{frac:02d}"


def _units(value: int) -> str:
    whole, frac = divmod(value, SATS)
    return f"{whole}.{frac:08d}".rstrip("0").rstrip(".") if frac else str(whole)


def _percent(value: float) -> str:
    text = f"{value:.14g}"
    if "e" in text:
        text = f"{value:.14f}".rstrip("0").rstrip(".")
    return text


@functools.lru_cache(maxsize=4096)
def _second(epoch_s: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(epoch_s))


@functools.lru_cache(maxsize=4096)
def _epoch_second(text: str) -> int:
    return calendar.timegm(time.strptime(text, "%Y-%m-%dT%H:%M:%S"))


def format_timestamp(t_ns: int) -> str:
    """Coinbase's timestamp text: UTC, 9 fractional digits without trailing zeros, at least 6."""
    seconds, frac = divmod(t_ns, NS)
    digits = f"{frac:09d}".rstrip("0")
    if len(digits) < 6:
        digits = digits.ljust(6, "0")
    return f"{_second(seconds)}.{digits}Z"


def parse_timestamp(text: str) -> int:
    """Inverse of ``format_timestamp``: ``2026-04-05T22:35:13.92532762Z`` -> epoch ns, exactly.

    Raises:
        ValueError: ``text`` is not an RFC 3339 UTC timestamp.
    """
    if not text.endswith("Z"):
        raise ValueError(f"timestamp is not UTC (no Z): {text!r}")
    whole, _, frac = text[:-1].partition(".")
    if len(frac) > 9 or (frac and not frac.isdigit()):
        raise ValueError(f"bad fractional seconds in timestamp {text!r}")
    return _epoch_second(whole) * NS + int(frac.ljust(9, "0") or 0)


def ticker_object(event: TickerEvent) -> bytes:
    """One ticker object as Coinbase writes it inside ``events[].tickers``: exact decimal strings."""
    e = event
    return (
        _TICKER
        % (
            e.product_id,
            _cents(e.price_c),
            _units(e.volume_24h),
            _cents(e.low_24h_c),
            _cents(e.high_24h_c),
            _cents(e.low_52w_c),
            _cents(e.high_52w_c),
            _percent(e.pct_chg_24h),
            _cents(e.best_bid_c),
            _cents(e.best_ask_c),
            _units(e.best_bid_qty),
            _units(e.best_ask_qty),
        )
    ).encode()


def ticker_frame(event: TickerEvent, sequence_num: int, kind: str = "update") -> bytes:
    """The exact frame Coinbase Advanced Trade sends for one ticker (no ``client_id``).

    Args:
        event: The ticker to render; its ``time_ns`` becomes the frame's ``timestamp``.
        sequence_num: The connection's message counter.
        kind: ``"snapshot"`` for a product's first message on a connection, else ``"update"``.

    Returns:
        The frame as UTF-8 JSON bytes, prices and sizes as exact decimal strings.
    """
    return FRAME % (format_timestamp(event.time_ns).encode(), sequence_num, kind.encode(), ticker_object(event))
