"""A seeded, deterministic synthetic market that speaks Coinbase's ticker wire format.

Inputs: product ids, a seed and a start time (or a schedule of sessions). Outputs:
``TickerEvent`` values in exchange time order across products, rendered into the exact bytes
Coinbase Advanced Trade sends by ``volpipe.coinbase``, and by ``synthetic_raw_records`` into
the raw records the ingestor writes (``volpipe.records.raw_record``). No I/O and no clock: the
same arguments give the same bytes, which is what tests, benchmarks and the local exchange
(``ingest.exchange``) rely on. docs/exchange.md gives the calibration and the assumptions.

Seconds to minutes, calibrated against a real 20-minute BTC-USD recording:

* Volatility clusters on three short scales: two Ornstein-Uhlenbeck log-volatility terms per
  product, one of seconds (moves come in quick runs) and one of minutes, and a market-wide
  calm/burst regime (exponential durations, means ``calm_seconds`` / ``burst_seconds``); a
  burst sets in within seconds and fades over minutes.
* Ticks come on a 0.25 s clock, a slot skipped more often the quieter the market; a tick that
  moves the book is often echoed ~50 ms later by one that does not. The rate follows
  volatility (~ sigma**0.35).
* About 70% of ticks leave the best bid/ask (and so the mid) unchanged. A move's size follows
  the current volatility, not the time since the last move; 12% are requotes of a cent or so,
  the rest have fat tails (a scale mixture of normals).
* Prices live on a 0.01 grid, in integer cents; spreads are one cent ~85% of the time and
  otherwise exponential with a mean of ~1.1 USD (BTC), wider when volatile.

Hours to days, market-wide, from stylised facts (a 20-minute recording cannot show them):

* A slow volatility level: three Ornstein-Uhlenbeck terms (20 minutes, 3 hours, 1.5 days)
  in log volatility, starting at the calibrated level, so one stretch of hours is often
  0.5x-2x the previous one. ``level_steps`` adds deterministic steps (a regime shift).
* A daily cycle by UTC hour: volatility and tick rate peak at 15:00 and bottom at 03:00,
  ``day_night_ratio`` apart.
* Silence: random outages (``outages_per_day``, off by default) and, with ``sessions``, the
  feed open only in a schedule of sessions on the days before a date.
"""

from __future__ import annotations

import bisect
import dataclasses
import datetime as dt
import itertools
import math
import operator
import random
import zlib
from collections.abc import Iterator, Sequence
from typing import Any

from volpipe.coinbase import NS, SATS, TickerEvent, ticker_frame
from volpipe.dates import EPOCH, NS_PER_DAY
from volpipe.records import raw_record

# Fixed default start (2026-01-01T00:00:00Z), so the default market is reproducible.
DEFAULT_START_NS = 1_767_225_600 * 1_000_000_000
NEVER = 2**63 - 1  # exchange time after the last session: no more ticks

# Rough price levels (USD) of well-known products; others get a level derived from the name.
_LEVELS = {"BTC-USD": 67_000.0, "ETH-USD": 3_500.0, "SOL-USD": 150.0, "DOGE-USD": 0.2}
# Slow log-volatility terms: (time scale in seconds, share of the variance of ``level_sd``**2).
_SLOW_TERMS = ((1_200.0, 1 / 3), (10_800.0, 1 / 3), (129_600.0, 1 / 3))
_SLOW_CELL_NS = 10 * NS  # the slow layer is piecewise constant over cells of this length
_PEAK_HOUR = 15.0  # UTC hour of the daily peak of volatility and tick rate; the trough is 12 h later
_RATE_ELASTICITY = 0.35  # tick rate ~ volatility**0.35 (the daily cycle moves both alike)
_QUICK_AFTER_MOVE, _QUICK_AFTER_STILL = 0.63, 0.18  # chance the next tick is a ~50 ms echo
_QUICK_SHARE = 0.3  # share of quick echoes among ticks (recording: 0.31)
_ECHO_MOVES = 0.05  # an echo moves the book this much less often (recording: 2% against 43%)
_CLOCK_NS, _ECHO_NS, _JITTER_NS = 250_000_000, 50_000_000, 8_000_000  # the feed's rhythm (recording)
_REQUOTE_SHARE = 0.12  # moves of the mid by 0.5-1.5 cents (recording: 12% of moves are <= 3 cents)
_MOVES_PER_CLOCK_MOVE = 1 + _ECHO_MOVES * _QUICK_SHARE / (1 - _QUICK_SHARE)  # echoes' moves included
_SILENCE_SECONDS = 60.0  # a gap longer than this is a silence: the price moves meanwhile


@dataclasses.dataclass(frozen=True)
class Sessions:
    """A schedule: ``per_day`` sessions of ``minutes`` on each of the ``days`` UTC days before
    ``before``, the feed silent in between (like a recorder run a few times a day).

    Session i of a day is centred at (i + 0.5) * 24 / per_day hours UTC: with 4 a day, at
    03:00, 09:00, 15:00 and 21:00, so the schedule samples quiet nights and busy afternoons.
    """

    before: dt.date
    days: int = 3
    per_day: int = 4
    minutes: float = 15.0

    def __post_init__(self) -> None:
        if self.days < 1 or self.per_day < 1:
            raise ValueError(f"sessions need days >= 1 and per_day >= 1, got {self.days} and {self.per_day}")
        if not 0 < self.minutes * self.per_day <= 1440:
            raise ValueError(f"{self.per_day} sessions of {self.minutes} minutes do not fit in a day")

    def windows(self) -> list[tuple[int, int]]:
        """Open windows [start_ns, end_ns), in time order."""
        first_day_ns = (self.before - EPOCH).days * NS_PER_DAY - self.days * NS_PER_DAY
        spacing, length = NS_PER_DAY // self.per_day, int(self.minutes * 60 * NS)
        return [
            (day + i * spacing + (spacing - length) // 2, day + i * spacing + (spacing - length) // 2 + length)
            for day in range(first_day_ns, first_day_ns + self.days * NS_PER_DAY, NS_PER_DAY)
            for i in range(self.per_day)
        ]


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

    def at(self, t_ns: int) -> tuple[bool, int]:
        """Whether the market is in a burst at ``t_ns``, and until when that holds."""
        while self._switch_ns[-1] <= t_ns:
            self._extend()
        i = bisect.bisect_right(self._switch_ns, t_ns) - 1
        return i % 2 == 1, self._switch_ns[i + 1]


class _Slow:
    """The market-wide slow layer: OU log-volatility terms, the daily cycle and level steps,
    piecewise constant over 10-second cells, generated lazily from its own random stream."""

    def __init__(
        self,
        seed: int,
        start_ns: int,
        level_sd: float,
        day_night_ratio: float,
        level_steps: Sequence[tuple[float, float]],
    ) -> None:
        self._rng = random.Random(f"{seed}:slow")
        self._start_ns = start_ns
        cell = _SLOW_CELL_NS / NS
        self._terms = [
            (math.exp(-cell / scale), level_sd * math.sqrt(share * (1 - math.exp(-2 * cell / scale))))
            for scale, share in _SLOW_TERMS
        ]
        self._state = [0.0] * len(_SLOW_TERMS)  # the calibrated level at the start
        self._amplitude = math.log(day_night_ratio) / 2
        # Normalised so that the cycle's mean over a day is 1 (rate and sigma are daily means).
        self._norm = math.log(
            sum(math.exp(self._amplitude * math.cos(2 * math.pi * k / 1440)) for k in range(1440)) / 1440
        )
        self._step_ns = [start_ns + int(seconds * NS) for seconds, _ in level_steps]
        self._step_log = [math.log(factor) for _, factor in level_steps]
        self._vol: list[float] = []
        self._rate: list[float] = []

    def _extend(self) -> None:
        rng = self._rng
        self._state = [
            x * decay + kick * rng.gauss(0.0, 1.0) for x, (decay, kick) in zip(self._state, self._terms, strict=True)
        ]
        begin_ns = self._start_ns + len(self._vol) * _SLOW_CELL_NS
        hour = begin_ns % NS_PER_DAY / (3600 * NS)
        daily = self._amplitude * math.cos(2 * math.pi * (hour - _PEAK_HOUR) / 24) - self._norm
        step = bisect.bisect_right(self._step_ns, begin_ns) - 1
        level = sum(self._state) + (self._step_log[step] if step >= 0 else 0.0)
        self._vol.append(math.exp(level + daily))
        self._rate.append(math.exp(_RATE_ELASTICITY * level + daily))

    def at(self, t_ns: int) -> tuple[float, float, int]:
        """Volatility and tick-rate multipliers at ``t_ns``, and until when they hold."""
        i = (t_ns - self._start_ns) // _SLOW_CELL_NS
        while len(self._vol) <= i:
            self._extend()
        return self._vol[i], self._rate[i], self._start_ns + (i + 1) * _SLOW_CELL_NS


class _Feed:
    """When the feed is silent: random outages (their own random stream) and the gaps of a
    session schedule, merged into disjoint intervals [start_ns, end_ns)."""

    def __init__(
        self, seed: int, start_ns: int, sessions: Sessions | None, outages_per_day: float, outage_median_minutes: float
    ) -> None:
        self._rng = random.Random(f"{seed}:outages")
        self._outage_rate = outages_per_day / 86_400
        self._outage_median = outage_median_minutes * 60
        windows = sessions.windows() if sessions else []
        self._gaps = [(end, nxt) for (_, end), (nxt, _) in itertools.pairwise(windows) if nxt > end]
        if windows:
            self._gaps.append((windows[-1][1], NEVER))
        self._outages: list[tuple[int, int]] = []
        self._outage_from = start_ns  # the next outage starts after this time
        self._extend_outages(start_ns)

    def _extend_outages(self, t_ns: int) -> None:
        """Draws outages until one ends after ``t_ns`` (none when the rate is 0)."""
        while self._outage_rate > 0 and (not self._outages or self._outages[-1][1] <= t_ns):
            begin = self._outage_from + int(self._rng.expovariate(self._outage_rate) * NS)
            seconds = self._outage_median * math.exp(1.2 * self._rng.gauss(0.0, 1.0))
            self._outages.append((begin, begin + max(NS, int(seconds * NS))))
            self._outage_from = self._outages[-1][1]

    def _first_ending_after(self, t_ns: int) -> tuple[int, int]:
        candidates = [(NEVER, NEVER)]
        i = bisect.bisect_right(self._gaps, (t_ns, NEVER))
        for gap in self._gaps[max(0, i - 1) : i + 1]:
            if gap[1] > t_ns:
                candidates.append(gap)
        if self._outage_rate > 0:
            self._extend_outages(t_ns)
            j = bisect.bisect_right(self._outages, (t_ns, NEVER))
            candidates += [o for o in self._outages[max(0, j - 1) : j + 1] if o[1] > t_ns]
        return min(candidates)

    def silence_after(self, t_ns: int) -> tuple[int, int]:
        """The first silent interval that ends after ``t_ns`` (it may have begun before it), with
        touching or overlapping ones merged; (NEVER, NEVER) when there is none."""
        start, end = self._first_ending_after(t_ns)
        while end < NEVER:
            nxt_start, nxt_end = self._first_ending_after(end)
            if nxt_start > end:
                break
            end = nxt_end
        return start, end


class _Product:
    """The state of one product's book top, volatility and 24-hour statistics."""

    def __init__(self, product_id: str, seed: int, start_ns: int, market: SyntheticMarket) -> None:
        self.product_id = product_id
        self.m = market
        self.rng = rng = random.Random(f"{seed}:{product_id}")
        level = _LEVELS.get(product_id) or 10 ** (1 + (zlib.crc32(product_id.encode()) % 300) / 100)
        level = max(level, 1.0) * math.exp(rng.gauss(0.0, 0.02))
        self.mid2 = 2 * round(level * 100)  # twice the mid, in cents, so half-cent mids are exact
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
        burst, self.regime_until = market._regime.at(start_ns)
        self.target = self.mult = market.burst_multiplier if burst else 1.0
        self.log_noise = 0.0  # OU log-volatility noise of minutes
        self.noise_ns = self.noise_until = start_ns  # its last update, and when it is next due
        self.log_fast = 0.0  # OU log-volatility noise of seconds
        self.micro = self.mult  # the product's own volatility multiplier (regime, minutes, seconds)
        self.slow_vol, self.slow_rate, self.slow_until = market._slow.at(start_ns)
        self.silent_from, self.silent_until = market._feed.silence_after(start_ns)
        self.clock_gap = 0.0  # mean seconds between clock (not echo) ticks, set by _after
        self.slot_ns = start_ns - int(rng.random() * _CLOCK_NS)  # the clock's last slot (its phase)
        self.quick = False  # this tick is a quick echo of the previous one
        self.t_ns = start_ns
        self.next_ns = self._after(start_ns, False)

    def _qty(self) -> int:
        usd = math.exp(self.rng.gauss(5.5, 1.8))
        return max(1, int(usd / (self.mid2 / 200.0) * SATS))

    def _after(self, now: int, moved: bool) -> int:
        """Exchange time of this product's next tick. Ticks come on a 0.25 s clock (faster when
        busy), a slot skipped more often the quieter the market; a move is often echoed ~50 ms
        later by a tick that does not move; no tick falls inside a silence (it comes after)."""
        rng = self.rng
        # Expected clock ticks per slot; the rest of the rate comes as echoes.
        per_slot = self.m.clock_ticks_per_slot * self.micro**_RATE_ELASTICITY * self.slow_rate
        period = _CLOCK_NS if per_slot <= 1 else int(_CLOCK_NS / per_slot)
        self.clock_gap = period / NS / min(1.0, per_slot)  # mean seconds between clock ticks
        self.quick = rng.random() < (_QUICK_AFTER_MOVE if moved else _QUICK_AFTER_STILL)
        if self.quick:
            next_ns = now + int(_ECHO_NS * (0.6 + 0.4 * rng.expovariate(1.0)))
        else:
            skipped = 0 if per_slot >= 1 else int(math.log(1.0 - rng.random()) / math.log(1.0 - per_slot))
            if rng.random() < 0.004:  # the occasional quiet second or three
                skipped += int(rng.expovariate(1.0 / (7.5 * self.clock_gap)) * NS / period)
            slot_ns = self.slot_ns + period * (1 + skipped)
            self.slot_ns = slot_ns if slot_ns > now else now + 1000
            next_ns = self.slot_ns + int(rng.random() * _JITTER_NS)
        while next_ns >= self.silent_from:
            if next_ns < self.silent_until:
                next_ns = self.slot_ns = self.silent_until + (next_ns - self.silent_from)
            if next_ns >= NEVER:
                return NEVER
            self.silent_from, self.silent_until = self.m._feed.silence_after(next_ns)
        return next_ns

    def step(self) -> TickerEvent:
        """Advances to ``next_ns``, returns the event there and schedules the next one."""
        m, rng = self.m, self.rng
        now = self.next_ns
        dt = (now - self.t_ns) / NS
        self.t_ns = now
        if now >= self.regime_until:
            burst, self.regime_until = m._regime.at(now)
            self.target = m.burst_multiplier if burst else 1.0
        target, mult = self.target, self.mult
        if mult != target:
            # A burst sets in within seconds and fades over minutes, as in the recording.
            ramp = m.burst_rise_seconds if target > mult else m.burst_fade_seconds
            mult = target + (mult - target) * math.exp(-dt / ramp)
            self.mult = mult = target if abs(mult - target) < 1e-4 else mult
        if now >= self.noise_until:  # the minutes term moves little in a second: updated once a second
            decay = math.exp(-(now - self.noise_ns) / NS / m.noise_seconds)
            self.log_noise = self.log_noise * decay + m.noise_std * math.sqrt(1 - decay * decay) * rng.gauss(0.0, 1.0)
            self.noise_ns, self.noise_until = now, now + NS
        decay = math.exp(-dt / m.fast_seconds)
        log_fast = self.log_fast * decay + m.fast_std * math.sqrt(1 - decay * decay) * rng.gauss(0.0, 1.0)
        self.log_fast = log_fast
        if now >= self.slow_until:
            self.slow_vol, self.slow_rate, self.slow_until = m._slow.at(now)
        # The seconds term is normalised so that it adds no variance on average.
        self.micro = micro = mult * math.exp(self.log_noise + log_fast - m.fast_std * m.fast_std)
        ratio = micro * self.slow_vol
        if dt > _SILENCE_SECONDS:
            # The book moved while the feed was silent, with the calm volatility of the slow level.
            self._move(ratio, (m.sigma_per_sqrt_s * self.slow_vol) ** 2 * dt, requote=False)
            moved = True
        else:
            # Moves come on the ~0.25 s clock; a quick echo rarely moves the book.
            move_probability = m.move_probability * ratio**0.25
            if move_probability > 0.9:
                move_probability = 0.9
            moved = rng.random() < (move_probability * _ECHO_MOVES if self.quick else move_probability)
            if moved:
                # Its size follows the current volatility, not the time since the last move (as in
                # the recording): the variance of the mean time between moves.
                seconds = self.clock_gap / (move_probability * _MOVES_PER_CLOCK_MOVE * (1 - _REQUOTE_SHARE))
                self._move(ratio, (m.sigma_per_sqrt_s * ratio) ** 2 * seconds, rng.random() < _REQUOTE_SHARE)
        if rng.random() < m.trade_probability:
            self._trade(dt)
        self.next_ns = self._after(now, moved)
        return TickerEvent(
            now,
            self.product_id,
            self.price_c,
            self.bid_c,
            self.ask_c,
            self.bid_qty,
            self.ask_qty,
            self.volume,
            self.low_24h_c,
            self.high_24h_c,
            self.low_52w_c,
            self.high_52w_c,
            (self.price_c - self.open_c) * 100.0 / self.open_c,
        )

    def _move(self, ratio: float, variance: float, requote: bool) -> None:
        """Moves the book: by a cent or so (a requote, carrying no volatility), or by a log return
        of ``variance`` drawn from a scale mixture of normals (fat tails like the real returns)."""
        rng = self.rng
        if requote:
            self.mid2 = max(4, self.mid2 + rng.choice((-3, -2, -1, 1, 2, 3)))
        else:
            z = rng.gauss(0.0, 1.0) * (2.2 if rng.random() < 0.08 else 0.816)
            self.mid2 = max(4, round(self.mid2 * math.exp(math.sqrt(variance) * z)))
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
        self.volume -= int(self.volume * min(1.0, dt / 86_400))
        price = self.price_c
        if price < self.low_24h_c:
            self.low_24h_c = price
            self.low_52w_c = min(self.low_52w_c, price)
        elif price > self.high_24h_c:
            self.high_24h_c = price
            self.high_52w_c = max(self.high_52w_c, price)


class SyntheticMarket:
    """Ticker events of several products, merged in exchange-time order.

    Args:
        product_ids: Products to simulate; each has its own random stream, so adding a
            product does not change the others (they share the market-wide regime, slow
            layer, daily cycle and silences).
        seed: Seeds everything; the same seed gives the same events.
        start_ns: Exchange time of the start, UTC epoch ns (default 2026-01-01T00:00Z, or the
            first session's start with ``sessions``; not both).
        rate: Ticks per second per product in calm markets at the calibrated level, averaged
            over the day (bursts and higher levels add more: the default market averages ~7).
        sigma_per_sqrt_s: Calm volatility of the log mid per sqrt(second), mean over a day.
        burst_multiplier: Volatility of a burst relative to calm.
        calm_seconds: Mean duration of a calm stretch.
        burst_seconds: Mean duration of a burst.
        level_sd: Standard deviation of the slow log-volatility level (0: no slow layer).
        day_night_ratio: Volatility (and tick rate) at 15:00 UTC over 03:00 UTC (1: no cycle).
        level_steps: ``(seconds after the start, factor)`` pairs in time order: from each
            offset on, volatility is ``factor`` times what it would be (a regime shift).
        outages_per_day: Mean number of feed outages a day of exchange time (0: none).
        outage_median_minutes: Median outage length (log-normal, sd 1.2 in log).
        sessions: Ticks only inside these sessions; the iteration ends after the last one.
    """

    def __init__(
        self,
        product_ids: Sequence[str],
        seed: int,
        start_ns: int | None = None,
        *,
        rate: float = 6.3,
        sigma_per_sqrt_s: float = 0.7e-4,
        burst_multiplier: float = 3.0,
        calm_seconds: float = 600.0,
        burst_seconds: float = 180.0,
        level_sd: float = 0.5,
        day_night_ratio: float = 2.0,
        level_steps: Sequence[tuple[float, float]] = (),
        outages_per_day: float = 0.0,
        outage_median_minutes: float = 10.0,
        sessions: Sessions | None = None,
    ) -> None:
        if not product_ids:
            raise ValueError("SyntheticMarket needs at least one product id")
        if len(set(product_ids)) != len(product_ids):
            raise ValueError(f"duplicate product ids: {list(product_ids)}")
        if rate <= 0 or day_night_ratio <= 0 or level_sd < 0 or outages_per_day < 0 or outage_median_minutes <= 0:
            raise ValueError(
                "rate, day_night_ratio and outage_median_minutes must be positive, level_sd and "
                f"outages_per_day not negative: got {rate}, {day_night_ratio}, {outage_median_minutes}, "
                f"{level_sd}, {outages_per_day}"
            )
        offsets = [seconds for seconds, _ in level_steps]
        if offsets != sorted(offsets) or any(factor <= 0 for _, factor in level_steps):
            raise ValueError(f"level_steps must be in time order with positive factors, got {list(level_steps)}")
        if sessions is not None and start_ns is not None:
            raise ValueError("give start_ns or sessions, not both: a schedule starts at its first session")
        self.product_ids = tuple(product_ids)
        self.seed = seed
        self.sessions = sessions
        if sessions is not None:
            start_ns = sessions.windows()[0][0]
        self.start_ns = DEFAULT_START_NS if start_ns is None else start_ns
        self.clock_ticks_per_slot = rate * (1 - _QUICK_SHARE) * _CLOCK_NS / NS
        self.sigma_per_sqrt_s = sigma_per_sqrt_s
        self.burst_multiplier = burst_multiplier
        self.burst_rise_seconds = 2.0
        self.burst_fade_seconds = 90.0
        self.noise_seconds = 120.0
        self.noise_std = 0.4
        self.fast_seconds = 3.0
        self.fast_std = 0.5
        self.move_probability = 0.40
        self.trade_probability = 0.35
        self.tight_probability = 0.85
        self.wide_spread_bps = 0.16  # mean wide spread ~1.1 USD at BTC's level, more when volatile
        self._regime = _Regime(seed, self.start_ns, calm_seconds, burst_seconds)
        self._slow = _Slow(seed, self.start_ns, level_sd, day_night_ratio, level_steps)
        self._feed = _Feed(seed, self.start_ns, sessions, outages_per_day, outage_median_minutes)

    def __iter__(self) -> Iterator[TickerEvent]:
        """Events in exchange-time order (ties broken by product order); endless, unless a
        session schedule ends."""
        products = [_Product(pid, self.seed, self.start_ns, self) for pid in self.product_ids]
        if len(products) == 1:
            product = products[0]
            while product.next_ns < NEVER:
                yield product.step()
            return
        next_ns = operator.attrgetter("next_ns")
        while True:
            product = min(products, key=next_ns)
            if product.next_ns >= NEVER:
                return
            yield product.step()

    def burst(self, t_ns: int) -> bool:
        """True when the market-wide regime is a burst at ``t_ns`` (for tests and docs)."""
        return self._regime.at(t_ns)[0]

    def level(self, t_ns: int) -> float:
        """The slow layer's volatility multiplier at ``t_ns``: level, daily cycle and steps."""
        return self._slow.at(t_ns)[0]

    def silences(self, until_ns: int) -> list[tuple[int, int]]:
        """The silent intervals [start_ns, end_ns) (outages, gaps between sessions) that begin
        before ``until_ns``; an interval's end is ``NEVER`` after the last session."""
        found: list[tuple[int, int]] = []
        start, end = self._feed.silence_after(self.start_ns)
        while start < until_ns:
            found.append((start, end))
            if end >= NEVER:
                break
            start, end = self._feed.silence_after(end)
        return found


def synthetic_raw_records(
    n: int,
    product_ids: Sequence[str] = ("BTC-USD",),
    seed: int = 7,
    start_seq: int = 0,
    conn_id: str = "synthetic-0",
    start_ns: int | None = None,
    **market: Any,
) -> Iterator[tuple[str, bytes]]:
    """``n`` raw records exactly as the ingestor writes them for a stream of ticker frames
    (fewer when a session schedule ends first).

    ``sequence_num`` counts from 0 (one connection, outages and sessions included), each
    product's first frame is a snapshot, ``ingest_seq`` counts from ``start_seq``, and
    ``recv_ns`` is the exchange time plus a small network delay, strictly increasing.

    Args:
        n: Number of records.
        product_ids: Products, merged in time order.
        seed: Market seed.
        start_seq: ``ingest_seq`` of the first record.
        conn_id: Connection id written into every record.
        start_ns: Exchange time of the start (default: the market's fixed default).
        **market: Other ``SyntheticMarket`` keyword arguments (``sessions``, ``level_steps``, ...).

    Returns:
        An iterator of ``(product_id, record bytes)``; the bytes have no trailing newline.
    """
    delay = random.Random(f"{seed}:delay")
    seen: set[str] = set()
    last_recv = 0
    for seq, event in zip(range(n), SyntheticMarket(product_ids, seed, start_ns, **market), strict=False):
        kind = "update"
        if event.product_id not in seen:
            seen.add(event.product_id)
            kind = "snapshot"
        recv_ns = max(last_recv + 1, event.time_ns + 200_000 + int(delay.expovariate(1 / 800_000)))
        last_recv = recv_ns
        yield event.product_id, raw_record(start_seq + seq, recv_ns, conn_id, ticker_frame(event, seq, kind))
