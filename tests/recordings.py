"""Recordings for the import and replay tests: one the tests generate, and the real one if present.

The real recording (``../shared/real-ticks``, or ``REAL_TICKS_DIR``) is read where it lies,
never copied into the repository: a fresh machine may lack it, and then its tests skip
while the generated recording covers the same code.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from volpipe.coinbase import ticker_frame
from volpipe.config import PROJECT_ROOT
from volpipe.market import SyntheticMarket

REAL_TICKS = "coinbase-btcusd-2026-04-05.ndjson"
START_NS = 1_775_383_200_123_456_780  # 2026-04-05T10:00:00.12345678Z
PRODUCTS = ("BTC-USD", "ETH-USD")
ACK = (
    b'{"channel":"subscriptions","timestamp":"2026-04-05T10:00:00.2Z","sequence_num":1,'
    b'"events":[{"subscriptions":{"ticker":["BTC-USD","ETH-USD"]}}]}'
)
BEAT = (
    b'{"channel":"heartbeats","timestamp":"2026-04-05T10:00:00.9Z","sequence_num":3,'
    b'"events":[{"current_time":"2026-04-05 10:00:00.9 +0000 UTC","heartbeat_counter":1}]}'
)
NOT_JSON = b'{"channel":"ticker","timestamp":"2026-'
# Nine digits with trailing zeros: Coinbase's formatter would never write it, an import keeps it.
ODD_STAMP = b"2026-04-05T10:00:01.500000000Z"


def generated_recording(path: Path, tickers: int = 40) -> dict[str, int]:
    """Writes a recording of Coinbase messages with every kind of line an import must handle.

    Tickers of two products (the first a snapshot), a subscriptions ack, a heartbeat, a blank
    line, a ticker whose timestamp has nine digits with trailing zeros, a line that is not
    JSON, a negative price, an unknown product, and a jump of 3 in ``sequence_num``.

    Returns:
        The expected counts: lines, blank, imported, deadlettered, skipped_heartbeats,
        skipped_acks, gaps.
    """
    events = iter(SyntheticMarket(PRODUCTS, seed=5, start_ns=START_NS))

    def tick(seq: int, kind: str = "update") -> bytes:
        return ticker_frame(next(events), seq, kind)

    odd = re.sub(rb'"timestamp":"[^"]*"', b'"timestamp":"' + ODD_STAMP + b'"', tick(4))
    negative = re.sub(rb'"price":"[^"]*"', b'"price":"-1"', tick(5))
    unknown = (
        tick(10)
        .replace(b'"product_id":"BTC-USD"', b'"product_id":"NOPE-USD"')
        .replace(b'"product_id":"ETH-USD"', b'"product_id":"NOPE-USD"')
    )
    lines = [tick(0, "snapshot"), ACK, tick(2), BEAT, b"", odd, NOT_JSON, negative, tick(9), unknown]
    lines += [tick(seq) for seq in range(11, 11 + tickers - 4)]
    path.write_bytes(b"\n".join(lines) + b"\n")
    return {
        "lines": len(lines),
        "blank": 1,
        "imported": tickers,
        "deadlettered": 3,
        "skipped_heartbeats": 1,
        "skipped_acks": 1,
        "gaps": 3,
    }


def real_recording() -> Path:
    """The real BTC-USD recording where it lies; skips the calling test when this machine lacks it."""
    folder = Path(os.environ.get("REAL_TICKS_DIR", PROJECT_ROOT.parent / "shared" / "real-ticks"))
    path = folder / REAL_TICKS
    if not path.is_file():
        pytest.skip(
            f"real recording absent: {path} (set REAL_TICKS_DIR to shared/real-ticks; "
            "the generated-recording tests cover the same code)"
        )
    return path
