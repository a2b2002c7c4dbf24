"""Compare the synthetic market with a recording, side by side, and show its hours-scale behaviour.

Inputs: an NDJSON recording, either Coinbase frames (one exchange message a line) or the
ingestor's raw records (``{"ingest_seq":..,"msg":{...}}``), and the synthetic market's seeds.
Output, on stdout:

1. The recording next to synthetic stretches of the same length starting at the same UTC
   time (so the daily cycle matches): one seed, and the range over several seeds. Tick
   rate and gaps, unchanged mids, spreads, return tails, volatility clustering (|return|
   autocorrelation by ticks and by seconds, one-minute realised volatility), and how
   predictable "volatility persists" is: PR-AUC of ``rolling_vol`` as a score for the
   forward label (H = 60 ticks, tau = the stretch's 95th percentile) against its positive rate.
2. A continuous multi-day synthetic run: what a 20-minute recording cannot show (hourly
   clustering, level shifts between 3-hour stretches, night against afternoon), the
   figures docs/exchange.md states as assumptions.

    .venv/bin/python bench/calibrate_market.py ../shared/real-ticks/coinbase-btcusd-2026-04-05.ndjson
"""

from __future__ import annotations

import argparse
import itertools
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
import orjson

from volpipe.coinbase import NS, TickerEvent, parse_timestamp
from volpipe.market import SyntheticMarket
from volpipe.modeling.label import forward_vol
from volpipe.modeling.models import pr_auc
from volpipe.modeling.synthetic import event_features

TICK_LAGS = (1, 2, 10, 60, 300)
SECOND_LAGS = (1, 5, 30, 120)
MINUTE_LAGS = (1, 2, 5)
HORIZON, QUANTILE = 60, 0.95


def read_recording(path: Path, product_id: str) -> list[TickerEvent]:
    """Ticker events of ``product_id`` in a recording (prices in cents; sizes, 24 h figures unused)."""
    events = []
    with open(path, "rb") as lines:
        for line in lines:
            msg = orjson.loads(line)
            msg = msg.get("msg", msg)
            if msg.get("channel") != "ticker":
                continue
            t_ns = parse_timestamp(msg["timestamp"])
            for event in msg["events"]:
                for ticker in event["tickers"]:
                    if ticker["product_id"] == product_id:
                        price, bid, ask = (round(float(ticker[key]) * 100) for key in ("price", "best_bid", "best_ask"))
                        events.append(TickerEvent(t_ns, product_id, price, bid, ask, 1, 1, 0, 0, 0, 0, 0, 0.0))
    return events


def synthetic(product_id: str, seed: int, start_ns: int, seconds: float) -> list[TickerEvent]:
    """The synthetic market's ticks of ``product_id`` over ``seconds`` of exchange time from ``start_ns``."""
    end = start_ns + int(seconds * NS)
    return list(itertools.takewhile(lambda e: e.time_ns <= end, SyntheticMarket([product_id], seed, start_ns)))


def _acf(x: np.ndarray, lag: int) -> float:
    return float(np.corrcoef(x[:-lag], x[lag:])[0, 1]) if len(x) > lag + 2 else float("nan")


def statistics(events: Sequence[TickerEvent]) -> dict[str, float]:
    """The calibration statistics of one product's tick series."""
    t = np.array([e.time_ns for e in events], np.int64)
    bid = np.array([e.best_bid_c for e in events]) / 100
    ask = np.array([e.best_ask_c for e in events]) / 100
    seconds = (t[-1] - t[0]) / NS
    gaps = np.diff(t) / NS
    ret = np.diff(np.log((bid + ask) / 2))
    moved = ret[ret != 0]
    spread = np.round(ask - bid, 2)
    second = (t[1:] - t[0]) // NS
    ret_1s = np.abs(np.bincount(second, weights=ret))
    minute = second // 60
    counts = np.bincount(minute)[:-1]  # the last minute is partial
    rv = np.sqrt(np.bincount(minute, weights=ret**2))[:-1] * 1e4
    rows = event_features(events)
    fvol = forward_vol(rows, HORIZON)
    labelled = np.isfinite(fvol)
    y = (fvol[labelled] >= np.quantile(fvol[labelled], QUANTILE)).astype(int)
    persistence = pr_auc(y, rows["rolling_vol"].to_numpy(np.float64)[labelled])
    stats = {
        "ticks": len(t),
        "ticks_per_s": len(t) / seconds,
        "gap_p10_s": np.percentile(gaps, 10),
        "gap_p50_s": np.percentile(gaps, 50),
        "gap_p90_s": np.percentile(gaps, 90),
        "gap_max_s": gaps.max(),
        "mid_unchanged_share": np.mean(ret == 0),
        "spread_one_tick_share": np.mean(spread <= 0.01),
        "spread_p90": np.percentile(spread, 90),
        "spread_p99": np.percentile(spread, 99),
        "spread_mean": spread.mean(),
        "ret_std_bps": ret.std() * 1e4,
        "ret_kurtosis": ((ret - ret.mean()) ** 4).mean() / ret.var() ** 2,
        "moved_abs_ret_p50_bps": np.percentile(np.abs(moved), 50) * 1e4,
        "moved_abs_ret_p99_bps": np.percentile(np.abs(moved), 99) * 1e4,
        **{f"abs_ret_acf_{lag}t": _acf(np.abs(ret), lag) for lag in TICK_LAGS},
        **{f"abs_ret_1s_acf_{lag}s": _acf(ret_1s, lag) for lag in SECOND_LAGS},
        "rv_1m_p50_bps": np.median(rv),
        "rv_1m_p90_over_p10": np.percentile(rv, 90) / np.percentile(rv, 10),
        "corr_ticks_rv_1m": np.corrcoef(counts, rv)[0, 1],
        **{f"rv_1m_acf_{lag}m": _acf(rv, lag) for lag in MINUTE_LAGS},
        "fwd_label_positive_rate": y.mean(),
        "persistence_pr_auc": persistence,
        "persistence_lift": persistence / y.mean(),
    }
    return {key: float(value) for key, value in stats.items()}


def hours_scale(events: Sequence[TickerEvent]) -> dict[str, float]:
    """What only a multi-day run shows: hourly clustering, 3-hour level shifts, night and afternoon."""
    t = np.array([e.time_ns for e in events], np.int64)
    mid = np.array([e.best_bid_c + e.best_ask_c for e in events], np.float64)
    ret = np.diff(np.log(mid))
    hour = (t[1:] - t[0]) // (3600 * NS)
    rv_1h = np.sqrt(np.bincount(hour, weights=ret**2))[:-1]
    ticks_1h = np.bincount(hour)[:-1]
    block = 3 * 3600 * NS
    rv_3h = np.sqrt(np.bincount((t[1:] - t[0]) // block, weights=ret**2))[:-1]
    shift = np.abs(np.diff(np.log(rv_3h)))
    # Each day's 14:00-16:00 UTC against the same day's 02:00-04:00 (whole days only).
    utc_day, utc_hour = t[1:] // (86_400 * NS), t[1:] % (86_400 * NS) // (3600 * NS)
    days = np.arange(utc_day[0] + 1, utc_day[-1])
    afternoon = [(utc_day == d) & (utc_hour >= 14) & (utc_hour < 16) for d in days]
    night = [(utc_day == d) & (utc_hour >= 2) & (utc_hour < 4) for d in days]
    rv_ratio = [np.sqrt(np.sum(ret[a] ** 2) / np.sum(ret[n] ** 2)) for a, n in zip(afternoon, night, strict=True)]
    tick_ratio = [a.sum() / n.sum() for a, n in zip(afternoon, night, strict=True)]
    return {
        "days": (t[-1] - t[0]) / NS / 86_400,
        "ticks_per_s": len(t) / ((t[-1] - t[0]) / NS),
        **{f"rv_1h_acf_{lag}h": _acf(rv_1h, lag) for lag in (1, 3, 24)},
        "rv_1h_max_over_min": rv_1h.max() / rv_1h.min(),
        "rv_3h_next_over_previous_median": float(np.exp(np.median(shift))),
        "rv_3h_next_within_0.5x_2x_share": float(np.mean(shift <= np.log(2))),
        "rv_afternoon_over_night_daily_median": float(np.median(rv_ratio)),
        "ticks_afternoon_over_night_daily_median": float(np.median(tick_ratio)),
        "ticks_1h_p90_over_p10": float(np.percentile(ticks_1h, 90) / np.percentile(ticks_1h, 10)),
    }


def table(columns: dict[str, dict[str, str]]) -> Iterable[str]:
    """A Markdown table: one row per statistic, one column per series."""
    names = list(columns)
    yield "| statistic | " + " | ".join(names) + " |"
    yield "|---|" + "---:|" * len(names)
    for key in next(iter(columns.values())):
        yield f"| {key} | " + " | ".join(columns[name][key] for name in names) + " |"


def _cells(stats: dict[str, float]) -> dict[str, str]:
    return {key: f"{value:.3g}" for key, value in stats.items()}


def _ranges(runs: list[dict[str, float]]) -> dict[str, str]:
    """Median [min .. max] of each statistic over runs."""
    cells = {}
    for key in runs[0]:
        values = [run[key] for run in runs]
        cells[key] = f"{np.median(values):.3g} [{min(values):.3g} .. {max(values):.3g}]"
    return cells


def main(argv: list[str] | None = None) -> int:
    """Prints the calibration tables for a recording."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("recording", type=Path, help="NDJSON of Coinbase frames or raw records")
    parser.add_argument("--product", default="BTC-USD", help="product to compare (default BTC-USD)")
    parser.add_argument("--seed", type=int, default=7, help="the single synthetic seed shown (default 7)")
    parser.add_argument("--seeds", default="1-20", help="seeds of the range column, FIRST-LAST (default 1-20)")
    parser.add_argument("--long-days", type=float, default=3.0, help="length of the continuous run, days (default 3)")
    args = parser.parse_args(argv)
    real = read_recording(args.recording, args.product)
    if len(real) < 500:
        parser.error(f"{args.recording} has {len(real)} {args.product} tickers; need at least 500")
    first, last = (int(x) for x in args.seeds.split("-"))
    start, seconds = real[0].time_ns, (real[-1].time_ns - real[0].time_ns) / NS
    runs = [statistics(synthetic(args.product, seed, start, seconds)) for seed in range(first, last + 1)]
    columns = {
        "recording": _cells(statistics(real)),
        f"synthetic seed {args.seed}": _cells(statistics(synthetic(args.product, args.seed, start, seconds))),
        f"synthetic seeds {first}-{last}: median [min .. max]": _ranges(runs),
    }
    print(f"{args.product}, {seconds / 60:.0f} minutes from {real[0].time_ns} ns (the recording's start)\n")
    print("\n".join(table(columns)))
    long_run = hours_scale(synthetic(args.product, args.seed, start, args.long_days * 86_400))
    print(f"\nsynthetic seed {args.seed}, {args.long_days:g} days continuous from the same start (assumptions)\n")
    print("\n".join(table({"synthetic": _cells(long_run)})))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
