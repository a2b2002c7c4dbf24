"""``python -m ingest.exchange``: run the local exchange until SIGINT/SIGTERM (see ``server``)."""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import logging
import signal
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import orjson

from ingest.exchange.server import LocalExchange
from ingest.sources import Tick, load_recording, replay_ticks, synthetic_ticks
from volpipe.config import parse_products
from volpipe.dates import day_of_ns
from volpipe.logs import configure_logging
from volpipe.market import Sessions

log = logging.getLogger("ingest.exchange")
# Flags passed to the synthetic market under their own names (``SyntheticMarket`` arguments).
MARKET_FLAGS = (
    "calm_seconds",
    "burst_seconds",
    "burst_multiplier",
    "level_sd",
    "day_night_ratio",
    "level_steps",
    "outages_per_day",
)


def build_parser() -> argparse.ArgumentParser:
    """The ``python -m ingest.exchange`` command line."""
    parser = argparse.ArgumentParser(
        prog="python -m ingest.exchange",
        description="A local WebSocket exchange speaking Coinbase Advanced Trade's market-data protocol "
        "(synthetic market or replay). Serves until SIGINT/SIGTERM.",
        epilog="Faults: curl 'http://HOST:PORT/control/stall?seconds=30' (drop, stall?seconds=, "
        "malformed?kind=json|structure|price|product, skip?n=, repeat?n=, close1000, close?code=, "
        "error?message=, stats).",
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8765, help="port; 0 picks a free one (default 8765)")
    parser.add_argument("--source", choices=("synthetic", "replay"), default="synthetic", help="what to serve")
    parser.add_argument("--replay-file", type=Path, help="NDJSON of Coinbase frames or raw records (--source replay)")
    parser.add_argument("--loop", action="store_true", help="replay the file again and again")
    parser.add_argument(
        "--keep-timestamps",
        action="store_true",
        help="stamp ticker frames with their recorded (replay) or simulated time, not the send time",
    )
    parser.add_argument("--speed", type=float, default=1.0, help="1 = real time, N = N times faster, 0 = full speed")
    parser.add_argument(
        "--products",
        type=parse_products,
        default=("BTC-USD",),
        help="comma-separated products (synthetic; default BTC-USD)",
    )
    parser.add_argument("--seed", type=int, default=7, help="synthetic market seed (default 7)")
    parser.add_argument(
        "--start",
        type=_utc_time,
        help="synthetic: time of the market's first tick, ISO-8601 "
        "(e.g. 2026-01-05T14:00:00Z; default now); with --keep-timestamps the frames carry it",
    )
    parser.add_argument("--rate", type=float, help="synthetic ticks per second at 1x, all products (default ~4.4 each)")
    parser.add_argument("--max-ticks", type=int, help="stop serving ticks after this many")
    parser.add_argument("--calm-seconds", type=float, help="synthetic: mean simulated length of a calm stretch (600)")
    parser.add_argument("--burst-seconds", type=float, help="synthetic: mean simulated length of a burst (180)")
    parser.add_argument("--burst-multiplier", type=float, help="synthetic: volatility of a burst over calm (3)")
    parser.add_argument(
        "--level-sd",
        type=float,
        help="synthetic: sd of the slow log-volatility level that wanders over hours (0.5; 0 = off)",
    )
    parser.add_argument(
        "--day-night-ratio",
        type=float,
        help="synthetic: volatility and tick rate at 15:00 UTC over 03:00 UTC (2; 1 = no daily cycle)",
    )
    parser.add_argument(
        "--level-step",
        dest="level_steps",
        type=_level_step,
        action="append",
        metavar="SECONDS:FACTOR",
        help="synthetic: from SECONDS of simulated time after the start, volatility x FACTOR "
        "(a regime shift); repeatable, in time order",
    )
    parser.add_argument(
        "--outages-per-day",
        type=float,
        help="synthetic: mean feed outages per simulated day (0 = none, the default: at --speed 1 "
        "an outage silences the tape for real minutes or hours)",
    )
    parser.add_argument("--outage-minutes", type=float, help="synthetic: median outage length in minutes (10)")
    parser.add_argument(
        "--history-days",
        type=int,
        help="synthetic: serve a history of N UTC days before --history-before, in sessions, then "
        "stop; implies --keep-timestamps (use with --speed 0)",
    )
    parser.add_argument(
        "--history-before",
        type=dt.date.fromisoformat,
        metavar="YYYY-MM-DD",
        help="synthetic: the day after the history (default: today, UTC)",
    )
    parser.add_argument(
        "--sessions-per-day",
        type=int,
        default=4,
        help="synthetic: sessions a day in a history, centred at (i+0.5)*24/N h UTC (4)",
    )
    parser.add_argument("--session-minutes", type=float, default=15.0, help="synthetic: minutes a session (15)")
    parser.add_argument("--idle-close-seconds", type=float, default=75.0, help="close without heartbeats (75)")
    parser.add_argument("--subscribe-deadline", type=float, default=5.0, help="seconds to subscribe (5)")
    return parser


def _utc_time(text: str) -> dt.datetime:
    """An ISO-8601 time to whole seconds; without an offset it is UTC."""
    moment = dt.datetime.fromisoformat(text)
    return (moment if moment.tzinfo else moment.replace(tzinfo=dt.UTC)).replace(microsecond=0)


def main(argv: list[str] | None = None) -> int:
    """Runs the local exchange until SIGINT/SIGTERM."""
    parser = build_parser()
    args = parser.parse_args(argv)
    configure_logging()
    products = list(args.products)
    if args.source == "replay":
        if args.replay_file is None:
            parser.error("--source replay needs --replay-file")
        try:
            recording = load_recording(args.replay_file)
        except (OSError, ValueError) as exc:
            parser.error(str(exc))
        products = sorted({p for tick in recording for p in tick.product_ids})
        ticks = replay_ticks(recording, loop=args.loop)
    else:
        try:
            start_ns, market = synthetic_market(args, time.time_ns())
            ticks = synthetic_ticks(products, args.seed, start_ns, args.rate, **market)
        except ValueError as exc:
            parser.error(str(exc))
        args.keep_timestamps = args.keep_timestamps or "sessions" in market  # a history keeps its dates
    asyncio.run(_serve(args, ticks, products))
    return 0


def synthetic_market(args: argparse.Namespace, now_ns: int) -> tuple[int | None, dict[str, Any]]:
    """The synthetic market's start and ``SyntheticMarket`` keyword arguments from the command line:
    live from ``--start`` or ``now_ns`` with the market's defaults (no outage unless asked), or, with
    ``--history-days``, the sessions of the days before ``--history-before`` (today by default).

    Raises:
        ValueError: The history's schedule is invalid.
    """
    market = {name: getattr(args, name) for name in MARKET_FLAGS if getattr(args, name) is not None}
    if args.outage_minutes is not None:
        market["outage_median_minutes"] = args.outage_minutes
    if args.history_days is None:
        return (now_ns if args.start is None else int(args.start.timestamp()) * 1_000_000_000), market
    before = args.history_before or day_of_ns(now_ns)
    market["sessions"] = Sessions(before, args.history_days, args.sessions_per_day, args.session_minutes)
    return None, market


def _level_step(text: str) -> tuple[float, float]:
    seconds, _, factor = text.partition(":")
    try:
        return float(seconds), float(factor)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected SECONDS:FACTOR, e.g. 3600:2, got {text!r}") from None


async def _serve(args: argparse.Namespace, ticks: Iterator[Tick], products: Sequence[str]) -> None:
    exchange = LocalExchange(
        ticks,
        products,
        speed=args.speed,
        host=args.host,
        port=args.port,
        max_ticks=args.max_ticks,
        idle_close_seconds=args.idle_close_seconds,
        subscribe_deadline=args.subscribe_deadline,
        keep_timestamps=args.keep_timestamps,
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    port = await exchange.start()
    print(f"listening ws://{args.host}:{port}", flush=True)
    await stop.wait()
    await exchange.stop()
    log.info("exchange stopped %s", orjson.dumps(exchange.stats()).decode())


if __name__ == "__main__":
    sys.exit(main())
