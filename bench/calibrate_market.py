"""Compare the synthetic market with a recording: tick rate, unchanged mids, spreads, returns.

Inputs: an NDJSON recording, either Coinbase frames (one exchange message a line) or the
ingestor's raw records (``{"ingest_seq":..,"msg":{...}}``), and the synthetic market's seed.
Output: a table on stdout, recording next to synthetic over the same duration and over a
longer synthetic stretch (volatility clustering needs hours to show). docs/exchange.md
quotes its output for the real recording in ../shared/real-ticks.

    .venv/bin/python bench/calibrate_market.py ../shared/real-ticks/coinbase-btcusd-2026-04-05.ndjson
"""

from __future__ import annotations

import argparse
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import orjson

from volpipe.coinbase import parse_timestamp
from volpipe.market import SyntheticMarket

Series = tuple[np.ndarray, np.ndarray, np.ndarray]  # time_ns, best_bid, best_ask


def read_recording(path: Path, product_id: str) -> Series:
    """Ticker times and best bid/ask of ``product_id`` from a recording."""
    times, bids, asks = [], [], []
    with open(path, "rb") as lines:
        for line in lines:
            msg = orjson.loads(line)
            msg = msg.get("msg", msg)
            if msg.get("channel") != "ticker":
                continue
            for event in msg["events"]:
                for ticker in event["tickers"]:
                    if ticker["product_id"] == product_id:
                        times.append(parse_timestamp(msg["timestamp"]))
                        bids.append(float(ticker["best_bid"]))
                        asks.append(float(ticker["best_ask"]))
    return np.array(times, dtype=np.int64), np.array(bids), np.array(asks)


def synthetic(product_id: str, seed: int, seconds: float) -> Series:
    """The synthetic market's ticks of ``product_id`` over ``seconds`` of exchange time."""
    times, bids, asks = [], [], []
    market = SyntheticMarket([product_id], seed)
    end = market.start_ns + int(seconds * 1e9)
    for event in market:
        if event.time_ns > end:
            break
        times.append(event.time_ns)
        bids.append(event.best_bid_c / 100)
        asks.append(event.best_ask_c / 100)
    return np.array(times, dtype=np.int64), np.array(bids), np.array(asks)


def statistics(series: Series) -> dict[str, float]:
    """The calibration statistics of one tick series."""
    t, bid, ask = series
    seconds = (t[-1] - t[0]) / 1e9
    gaps = np.diff(t) / 1e9
    mid = (bid + ask) / 2
    ret = np.diff(np.log(mid))
    moved = ret[ret != 0]
    spread = np.round(ask - bid, 2)
    minute = (t[1:] - t[0]) // 60_000_000_000
    minutes = int(minute.max()) + 1
    counts = np.bincount(minute, minlength=minutes)
    rv = np.sqrt(np.bincount(minute, weights=ret**2, minlength=minutes)) * 1e4
    full = counts[:-1], rv[:-1]  # the last minute is partial
    stats = {
        "ticks": len(t),
        "duration_s": seconds,
        "ticks_per_s": len(t) / seconds,
        "gap_p10_s": np.percentile(gaps, 10),
        "gap_p50_s": np.percentile(gaps, 50),
        "gap_p90_s": np.percentile(gaps, 90),
        "gap_max_s": gaps.max(),
        "mid_unchanged_share": float(np.mean(ret == 0)),
        "spread_one_tick_share": float(np.mean(spread <= 0.01)),
        "spread_p90": np.percentile(spread, 90),
        "spread_p99": np.percentile(spread, 99),
        "spread_mean": spread.mean(),
        "ret_std_bps": ret.std() * 1e4,
        "ret_kurtosis": float(((ret - ret.mean()) ** 4).mean() / ret.var() ** 2),
        "moved_abs_ret_p50_bps": np.percentile(np.abs(moved), 50) * 1e4,
        "moved_abs_ret_p99_bps": np.percentile(np.abs(moved), 99) * 1e4,
        "rv_1m_p10_bps": np.percentile(full[1], 10),
        "rv_1m_p50_bps": np.percentile(full[1], 50),
        "rv_1m_p90_bps": np.percentile(full[1], 90),
        "rv_1m_max_over_median": full[1].max() / np.median(full[1]),
        "corr_ticks_rv_1m": float(np.corrcoef(*full)[0, 1]),
        "rv_1m_autocorr_lag1": float(np.corrcoef(full[1][:-1], full[1][1:])[0, 1]),
    }
    return {key: float(value) for key, value in stats.items()}


def table(columns: dict[str, dict[str, float]]) -> Iterable[str]:
    """A Markdown table: one row per statistic, one column per series."""
    names = list(columns)
    yield "| statistic | " + " | ".join(names) + " |"
    yield "|---|" + "---:|" * len(names)
    for key in next(iter(columns.values())):
        yield f"| {key} | " + " | ".join(f"{columns[name][key]:.4g}" for name in names) + " |"


def main(argv: list[str] | None = None) -> int:
    """Prints the calibration table for a recording."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("recording", type=Path, help="NDJSON of Coinbase frames or raw records")
    parser.add_argument("--product", default="BTC-USD", help="product to compare (default BTC-USD)")
    parser.add_argument("--seed", type=int, default=7, help="synthetic market seed (default 7)")
    parser.add_argument("--long-hours", type=float, default=6.0, help="length of the long synthetic run")
    args = parser.parse_args(argv)
    real = read_recording(args.recording, args.product)
    if len(real[0]) < 100:
        parser.error(f"{args.recording} has {len(real[0])} {args.product} tickers; need at least 100")
    seconds = (real[0][-1] - real[0][0]) / 1e9
    columns = {
        "recording": statistics(real),
        f"synthetic {seconds / 60:.0f} min": statistics(synthetic(args.product, args.seed, seconds)),
        f"synthetic {args.long_hours:g} h": statistics(synthetic(args.product, args.seed, args.long_hours * 3600)),
    }
    print("\n".join(table(columns)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
