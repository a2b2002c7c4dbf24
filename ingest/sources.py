"""What the local exchange serves: the synthetic market, or a replayed recording.

Inputs: product ids and a seed (synthetic), or an NDJSON file of Coinbase frames or of the
ingestor's raw records (replay). Output: ``Tick`` values in exchange-time order, each the
ticker objects of one frame, already serialised, so the exchange only adds the per-
connection envelope (timestamp, sequence_num, snapshot/update).
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import orjson

from volpipe.coinbase import parse_timestamp, ticker_object
from volpipe.market import SyntheticMarket


class Tick(NamedTuple):
    """One ticker frame's content.

    Attributes:
        time_ns: Exchange time of the frame (recorded or simulated), for pacing.
        product_ids: Products of its tickers (first one decides the subscribers).
        tickers: The ticker objects, comma-separated, as they go inside ``"tickers":[...]``.
        timestamp: The recorded ``timestamp`` text, exactly (replay only; None otherwise).
    """

    time_ns: int
    product_ids: tuple[str, ...]
    tickers: bytes
    timestamp: str | None = None


def synthetic_ticks(
    product_ids: Sequence[str], seed: int, start_ns: int | None = None, rate: float | None = None, **market: Any
) -> Iterator[Tick]:
    """Ticks of the synthetic market (see ``volpipe.market``): endless, unless a session schedule
    ends. ``rate`` is over all products; ``market`` holds other ``SyntheticMarket`` keyword
    arguments (market defaults when absent).

    Raises:
        ValueError: A market argument is invalid (raised here, before any tick is served).
    """
    options: dict[str, Any] = {} if rate is None else {"rate": rate / len(product_ids)}
    events = SyntheticMarket(product_ids, seed, start_ns, **options, **market)
    return (Tick(event.time_ns, (event.product_id,), ticker_object(event)) for event in events)


def load_recording(path: Path) -> list[Tick]:
    """Every ticker frame of a recording, in file order.

    Reads Coinbase frames (one exchange message a line) and the ingestor's raw records
    (``{"ingest_seq":..,"msg":{...}}``); other lines (heartbeats, acks, dead letters,
    blank lines) are skipped. Ticker objects are re-serialised compactly; their values are
    strings, so their text is unchanged.

    Raises:
        ValueError: A line is not JSON of either kind, or the file holds no ticker.
    """
    ticks = list(_read(path))
    if not ticks:
        raise ValueError(f"no ticker messages in {path}")
    return ticks


def replay_ticks(ticks: list[Tick], loop: bool = False) -> Iterator[Tick]:
    """The recording's ticks; with ``loop``, again and again, shifted forward in time.

    Laps after the first have no recorded ``timestamp`` text: their time is the shifted one.
    """
    if not loop:
        yield from ticks
        return
    span = ticks[-1].time_ns - ticks[0].time_ns + 1_000_000
    for lap in itertools.count():
        shift = lap * span
        for tick in ticks:
            yield tick if lap == 0 else tick._replace(time_ns=tick.time_ns + shift, timestamp=None)


def _read(path: Path) -> Iterator[Tick]:
    with open(path, "rb") as lines:
        for number, line in enumerate(lines, 1):
            if not line.strip():
                continue
            try:
                msg = orjson.loads(line)
                msg = msg.get("msg", msg)
                if msg.get("channel") != "ticker":
                    continue
                tickers = [t for event in msg["events"] for t in event["tickers"]]
                yield Tick(
                    parse_timestamp(msg["timestamp"]),
                    tuple(t["product_id"] for t in tickers),
                    b",".join(orjson.dumps(t) for t in tickers),
                    msg["timestamp"],
                )
            except (orjson.JSONDecodeError, KeyError, TypeError, ValueError, AttributeError) as exc:
                raise ValueError(f"{path}:{number}: not a ticker frame or raw record: {exc}") from exc
