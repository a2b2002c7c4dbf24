"""Labels and time splits: pure NumPy/pandas, no Spark and no MLflow (like the feature kernel).

Inputs: feature rows (``product_id``, ``ingest_seq``, ``ticker_idx``, ``exchange_ts_ns``,
``midprice_return`` and the trailing volatility columns). Outputs: per-row forward volatility,
split assignments with an embargo, and 0/1 labels (NaN = no label).

Per product, rows are ordered by ``(ingest_seq, ticker_idx)``, the kernel's ordering. The
forward volatility of row t is the population std of the ``midprice_return`` of that product's
next H rows, t+1 .. t+H: strictly after the row, so the label never reads the row's own
window. Modes (docs/modeling.md):

* ``forward``: y = forward_vol >= tau, tau = a quantile of forward_vol over the training rows.
* ``relative``: y = forward_vol >= k * trailing vol (a column such as ``vol_300t``).
* ``current``: y = rolling_vol >= tau, the seed's label. Its answer is a model input: it only
  exists to show the leak.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

import numpy as np
import pandas as pd

LABEL_MODES = ("forward", "relative", "current")
ORDER_COLUMNS = ("product_id", "ingest_seq", "ticker_idx")
# Split codes; rows of an embargo (their label window reaches the next split) get EMBARGO.
TRAIN, VALIDATION, TEST, EMBARGO = 0, 1, 2, -1
SPLIT_NAMES = {TRAIN: "train", VALIDATION: "validation", TEST: "test"}
NO_END = np.iinfo(np.int64).max


@dataclasses.dataclass(frozen=True)
class LabelSpec:
    """How to label: mode, horizon H, tau's quantile and the relative mode's k and column."""

    mode: str = "forward"
    horizon: int = 60
    quantile: float = 0.95
    relative_k: float = 1.5
    relative_column: str = "vol_300t"

    def __post_init__(self) -> None:
        if self.mode not in LABEL_MODES:
            raise ValueError(f"label mode must be one of {LABEL_MODES}, got {self.mode!r}")
        if self.horizon < 1:
            raise ValueError(f"label horizon must be >= 1, got {self.horizon}")


def order_rows(frame: pd.DataFrame) -> pd.DataFrame:
    """Rows sorted by (product_id, ingest_seq, ticker_idx) with a fresh 0..n-1 index."""
    return frame.sort_values(list(ORDER_COLUMNS), kind="stable").reset_index(drop=True)


def _group_starts(products: np.ndarray) -> np.ndarray:
    """Index of each row's product's first row, for rows already grouped by product."""
    n = len(products)
    change = np.concatenate(([True], products[1:] != products[:-1])) if n else np.zeros(0, bool)
    return np.maximum.accumulate(np.where(change, np.arange(n), 0))


def _ahead_valid(products: np.ndarray, steps: int) -> np.ndarray:
    """True where the row ``steps`` ahead exists and belongs to the same product."""
    n = len(products)
    valid = np.zeros(n, bool)
    if steps < n:
        valid[: n - steps] = products[steps:] == products[: n - steps]
    return valid


def forward_vol(frame: pd.DataFrame, horizon: int) -> np.ndarray:
    """Population std of returns t+1 .. t+H of the same product; NaN when the horizon is incomplete.

    Args:
        frame: Rows in ``order_rows`` order with ``product_id`` and ``midprice_return``.
        horizon: H, the number of future returns.

    Returns:
        float64 array aligned with ``frame``.
    """
    products = frame["product_id"].to_numpy(object)
    returns = frame["midprice_return"].to_numpy(np.float64, na_value=np.nan)
    n = len(returns)
    out = np.full(n, np.nan)
    m = n - horizon
    if m <= 0:
        return out

    # Fixed summation order, one vectorised add per slot: O(n) memory, no (n, H) temporary.
    def column(j: int) -> np.ndarray:
        return returns[1 + j: 1 + j + m]

    acc = column(0).copy()
    for j in range(1, horizon):
        acc += column(j)
    mean = acc / horizon
    ss = np.zeros(m)
    for j in range(horizon):
        dev = column(j) - mean
        ss += dev * dev
    out[:m] = np.sqrt(ss / horizon)
    out[~_ahead_valid(products, horizon)] = np.nan
    return out


def window_end_ts(frame: pd.DataFrame, horizon: int) -> np.ndarray:
    """Exchange time of the last row of each row's label window (row t+H); ``NO_END`` when absent."""
    products = frame["product_id"].to_numpy(object)
    ts = frame["exchange_ts_ns"].to_numpy(np.int64)
    end = np.full(len(ts), NO_END, np.int64)
    valid = _ahead_valid(products, horizon)
    end[np.flatnonzero(valid)] = ts[np.flatnonzero(valid) + horizon]
    return end


def assign_segments(ts: np.ndarray, end_ts: np.ndarray, cuts: list[int]) -> np.ndarray:
    """Segment of each row between time ``cuts``; ``EMBARGO`` where its label window crosses a cut.

    Segment s holds rows with cuts[s-1] <= ts < cuts[s]. A row of a segment that has a next
    cut is kept only when its window's last row is still before that cut.

    Returns:
        int64 segment codes 0..len(cuts), or ``EMBARGO``.
    """
    cuts_arr = np.asarray(cuts, np.int64)
    segment = np.searchsorted(cuts_arr, ts, side="right").astype(np.int64)
    bounded = segment < len(cuts_arr)
    next_cut = cuts_arr[np.minimum(segment, len(cuts_arr) - 1)] if len(cuts_arr) else segment
    crosses = bounded & (end_ts >= next_cut)
    return np.where(crosses, EMBARGO, segment)


def time_cuts(ts: np.ndarray, fractions: list[float]) -> list[int]:
    """Exchange times below which the given fractions of all rows lie (across products)."""
    ordered = np.sort(ts)
    return [int(ordered[min(len(ordered) - 1, int(len(ordered) * f))]) for f in fractions]


def chronological_split(frame: pd.DataFrame, horizon: int, fractions: tuple[float, float] = (0.6, 0.8)) -> np.ndarray:
    """The 60/20/20 split by exchange time with an embargo of H ticks before each boundary.

    Args:
        frame: Rows in ``order_rows`` order.
        horizon: H; a row whose label window reaches the next split is embargoed.
        fractions: Cumulative fractions of the train and validation boundaries.

    Returns:
        Codes TRAIN, VALIDATION, TEST or EMBARGO aligned with ``frame``.
    """
    ts = frame["exchange_ts_ns"].to_numpy(np.int64)
    if len(ts) == 0:
        return np.zeros(0, np.int64)
    return assign_segments(ts, window_end_ts(frame, horizon), time_cuts(ts, list(fractions)))


def label_target(frame: pd.DataFrame, spec: LabelSpec) -> np.ndarray:
    """The quantity compared with the threshold: forward vol (forward, relative) or rolling_vol (current)."""
    if spec.mode == "current":
        return frame["rolling_vol"].to_numpy(np.float64, na_value=np.nan)
    return forward_vol(frame, spec.horizon)


def fit_tau(target: np.ndarray, train_mask: np.ndarray, quantile: float) -> float:
    """tau: the ``quantile`` of the target over labelled training rows only (NaN if there are none)."""
    values = target[train_mask & np.isfinite(target)]
    return float(np.quantile(values, quantile)) if len(values) else float("nan")


def make_labels(frame: pd.DataFrame, target: np.ndarray, spec: LabelSpec, tau: float) -> np.ndarray:
    """0/1 labels as float64, NaN where the row has no label.

    Args:
        frame: The rows (``relative`` reads ``spec.relative_column``).
        target: ``label_target(frame, spec)``.
        spec: The label definition.
        tau: The threshold of ``forward``/``current`` (ignored by ``relative``).
    """
    if spec.mode == "relative":
        threshold = spec.relative_k * frame[spec.relative_column].to_numpy(np.float64, na_value=np.nan)
    else:
        threshold = np.full(len(target), tau)
    known = np.isfinite(target) & np.isfinite(threshold)
    return np.where(known, (target >= threshold).astype(np.float64), np.nan)


def logged_definition(params: Mapping[str, str], fallback: LabelSpec) -> tuple[LabelSpec, float]:
    """The label definition and tau a training run logged as its params, so that rows scored
    later (batch inference, monitoring) are labelled exactly as the model was trained."""
    spec = LabelSpec(params.get("label_mode", fallback.mode), int(params.get("horizon", fallback.horizon)),
                     relative_k=float(params.get("relative_k", fallback.relative_k)),
                     relative_column=params.get("relative_column", fallback.relative_column))
    return spec, float(params.get("tau", "nan"))


def labels_as_trained(frame: pd.DataFrame, spec: LabelSpec, tau: float) -> np.ndarray:
    """0/1 labels (NaN where unknown) of rows in the kernel's order, by a logged definition."""
    return make_labels(frame, label_target(frame, spec), spec, tau)

