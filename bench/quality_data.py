"""The data sets of the model benchmarks: real recordings and the synthetic market with a regime shift.

Inputs: NDJSON recordings of Coinbase ticker messages (one exchange message a line, or the
ingestor's raw records ``{"ingest_seq":..,"msg":{..}}``) found in ``REAL_TICKS_DIR`` (default
``../shared/real-ticks``), or the seeded market's parameters. Output: ``features`` rows as the
stream would write them (the kernel, ``featurize_frame`` per product, ready rows only) in the
kernel's order. Recordings are read where they lie and never copied (their README forbids it).
Benchmarks run as scripts and import this module by its name from their own folder.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pandas as pd

from volpipe.coinbase import parse_timestamp
from volpipe.config import PROJECT_ROOT
from volpipe.features import INPUT_COLUMNS, WindowState, featurize_frame
from volpipe.modeling.label import order_rows
from volpipe.modeling.synthetic import synthetic_features

AMOUNTS = ("price", "best_bid", "best_ask", "best_bid_quantity", "best_ask_quantity")


def recordings_dir() -> Path:
    """``REAL_TICKS_DIR`` or ``../shared/real-ticks`` beside the checkout."""
    return Path(os.environ.get("REAL_TICKS_DIR", PROJECT_ROOT.parent / "shared" / "real-ticks"))


def recordings() -> list[Path]:
    """Every ``*.ndjson`` recording present (none on a machine without them)."""
    folder = recordings_dir()
    return sorted(folder.glob("*.ndjson")) if folder.is_dir() else []


def ticks(path: Path) -> pd.DataFrame:
    """The kernel's input rows (``INPUT_COLUMNS``) of every ticker in a recording."""
    rows = []
    with open(path, "rb") as lines:
        for number, line in enumerate(lines):
            if not line.strip():
                continue
            record = orjson.loads(line)
            msg = record.get("msg", record)
            if msg.get("channel") != "ticker":
                continue
            ts_ns = parse_timestamp(msg["timestamp"])
            for event in msg["events"]:
                for idx, ticker in enumerate(event["tickers"]):
                    rows.append(
                        {
                            "product_id": ticker["product_id"],
                            "ingest_seq": record.get("ingest_seq", number),
                            "ticker_idx": idx,
                            "conn_id": record.get("conn_id", "recording"),
                            "sequence_num": msg.get("sequence_num", -1),
                            "exchange_ts_ns": ts_ns,
                            "recv_ns": record.get("recv_ns", ts_ns),
                            "event_type": event.get("type", "update"),
                            **{key: float(ticker[key]) if ticker.get(key) else np.nan for key in AMOUNTS},
                        }
                    )
    return pd.DataFrame(rows, columns=list(INPUT_COLUMNS))


def recording_features(path: Path, window: int = 60) -> pd.DataFrame:
    """The feature rows of a recording (ready rows, every product), in ``ingest_seq`` order."""
    parts = []
    for _, rows in ticks(path).groupby("product_id", sort=True):
        out, _ = featurize_frame(rows, WindowState(), window)
        parts.append(out[out["ready"]].drop(columns="ready"))
    return order_rows(pd.concat(parts, ignore_index=True))


def shifted_market(ticks: int, factor: float, seed: int, at: float = 0.7, **market: Any) -> pd.DataFrame:
    """The synthetic market whose volatility level jumps by ``factor`` after a share ``at`` of the ticks.

    Two stretches of ``SyntheticMarket`` (``sigma_per_sqrt_s`` times 1, then times ``factor``;
    tick rates unchanged) glued in time, the second starting a second after the first ends,
    each featurised from an empty window state (its first W rows per product are not ready).
    With the default ``at`` the shift falls between the training split (60%) and the test
    split (last 20%): the case where a threshold fitted on training rows stops meaning anything.
    """
    sigma = market.pop("sigma_per_sqrt_s", 0.5e-4)
    first = synthetic_features(int(ticks * at), seed=seed, sigma_per_sqrt_s=sigma, **market)
    start_ns = int(first["exchange_ts_ns"].max()) + 1_000_000_000
    second = synthetic_features(
        ticks - int(ticks * at), seed=seed + 1000, start_ns=start_ns, sigma_per_sqrt_s=sigma * factor, **market
    )
    second = second.assign(ingest_seq=second["ingest_seq"] + int(ticks * at))
    return order_rows(pd.concat([first, second], ignore_index=True))
