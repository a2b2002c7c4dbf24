"""A seeded market whose regime shifts: what announces a volatility burst changes, and its level doubles.

The drift loop test (``test_drift_loop.py``) needs a shift that a retrained model must win on,
so the market is built for that rather than taken from ``volpipe.market``:

* Each product cycles through calm (a random 40-100 ticks), ``lead`` (10 ticks), a burst (a
  random 6-10 ticks at ``BURST_MULTIPLIER`` times the calm volatility) and ``after`` (10 ticks).
  Bursts are short against the label's horizon, so the volatility of the last ticks says
  little about the next ones: a model must read what announces a burst.
* Old regime (``"spread"``): the spread widens step by step over the lead ticks, and only
  there (besides 1% stray wide ticks). Ticks come every ~0.2 s.
* New regime (``"pace"``): the volatility of every phase doubles; the ticks of the lead come
  faster and faster (so ``trade_intensity`` rises before a burst), and the spread now widens
  in the ``after`` ticks, then narrows: a wide spread means the burst is over.

A model trained on the old regime ranks wide-spread rows first; in the new regime those are
the calm rows after a burst, so it ranks the negatives first and loses to a model trained on
the new regime, which reads the quickening ticks. Prices are integer cents, as in the feed.
"""

from __future__ import annotations

import math
import random

from volpipe.coinbase import TickerEvent, ticker_frame
from volpipe.records import raw_record

REGIMES = ("spread", "pace")
LEAD_TICKS = 10
BURST_MULTIPLIER = 5.0
CALM_SIGMA = 1e-4  # per tick, in log price
WIDE_SPREAD_CENTS = 1500  # ~2.2 bps at BTC's level


class RegimeMarket:
    """One product's ticks, continuing its price and randomness from one call of ``events`` to the next."""

    def __init__(self, product_id: str = "BTC-USD", seed: int = 1) -> None:
        self.product_id = product_id
        self.rng = random.Random(f"regime-shift:{seed}")
        self.mid2 = 2 * 6_700_000  # twice the mid, in cents
        self.sequence_num = 0

    def _phases(self, n: int) -> list[tuple[str, int]]:
        """(phase, position in it) of ``n`` ticks."""
        phases: list[tuple[str, int]] = []
        while len(phases) < n:
            for phase, length in (
                ("calm", self.rng.randint(40, 100)),
                ("lead", LEAD_TICKS),
                ("burst", self.rng.randint(6, 10)),
                ("after", LEAD_TICKS),
            ):
                phases += [(phase, k) for k in range(length)]
        return phases[:n]

    def events(self, n: int, start_ns: int, regime: str) -> list[TickerEvent]:
        """``n`` ticks from ``start_ns`` in ``regime`` (``"spread"``: old, ``"pace"``: new)."""
        if regime not in REGIMES:
            raise ValueError(f"regime must be one of {REGIMES}, got {regime!r}")
        rng, out, t_ns = self.rng, [], start_ns
        level = 1.0 if regime == "spread" else 2.0
        for phase, k in self._phases(n):
            step = 0.2 * (0.8 + 0.4 * rng.random())
            if regime == "pace" and phase == "lead":
                step /= 1 + 3 * (k + 1) / LEAD_TICKS
            t_ns += int(step * 1e9)
            sigma = CALM_SIGMA * level * (BURST_MULTIPLIER if phase == "burst" else 1.0)
            self.mid2 = max(4, round(self.mid2 * math.exp(sigma * rng.gauss(0.0, 1.0))))
            announcing = (regime, phase) in (("spread", "lead"), ("pace", "after"))
            if announcing:  # widening towards the burst (old), narrowing away from it (new)
                grade = (k + 1) / LEAD_TICKS if phase == "lead" else (LEAD_TICKS - k) / LEAD_TICKS
                spread = int(WIDE_SPREAD_CENTS * grade) + rng.randint(1, 100)
            elif rng.random() < 0.01:
                spread = int(WIDE_SPREAD_CENTS * rng.random()) + rng.randint(1, 100)
            else:
                spread = 1
            bid = (self.mid2 - spread) // 2
            ask = bid + spread
            bid_qty, ask_qty = (int(math.exp(rng.gauss(0.0, 1.0)) * 1e8) for _ in range(2))
            out.append(
                TickerEvent(
                    t_ns,
                    self.product_id,
                    ask if rng.random() < 0.5 else bid,
                    bid,
                    ask,
                    bid_qty,
                    ask_qty,
                    10**12,
                    bid,
                    ask,
                    bid,
                    ask,
                    0.0,
                )
            )
        return out

    def records(self, n: int, start_ns: int, regime: str, start_seq: int) -> list[tuple[str, bytes]]:
        """``n`` ticks as the ingestor's raw records (one connection; the first is a snapshot)."""
        records = []
        for offset, event in enumerate(self.events(n, start_ns, regime)):
            kind = "snapshot" if self.sequence_num == 0 else "update"
            frame = ticker_frame(event, self.sequence_num, kind)
            record = raw_record(start_seq + offset, event.time_ns + 300_000, "regime-0", frame)
            records.append((self.product_id, record))
            self.sequence_num += 1
        return records
