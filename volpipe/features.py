"""The feature kernel: one pure definition of every feature, shared by stream, replay and training.

Inputs: one product's ticker rows (already parsed: prices as floats, timestamps as integer
nanoseconds) and the product's ``WindowState``. Outputs: the accepted rows with their
features, and the new state. No Spark here, only NumPy (and pandas at the frame boundary).

Bit-exactness is the point. Every window statistic is computed element by element with an
explicit, fixed summation order (oldest return first), never with NumPy reductions whose
order depends on array shape. So a row's features are the same bits whether it is computed
in a micro-batch of one row, of a million rows, or in a replay of the whole history.
docs/features.md states the formulas, the ordering and dedupe rules, and this argument.
"""

from __future__ import annotations

import dataclasses
import itertools

import numpy as np
import pandas as pd

# Bumped whenever any formula, ordering or dedupe rule changes: tables record it (volpipe.tables).
KERNEL_VERSION = 1
# Extra features with a fixed window in their name: (column, statistic, window in returns).
EXTRA_WINDOWS = (("vol_300t", "std", 300), ("ret_mean_30t", "mean", 30), ("abs_ret_mean_60t", "abs_mean", 60))

INPUT_COLUMNS = (
    "product_id",
    "ingest_seq",
    "ticker_idx",
    "conn_id",
    "sequence_num",
    "exchange_ts_ns",
    "recv_ns",
    "event_type",
    "price",
    "best_bid",
    "best_ask",
    "best_bid_quantity",
    "best_ask_quantity",
)
FEATURE_COLUMNS = (
    "midprice",
    "mid_fallback",
    "spread",
    "spread_bps",
    "midprice_return",
    "rolling_vol",
    "trade_intensity",
    *(name for name, _, _ in EXTRA_WINDOWS),
    "imbalance_1t",
)


@dataclasses.dataclass(frozen=True)
class WindowState:
    """What one product's next rows need from its past.

    Attributes:
        mids: The last ``history_length(window)`` accepted midprices, oldest first.
        ts_ns: Their exchange timestamps (same length).
        last_ingest_seq: Ordering key (with ``last_ticker_idx``) of the last row that passed the
            redelivery rule; -1 before any row.
        last_ticker_idx: Second part of that ordering key.
        last_conn_id: Connection of the last accepted row ("" before any row).
        max_sequence_num: Highest exchange sequence_num accepted in that connection's run; -1 if none.
    """

    mids: np.ndarray = dataclasses.field(default_factory=lambda: np.empty(0, np.float64))
    ts_ns: np.ndarray = dataclasses.field(default_factory=lambda: np.empty(0, np.int64))
    last_ingest_seq: int = -1
    last_ticker_idx: int = -1
    last_conn_id: str = ""
    max_sequence_num: int = -1


def history_length(window: int) -> int:
    """Midprices kept in state: enough for W returns, the W+1 timestamps and every extra window."""
    return max(window, *(size for _, _, size in EXTRA_WINDOWS)) + 1


def accept_mask(
    ingest_seq: np.ndarray,
    ticker_idx: np.ndarray,
    conn_id: np.ndarray,
    sequence_num: np.ndarray,
    state: WindowState,
) -> tuple[np.ndarray, WindowState]:
    """Applies the two dedupe rules to rows already sorted by (ingest_seq, ticker_idx).

    1. Redelivery: a row whose ordering key is <= the highest key already seen is dropped.
    2. Exchange repeat: a row from the same connection as the last accepted row whose
       ``sequence_num`` is <= the highest one accepted in that connection's run is dropped
       (``sequence_num`` -1 means unknown and never triggers the rule).

    Both depend only on (state, rows in order), so any split into batches gives the same mask.

    Returns:
        The boolean mask of accepted rows, and the state with updated markers (window untouched).
    """
    n = len(ingest_seq)
    if n == 0:
        return np.zeros(0, bool), state
    prev_seq = np.concatenate(([state.last_ingest_seq], ingest_seq[:-1]))
    prev_idx = np.concatenate(([state.last_ticker_idx], ticker_idx[:-1]))
    newer = (ingest_seq > prev_seq) | ((ingest_seq == prev_seq) & (ticker_idx > prev_idx))
    # Sorted input: "newer than the previous row" chained from the state marker means "newer than all".
    newer &= (ingest_seq > state.last_ingest_seq) | (
        (ingest_seq == state.last_ingest_seq) & (ticker_idx > state.last_ticker_idx)
    )
    keep = newer.copy()
    rows = np.flatnonzero(newer)
    conns = conn_id[rows]
    seqs = sequence_num[rows]
    # Runs of one connection among key-accepted rows; only the first run can continue the state's.
    starts: np.ndarray | list[int] = (
        np.flatnonzero(np.concatenate(([True], conns[1:] != conns[:-1]))) if len(rows) else []
    )
    bounds = [*starts, len(rows)]
    last_conn, max_seq = state.last_conn_id, state.max_sequence_num
    for a, b in itertools.pairwise(bounds):
        run = seqs[a:b]
        floor = max_seq if conns[a] == last_conn else -1
        prior = np.maximum.accumulate(np.concatenate(([floor], run[:-1])))
        keep[rows[a:b]] = (run < 0) | (run > prior)
        last_conn, max_seq = conns[a], max(floor, int(run.max()))
    last = rows[-1] if len(rows) else None
    new_state = dataclasses.replace(
        state,
        last_ingest_seq=int(ingest_seq[last]) if last is not None else state.last_ingest_seq,
        last_ticker_idx=int(ticker_idx[last]) if last is not None else state.last_ticker_idx,
        last_conn_id=str(last_conn),
        max_sequence_num=int(max_seq),
    )
    return keep, new_state


def _window_stat(returns: np.ndarray, first_pos: int, n: int, size: int, stat: str) -> np.ndarray:
    """``stat`` over the ``size`` returns before each of n consecutive history positions.

    Row i sits at history position ``first_pos + i``; its window is returns[p-size .. p-1].
    Sums run oldest to newest, one vectorised add per window slot: a fixed order per row.
    """
    out = np.full(n, np.nan)
    skip = max(0, size - first_pos)
    m = n - skip
    if m <= 0:
        return out
    start = first_pos + skip - size

    def column(j: int) -> np.ndarray:
        values = returns[start + j : start + j + m]
        return np.abs(values) if stat == "abs_mean" else values

    acc = column(0).copy()
    for j in range(1, size):
        acc += column(j)
    mean = acc / size
    if stat != "std":
        out[skip:] = mean
        return out
    dev = column(0) - mean
    ss = dev * dev
    for j in range(1, size):
        dev = column(j) - mean
        ss += dev * dev
    out[skip:] = np.sqrt(ss / size)
    return out


def compute(
    ts_ns: np.ndarray,
    price: np.ndarray,
    best_bid: np.ndarray,
    best_ask: np.ndarray,
    bid_qty: np.ndarray,
    ask_qty: np.ndarray,
    state: WindowState,
    window: int,
) -> tuple[dict[str, np.ndarray], np.ndarray, WindowState]:
    """Features of accepted rows in order, continuing ``state``.

    Args:
        ts_ns: Exchange timestamps (int64 ns). Prices and quantities: float64, NaN when absent.
        state: The product's state before these rows.
        window: W, the number of returns of ``rolling_vol`` and ``trade_intensity``.

    Returns:
        (feature arrays by column, NaN = null; ``ready`` mask of rows with W returns; new state).
    """
    n = len(ts_ns)
    book = (best_bid > 0) & (best_ask > 0) & (best_bid <= best_ask)
    mid = np.where(book, (best_bid + best_ask) / 2, price)
    spread = np.where(book, best_ask - best_bid, 0.0)
    history = np.concatenate((state.mids, mid))
    times = np.concatenate((state.ts_ns, ts_ns.astype(np.int64)))
    first = len(state.mids)
    returns = history[1:] / history[:-1] - 1.0
    pos = first + np.arange(n)
    ret = np.full(n, np.nan)
    has_ret = pos >= 1
    ret[has_ret] = returns[pos[has_ret] - 1]
    ready = pos >= window
    dt_ns = np.zeros(n, np.int64)
    dt_ns[ready] = times[pos[ready]] - times[pos[ready] - window]
    with np.errstate(divide="ignore", invalid="ignore"):
        intensity = np.where(dt_ns > 0, window / (dt_ns / 1e9), np.nan)
        qty_sum = bid_qty + ask_qty
        imbalance = np.where(qty_sum > 0, (bid_qty - ask_qty) / qty_sum, np.nan)
    features = {
        "midprice": mid,
        "mid_fallback": ~book,
        "spread": spread,
        "spread_bps": spread / mid * 1e4,
        "midprice_return": ret,
        "rolling_vol": _window_stat(returns, first, n, window, "std"),
        "trade_intensity": intensity,
        **{name: _window_stat(returns, first, n, size, stat) for name, stat, size in EXTRA_WINDOWS},
        "imbalance_1t": imbalance,
    }
    keep = history_length(window)
    new_state = dataclasses.replace(state, mids=history[-keep:].copy(), ts_ns=times[-keep:].copy())
    return features, ready, new_state


def featurize_frame(rows: pd.DataFrame, state: WindowState, window: int) -> tuple[pd.DataFrame, WindowState]:
    """Sorts, dedupes and featurizes one product's rows: the one entry point of both Spark paths.

    Args:
        rows: ``INPUT_COLUMNS`` of one product, any order; ``sequence_num`` -1 when unknown.
        state: The product's state before these rows.
        window: W.

    Returns:
        Every accepted row in order with ``FEATURE_COLUMNS`` added and a boolean ``ready``
        (W returns exist: a feature row), and the new state.
    """
    order = np.lexsort((rows["ticker_idx"].to_numpy(), rows["ingest_seq"].to_numpy()))
    rows = rows.iloc[order]
    keep, state = accept_mask(
        rows["ingest_seq"].to_numpy(np.int64),
        rows["ticker_idx"].to_numpy(np.int64),
        rows["conn_id"].to_numpy(object),
        rows["sequence_num"].to_numpy(np.int64),
        state,
    )
    rows = rows[keep].reset_index(drop=True)

    def floats(name: str) -> np.ndarray:
        return rows[name].to_numpy(np.float64, na_value=np.nan)

    features, ready, state = compute(
        rows["exchange_ts_ns"].to_numpy(np.int64),
        floats("price"),
        floats("best_bid"),
        floats("best_ask"),
        floats("best_bid_quantity"),
        floats("best_ask_quantity"),
        state,
        window,
    )
    out = rows.assign(**features, ready=ready)
    return out, state
