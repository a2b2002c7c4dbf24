"""A seeded, deterministic synthetic market that speaks Coinbase's ticker wire format.

Inputs: product ids, a seed and a start time. Outputs: ``TickerEvent`` values in exchange
time order across products, rendered into the exact bytes Coinbase Advanced Trade sends by
``volpipe.coinbase``, and by ``synthetic_raw_records`` into the raw records the ingestor
writes (``volpipe.records.raw_record``). No I/O and no clock: the same arguments give the
same bytes, which is what tests, benchmarks and the local exchange (``ingest.exchange``)
rely on.

The model, calibrated against a real 20-minute BTC-USD recording (docs/exchange.md):

* Volatility clusters. A market-wide regime flips between calm and burst (exponential
  durations, means ``calm_seconds`` / ``burst_seconds``); each product's volatility relaxes
  towards the regime level over ``regime_ramp_seconds`` and carries its own
  Ornstein-Uhlenbeck log-volatility noise, so bursts build up visibly but start at random.
* Tick arrival speeds up with volatility (rate ~ sigma**0.35) and comes partly in quick
  cascades (tens of milliseconds apart), partly spread out, like the real feed.
* About 70% of ticks leave the best bid/ask (and so the mid) unchanged; a move carries the
  variance accumulated since the last move, with fat tails (a scale mixture of normals).
* Prices live on a 0.01 grid, in integer cents; spreads are one cent ~84% of the time and
  otherwise exponential with a mean of ~1.5 USD (BTC), wider when volatile.
"""

from __future__ import annotations

import bisect
import math
import random
import zlib
from collections.abc import Iterator, Sequence

from volpipe.coinbase import NS, SATS, TickerEvent, ticker_frame
from volpipe.records import raw_record

# Fixed default start (2026-01-01T00:00:00Z), so the default market is reproducible.
DEFAULT_START_NS = 1_767_225_600 * 1_000_000_000

# Rough price levels (USD) of well-known products; others get a level derived from the name.
_LEVELS = {"BTC-USD": 67_000.0, "ETH-USD": 3_500.0, "SOL-USD": 150.0, "DOGE-USD": 0.2}

class _Regime:
    """The market-wide calm/burst timeline, generated lazily from its own random stream."""

    def __init__(self, seed: int, start_ns: int, calm_seconds: float, burst_seconds: float) -> None:
        self._rng = random.Random(f"{seed}:regime")
        self._means = (calm_seconds, burst_seconds)
        self._switch_ns = [start_ns]  # regime i holds from _switch_ns[i] to _switch_ns[i+1]
        self._extend()

    def _extend(self) -> None:
        state = (len(self._switch_ns) - 1) % 2
        duration = self._rng.expovariate(1.0 / self._means[state])
        self._switch_ns.append(self._switch_ns[-1] + int(duration * NS))

    def burst(self, t_ns: int) -> bool:
        """True when the market is in a burst at ``t_ns``."""
        while self._switch_ns[-1] <= t_ns:
            self._extend()
        return (bisect.bisect_right(self._switch_ns, t_ns) - 1) % 2 == 1


class _Product:
    """The state of one product's book top, volatility and 24-hour statistics."""

    def __init__(self, product_id: str, seed: int, start_ns: int, market: SyntheticMarket) -> None:
        self.product_id = product_id
        self.m = market
        self.rng = rng = random.Random(f"{seed}:{product_id}")
        level = _LEVELS.get(product_id) or 10 ** (1 + (zlib.crc32(product_id.encode()) % 300) / 100)
        level = max(level, 1.0) * math.exp(rng.gauss(0.0, 0.02))
        self.mid2 = 2 * round(level * 100)  # twice the mid, in cents, so half-cent mids are exact
        self.spread_c = 1
        self.bid_c = (self.mid2 - 1) // 2
        self.ask_c = self.bid_c + 1
        self.price_c = self.bid_c
        self.last_buy = True
        self.bid_qty, self.ask_qty = self._qty(), self._qty()
        self.volume = int(2e8 / level * math.exp(rng.gauss(0.0, 0.3)) * SATS)
        self.open_c = round(self.price_c * (1 + rng.gauss(0.0, 0.01)))
        self.low_24h_c = min(self.open_c, self.price_c) * 985 // 1000
        self.high_24h_c = max(self.open_c, self.price_c) * 1012 // 1000
        self.low_52w_c = self.price_c * 85 // 100
        self.high_52w_c = self.price_c * 190 // 100
        self.log_noise = 0.0  # OU log-volatility noise
        self.mult = market.burst_multiplier if market._regime.burst(start_ns) else 1.0
        self.acc_var = 0.0  # return variance accumulated since the last book move
        self.t_ns = start_ns
        self.next_ns = start_ns + self._gap()

    def _qty(self) -> int:
        usd = math.exp(self.rng.gauss(5.5, 1.8))
        return max(1, int(usd / (self.mid2 / 200.0) * SATS))

    def _gap(self) -> int:
        """Exchange-time gap to this product's next tick, shorter when volatile."""
        rng = self.rng
        ratio = self.mult * math.exp(self.log_noise)
        rate = self.m.rate_per_product * ratio**0.35
        mean = 1.0 / rate
        fast_mean = min(0.05, 0.5 * mean)
        if rng.random() < 0.3:
            seconds = fast_mean * (0.6 + 0.4 * rng.expovariate(1.0))
        else:
            # The real feed's other gaps bunch around 0.2-0.25 s: a shifted exponential.
            seconds = (mean - 0.3 * fast_mean) / 0.7 * (0.75 + 0.25 * rng.expovariate(1.0))
        if rng.random() < 0.004:
            seconds += rng.expovariate(1.0 / (7.5 * mean))  # the occasional quiet second or three
        return max(1000, int(seconds * NS))

    def step(self) -> TickerEvent:
        """Advances to ``next_ns``, returns the event there and schedules the next one."""
        m, rng = self.m, self.rng
        now = self.next_ns
        dt = (now - self.t_ns) / NS
        self.t_ns = now
        target = m.burst_multiplier if m._regime.burst(now) else 1.0
        self.mult = target + (self.mult - target) * math.exp(-dt / m.regime_ramp_seconds)
        decay = math.exp(-dt / m.noise_seconds)
        self.log_noise = self.log_noise * decay + m.noise_std * math.sqrt(1 - decay * decay) * rng.gauss(0.0, 1.0)
        ratio = self.mult * math.exp(self.log_noise)
        sigma = m.sigma_per_sqrt_s * ratio
        self.acc_var += sigma * sigma * dt
        if rng.random() < min(0.9, m.move_probability * ratio**0.25):
            self._move(ratio)
        if rng.random() < m.trade_probability:
            self._trade(dt)
        self.next_ns = now + self._gap()
        return TickerEvent(
            now, self.product_id, self.price_c, self.bid_c, self.ask_c, self.bid_qty, self.ask_qty,
            self.volume, self.low_24h_c, self.high_24h_c, self.low_52w_c, self.high_52w_c,
            (self.price_c - self.open_c) * 100.0 / self.open_c,
        )

    def _move(self, ratio: float) -> None:
        rng = self.rng
        # Scale mixture of normals with unit variance: fat tails like the real returns.
        z = rng.gauss(0.0, 1.0) * (2.2 if rng.random() < 0.08 else 0.816)
        self.mid2 = max(4, round(self.mid2 * math.exp(math.sqrt(self.acc_var) * z)))
        self.acc_var = 0.0
        if rng.random() < self.m.tight_probability / ratio**0.15:
            spread = 1
        else:
            wide_mean = self.m.wide_spread_bps * 1e-4 * self.mid2 / 2 * ratio**0.5
            spread = 1 + int(rng.expovariate(1.0 / max(wide_mean, 1.0)))
        self.bid_c = max(1, (self.mid2 - spread) // 2)
        self.ask_c = self.bid_c + spread
        self.bid_qty, self.ask_qty = self._qty(), self._qty()

    def _trade(self, dt: float) -> None:
        rng = self.rng
        if rng.random() > 0.85:
            self.last_buy = not self.last_buy
        self.price_c = self.ask_c if self.last_buy else self.bid_c
        size = self._qty()
        self.volume += size
        self.volume -= int(self.volume * dt / 86_400)
        self.low_24h_c = min(self.low_24h_c, self.price_c)
        self.high_24h_c = max(self.high_24h_c, self.price_c)
        self.low_52w_c = min(self.low_52w_c, self.price_c)
        self.high_52w_c = max(self.high_52w_c, self.price_c)


class SyntheticMarket:
    """Ticker events of several products, merged in exchange-time order.

    Args:
        product_ids: Products to simulate; each has its own random stream, so adding a
            product does not change the others (they share only the calm/burst regime).
        seed: Seeds everything; the same seed gives the same events.
        start_ns: Exchange time of the start, UTC epoch ns (default 2026-01-01T00:00Z).
        rate: Mean ticks per second per product in calm markets (real BTC-USD: ~5).
        sigma_per_sqrt_s: Calm volatility of the log mid per sqrt(second).
        burst_multiplier: Volatility of a burst relative to calm.
        calm_seconds: Mean duration of a calm stretch.
        burst_seconds: Mean duration of a burst.
    """

    def __init__(
        self,
        product_ids: Sequence[str],
        seed: int,
        start_ns: int | None = None,
        *,
        rate: float = 4.4,
        sigma_per_sqrt_s: float = 0.5e-4,
        burst_multiplier: float = 3.0,
        calm_seconds: float = 600.0,
        burst_seconds: float = 180.0,
    ) -> None:
        if not product_ids:
            raise ValueError("SyntheticMarket needs at least one product id")
        if len(set(product_ids)) != len(product_ids):
            raise ValueError(f"duplicate product ids: {list(product_ids)}")
        if rate <= 0:
            raise ValueError(f"rate must be positive, got {rate}")
        self.product_ids = tuple(product_ids)
        self.seed = seed
        self.start_ns = DEFAULT_START_NS if start_ns is None else start_ns
        self.rate_per_product = rate
        self.sigma_per_sqrt_s = sigma_per_sqrt_s
        self.burst_multiplier = burst_multiplier
        self.regime_ramp_seconds = 30.0
        self.noise_seconds = 120.0
        self.noise_std = 0.3
        self.move_probability = 0.28
        self.trade_probability = 0.35
        self.tight_probability = 0.88
        self.wide_spread_bps = 0.16  # mean wide spread ~1.1 USD at BTC's level, more when volatile
        self._regime = _Regime(seed, self.start_ns, calm_seconds, burst_seconds)

    def __iter__(self) -> Iterator[TickerEvent]:
        """Endless events in exchange-time order (ties broken by product order)."""
        products = [_Product(pid, self.seed, self.start_ns, self) for pid in self.product_ids]
        if len(products) == 1:
            product = products[0]
            while True:
                yield product.step()
        while True:
            product = min(products, key=_next_ns)
            yield product.step()

    def burst(self, t_ns: int) -> bool:
        """True when the market-wide regime is a burst at ``t_ns`` (for tests and docs)."""
        return self._regime.burst(t_ns)


def _next_ns(product: _Product) -> int:
    return product.next_ns


def synthetic_raw_records(
    n: int,
    product_ids: Sequence[str] = ("BTC-USD",),
    seed: int = 7,
    start_seq: int = 0,
    conn_id: str = "synthetic-0",
    start_ns: int | None = None,
) -> Iterator[tuple[str, bytes]]:
    """``n`` raw records exactly as the ingestor writes them for a stream of ticker frames.

    ``sequence_num`` counts from 0 (one connection), each product's first frame is a
    snapshot, ``ingest_seq`` counts from ``start_seq``, and ``recv_ns`` is the exchange time
    plus a small network delay, strictly increasing.

    Args:
        n: Number of records.
        product_ids: Products, merged in time order.
        seed: Market seed.
        start_seq: ``ingest_seq`` of the first record.
        conn_id: Connection id written into every record.
        start_ns: Exchange time of the start (default: the market's fixed default).

    Returns:
        An iterator of ``(product_id, record bytes)``; the bytes have no trailing newline.
    """
    delay = random.Random(f"{seed}:delay")
    seen: set[str] = set()
    last_recv = 0
    for seq, event in zip(range(n), SyntheticMarket(product_ids, seed, start_ns)):
        kind = "update"
        if event.product_id not in seen:
            seen.add(event.product_id)
            kind = "snapshot"
        recv_ns = max(last_recv + 1, event.time_ns + 200_000 + int(delay.expovariate(1 / 800_000)))
        last_recv = recv_ns
        yield event.product_id, raw_record(start_seq + seq, recv_ns, conn_id, ticker_frame(event, seq, kind))
