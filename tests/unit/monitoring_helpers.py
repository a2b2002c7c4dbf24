"""Synthetic feature and prediction rows for the monitoring tests (seeded, shaped like the Delta tables)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

T0_NS = 1_790_000_000 * 1_000_000_000  # 2026-09-21, an arbitrary UTC instant
TICK_NS = 100_000_000  # 10 ticks a second


def feature_rows(n: int, seed: int, *, start_ns: int = T0_NS, vol: float = 1.0, imbalance: float = 0.0,
                 products: tuple[str, ...] = ("BTC-USD", "ETH-USD")) -> pd.DataFrame:
    """``n`` rows with every ``features`` column; ``vol`` scales the volatility regime, ``imbalance``
    shifts the book."""
    rng = np.random.default_rng(seed)
    sigma = np.exp(rng.normal(np.log(2e-4 * vol), 0.3, n))
    returns = rng.standard_t(4, n) * sigma / np.sqrt(2)
    return pd.DataFrame({
        "product_id": np.array(products)[np.arange(n) % len(products)],
        "ingest_seq": np.arange(n, dtype=np.int64) + seed * 10_000_000,
        "ticker_idx": np.zeros(n, np.int64),
        "conn_id": "c1",
        "sequence_num": np.arange(n, dtype=np.int64),
        "exchange_ts_ns": start_ns + np.arange(n, dtype=np.int64) * TICK_NS,
        "recv_ns": start_ns + np.arange(n, dtype=np.int64) * TICK_NS + 5_000_000,
        "produced_ns": start_ns + np.arange(n, dtype=np.int64) * TICK_NS + 9_000_000,
        "midprice": 30_000 * np.exp(np.cumsum(returns)),
        "mid_fallback": rng.uniform(size=n) < 0.01,
        "spread": 0.01 * rng.integers(1, 4, n),
        "spread_bps": rng.gamma(2.0, 0.5, n),
        "midprice_return": returns,
        "rolling_vol": sigma,
        "trade_intensity": rng.gamma(5.0, 2.0, n),
        "vol_300t": sigma * np.exp(rng.normal(0, 0.1, n)),
        "ret_mean_30t": rng.normal(0, 1, n) * sigma / 5,
        "abs_ret_mean_60t": sigma * 0.8 * np.exp(rng.normal(0, 0.05, n)),
        "imbalance_1t": np.clip(rng.normal(imbalance, 0.4, n), -1, 1),
    })


def prediction_rows(features: pd.DataFrame, seed: int, *, shift: float = 0.0, model_name: str = "m",
                    model_version: str = "1") -> pd.DataFrame:
    """Scored rows for ``features`` in the ``predictions`` contract; ``shift`` moves the scores up."""
    rng = np.random.default_rng(seed)
    probability = np.clip(rng.beta(1.5, 12.0, len(features)) + shift, 0, 1)
    return pd.DataFrame({
        "product_id": features["product_id"], "ingest_seq": features["ingest_seq"],
        "ticker_idx": features["ticker_idx"], "exchange_ts_ns": features["exchange_ts_ns"],
        "probability": probability, "predicted_label": (probability >= 0.2).astype(np.int64),
        "threshold": 0.2, "model_name": model_name, "model_version": model_version, "run_id": "r",
        "label_mode": "forward",
    })


def write_table(path: Path, frame: pd.DataFrame) -> None:
    """Appends ``frame`` to the Delta table at ``path`` (delta-rs) laid out as the pipeline's tables
    (``exchange_ts``, ``date`` partitions: readers must read past them); created when missing."""
    import pyarrow as pa
    from deltalake import write_deltalake

    from volpipe.tables import FEATURES, PARTITION_COLUMN, arrow_layout_columns

    table = pa.Table.from_pandas(frame, preserve_index=False)
    for name, column in arrow_layout_columns(FEATURES, frame["exchange_ts_ns"].to_numpy()).items():
        table = table.append_column(name, column)
    write_deltalake(str(path), table, mode="append", partition_by=[PARTITION_COLUMN])
