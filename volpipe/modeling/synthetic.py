"""Synthetic ``features`` rows for tests and benchmarks: the seeded market through the kernel.

Inputs: a row count, products, a seed and the market's parameters (``volpipe.market``), or
ticker events (a recording's). Output: a DataFrame with exactly the ``features`` table columns
(``FEATURE_TABLE_COLUMNS``), computed by the one kernel (``featurize_frame``) as the stream would, and a helper that
writes it to Delta with delta-rs. No Spark, no services.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd

from volpipe.coinbase import TickerEvent
from volpipe.features import WindowState, featurize_frame
from volpipe.market import SyntheticMarket
from volpipe.tables import FEATURE_TABLE_COLUMNS, FEATURES, PARTITION_COLUMN, arrow_layout_columns


def synthetic_features(
    n_ticks: int,
    product_ids: Sequence[str] = ("BTC-USD", "ETH-USD"),
    seed: int = 7,
    window: int = 60,
    **market: Any,
) -> pd.DataFrame:
    """Feature rows of ``n_ticks`` synthetic ticks (fewer rows: each product's first W have none,
    and a session schedule may end before ``n_ticks``).

    Args:
        n_ticks: Ticks drawn from the market, all products together.
        product_ids: Products of the market.
        seed: Market seed; the same arguments give the same rows.
        window: W of the kernel.
        **market: Other ``SyntheticMarket`` keyword arguments (``start_ns``, ``sessions``,
            ``level_steps``, ``burst_multiplier``, ...).

    Returns:
        ``FEATURE_TABLE_COLUMNS`` rows; ``ingest_seq`` counts ticks across products from 0.
    """
    return event_features(list(itertools.islice(SyntheticMarket(product_ids, seed, **market), n_ticks)), window)


def event_features(events: Sequence[TickerEvent], window: int = 60) -> pd.DataFrame:
    """Feature rows of ticker events in time order, through the kernel as the stream computes them
    (one connection; ``ingest_seq`` and ``sequence_num`` count the events from 0)."""
    n = len(events)
    ticks = pd.DataFrame(
        {
            "product_id": [e.product_id for e in events],
            "ingest_seq": np.arange(n, dtype=np.int64),
            "ticker_idx": np.zeros(n, np.int64),
            "conn_id": "synthetic-0",
            "sequence_num": np.arange(n, dtype=np.int64),
            "exchange_ts_ns": np.fromiter((e.time_ns for e in events), np.int64, n),
            "event_type": "update",
            "price": np.fromiter((e.price_c for e in events), np.float64, n) / 100,
            "best_bid": np.fromiter((e.best_bid_c for e in events), np.float64, n) / 100,
            "best_ask": np.fromiter((e.best_ask_c for e in events), np.float64, n) / 100,
            "best_bid_quantity": np.fromiter((e.best_bid_qty for e in events), np.float64, n) / 1e8,
            "best_ask_quantity": np.fromiter((e.best_ask_qty for e in events), np.float64, n) / 1e8,
        }
    )
    ticks["recv_ns"] = ticks["exchange_ts_ns"] + 500_000
    parts = []
    for _, rows in ticks.groupby("product_id", sort=False):
        out, _ = featurize_frame(rows, WindowState(), window)
        parts.append(out[out["ready"]])
    features = pd.concat(parts, ignore_index=True).assign(produced_ns=np.int64(0))
    return features.sort_values("ingest_seq", kind="stable").reset_index(drop=True)[list(FEATURE_TABLE_COLUMNS)]


def write_features(path: Path, frame: pd.DataFrame, mode: Literal["append", "overwrite"] = "append") -> None:
    """Writes feature rows to the Delta table at ``path`` with delta-rs, laid out as the stream's
    (``date`` partitions, ``exchange_ts``); created when absent.

    delta-rs refuses properties outside ``delta.*`` when it creates a table, so a table made here
    records no kernel parameters (the stream's and the replay's, made by Spark, do).
    """
    import pyarrow as pa
    from deltalake import write_deltalake

    table = pa.Table.from_pandas(frame, preserve_index=False)
    for name, column in arrow_layout_columns(FEATURES, frame["exchange_ts_ns"].to_numpy()).items():
        table = table.append_column(name, column)
    write_deltalake(str(path), table, mode=mode, partition_by=[PARTITION_COLUMN])
