"""Labels, gap rules and time splits: pure NumPy/pandas, no Spark and no MLflow (like the feature kernel).

Inputs: feature rows (``product_id``, ``ingest_seq``, ``ticker_idx``, ``exchange_ts_ns``,
``midprice_return``, ``trade_intensity`` and the trailing volatility columns) and a
``LabelSpec``. Outputs: per-row forward volatility, split assignments with an embargo, and 0/1
labels (NaN = no label). Also the one definition of the label's settings, CLI flags and the
MLflow params a run logs so that later rows are labelled as the model was trained.

Per product, rows are ordered by ``(ingest_seq, ticker_idx)``, the kernel's ordering. The
forward volatility of row t is the population std of the ``midprice_return`` of that product's
next H rows, t+1 .. t+H: strictly after the row, so the label never reads the row's own
window. Modes (docs/modeling.md):

* ``relative`` (default): y = forward_vol >= k * trailing vol (a column such as ``vol_300t``):
  the threshold is a stream feature, so a model can see the question it is asked.
* ``trailing``: y = forward_vol >= tau_t, tau_t = the quantile of the product's own
  forward vols whose windows closed by row t (rows t-H-S+1 .. t-H, S = ``trailing_rows``).
* ``forward``: y = forward_vol >= tau, tau = a quantile of forward_vol over the training rows.
* ``current``: y = rolling_vol >= tau, a threshold on the row's own trailing volatility (the
  pipeline's first label). Its answer is a model input: it only exists to show the leak.

Gaps (every mode): a row whose label window spans a silence longer than ``max_gap_seconds``
between two ticks of its product has no label, and so has a row whose trailing feature
windows reach back across such a silence (``after_gap``): its returns and volatilities mix
two sessions.
"""

from __future__ import annotations

import argparse
import dataclasses
from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

from volpipe.config import LABEL_MODES, Settings
from volpipe.features import EXTRA_WINDOWS
from volpipe.modeling.models import ALL_FEATURES
from volpipe.tables import ROW_KEYS

# Split codes; rows of an embargo (their label window reaches the next split) get EMBARGO.
TRAIN, VALIDATION, TEST, EMBARGO = 0, 1, 2, -1
SPLIT_NAMES = {TRAIN: "train", VALIDATION: "validation", TEST: "test"}
NO_END = np.iinfo(np.int64).max
FITTED_TAU_MODES = ("forward", "current")  # the modes whose tau is fitted on training rows


@dataclasses.dataclass(frozen=True)
class LabelSpec:
    """How to label. The defaults are the settings' defaults (``label_spec(Settings.from_env({}))``).

    Attributes:
        mode: One of ``LABEL_MODES``.
        horizon: H, future returns of the forward volatility (also the embargo).
        quantile: tau's quantile (``forward``, ``current``: over training rows; ``trailing``: per row).
        relative_k: ``relative``: the multiple of the trailing column.
        relative_column: ``relative``: the trailing volatility column.
        trailing_rows: ``trailing``: S, the product's past rows whose forward vols set tau_t.
        max_gap_seconds: The longest silence between two ticks of a product a window may span.
        window: W of the kernel (``trade_intensity`` = W / the time span of the last W returns).
    """

    mode: str = "relative"
    horizon: int = 60
    quantile: float = 0.95
    relative_k: float = 2.0
    relative_column: str = "vol_300t"
    trailing_rows: int = 1500
    max_gap_seconds: float = 30.0
    window: int = 60

    def __post_init__(self) -> None:
        if self.mode not in LABEL_MODES:
            raise ValueError(f"label mode must be one of {LABEL_MODES}, got {self.mode!r}")
        if self.horizon < 1:
            raise ValueError(f"label horizon must be >= 1, got {self.horizon}")
        if self.trailing_rows < 2:
            raise ValueError(f"label trailing rows must be >= 2, got {self.trailing_rows}")
        if not self.max_gap_seconds > 0:
            raise ValueError(f"label max gap must be > 0 seconds, got {self.max_gap_seconds}")

    @property
    def max_gap_ns(self) -> int:
        return round(self.max_gap_seconds * 1e9)

    @property
    def trailing_min_rows(self) -> int:
        """Finite past forward vols a ``trailing`` tau needs: half the span (fewer: no label)."""
        return self.trailing_rows // 2

    @property
    def feature_span(self) -> int:
        """Returns the longest trailing feature reads (``vol_300t``: 300; ``rolling_vol``: W)."""
        return max(self.window, *(size for _, _, size in EXTRA_WINDOWS))


# The label's settings: (Settings field, LabelSpec field, CLI flag, type). One table for the spec,
# the training and evaluation CLIs and the MLflow params.
_KNOBS = (
    ("label_mode", "mode", "--label-mode", str),
    ("label_horizon", "horizon", "--horizon", int),
    ("label_quantile", "quantile", "--quantile", float),
    ("label_relative_k", "relative_k", "--relative-k", float),
    ("label_relative_column", "relative_column", "--relative-column", str),
    ("label_trailing_rows", "trailing_rows", "--trailing-rows", int),
    ("label_max_gap_seconds", "max_gap_seconds", "--max-gap-seconds", float),
)


def label_spec(settings: Settings) -> LabelSpec:
    """The ``LabelSpec`` of the settings (LABEL_* and FEATURE_WINDOW_SIZE)."""
    return LabelSpec(
        **{spec_field: getattr(settings, field) for field, spec_field, _, _ in _KNOBS},
        window=settings.feature_window_size,
    )


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The label's flags, the same on every CLI that labels (train, evaluate); each overrides its variable."""
    env = {field.name: field.metadata["env"] for field in dataclasses.fields(Settings)}
    for field, _, flag, kind in _KNOBS:
        extra: dict[str, Any] = {"choices": LABEL_MODES} if field == "label_mode" else {}
        parser.add_argument(flag, type=kind, dest=field, help=env[field], **extra)


def overrides(args: argparse.Namespace) -> dict[str, Any]:
    """The parsed label flags as ``Settings.from_env`` overrides (None = not given: the variable wins)."""
    return {field: getattr(args, field) for field, _, _, _ in _KNOBS}


def label_columns(spec: LabelSpec) -> list[str]:
    """Columns the label reads besides the key columns."""
    return list(dict.fromkeys(("midprice_return", "rolling_vol", "trade_intensity", spec.relative_column)))


def required_columns(spec: LabelSpec) -> list[str]:
    """Columns training reads: the models' features and the label's columns."""
    return list(dict.fromkeys((*label_columns(spec), *ALL_FEATURES)))


def definition_params(spec: LabelSpec) -> dict[str, Any]:
    """The MLflow params that define the label (``logged_definition`` reads them back)."""
    params: dict[str, Any] = {
        "label_mode": spec.mode,
        "horizon": spec.horizon,
        "label_quantile": spec.quantile,
        "label_max_gap_seconds": spec.max_gap_seconds,
        "window": spec.window,
    }
    if spec.mode == "relative":
        params.update(relative_k=spec.relative_k, relative_column=spec.relative_column)
    if spec.mode == "trailing":
        params.update(label_trailing_rows=spec.trailing_rows)
    return params


def logged_definition(params: Mapping[str, str], fallback: LabelSpec) -> tuple[LabelSpec, float]:
    """The label definition and tau a training run logged as its params, so that rows scored
    later (batch inference, monitoring) are labelled exactly as the model was trained. A param
    the run lacks (a run older than that param) takes ``fallback``'s value."""

    def get(name: str, kind: type, default: Any) -> Any:
        return kind(params[name]) if name in params else default

    spec = LabelSpec(
        mode=params.get("label_mode", fallback.mode),
        horizon=get("horizon", int, fallback.horizon),
        quantile=get("label_quantile", float, fallback.quantile),
        relative_k=get("relative_k", float, fallback.relative_k),
        relative_column=params.get("relative_column", fallback.relative_column),
        trailing_rows=get("label_trailing_rows", int, fallback.trailing_rows),
        max_gap_seconds=get("label_max_gap_seconds", float, fallback.max_gap_seconds),
        window=get("window", int, fallback.window),
    )
    return spec, float(params.get("tau", "nan"))


def order_rows(frame: pd.DataFrame) -> pd.DataFrame:
    """Rows sorted by ``ROW_KEYS`` with a fresh 0..n-1 index."""
    return frame.sort_values(list(ROW_KEYS), kind="stable").reset_index(drop=True)


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
        return returns[1 + j : 1 + j + m]

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


def _silences(frame: pd.DataFrame, max_gap_ns: int) -> np.ndarray:
    """Cumulative count of silences: entry j counts rows i <= j whose tick came more than
    ``max_gap_ns`` after the row before. Callers difference it over rows (a, b] of one product,
    so a product's first row, compared with the previous product's last, never counts."""
    ts = frame["exchange_ts_ns"].to_numpy(np.int64)
    silent = np.zeros(len(ts), bool)
    silent[1:] = np.diff(ts) > max_gap_ns
    return np.cumsum(silent)


def window_spans_gap(frame: pd.DataFrame, spec: LabelSpec) -> np.ndarray:
    """True where row t's label window (its product's rows t .. t+H) holds a silence longer than
    ``max_gap_seconds``; False where the window is incomplete (those rows have no label anyway)."""
    count = _silences(frame, spec.max_gap_ns)
    valid = _ahead_valid(frame["product_id"].to_numpy(object), spec.horizon)
    spans = np.zeros(len(count), bool)
    rows = np.flatnonzero(valid)
    spans[rows] = count[rows + spec.horizon] > count[rows]
    return spans


def after_gap(frame: pd.DataFrame, spec: LabelSpec) -> np.ndarray:
    """True where the row's trailing feature windows may reach back across a silence longer than
    ``max_gap_seconds``: the returns of rows t-L+1 .. t of its product (L = ``feature_span``,
    ``vol_300t``'s 300) include one across it.

    At the start of the rows read, the windows reach before the first row. There the W returns
    before row t span ``W / trade_intensity`` seconds; when the part of it before the first row
    read is longer than the limit, a silence may hide in it, and the product's first L rows are
    flagged. ``vol_300t`` reaches further back than W: a silence there stays unseen (docs/features.md).
    """
    products = frame["product_id"].to_numpy(object)
    ts = frame["exchange_ts_ns"].to_numpy(np.int64)
    n = len(ts)
    count = _silences(frame, spec.max_gap_ns)
    starts = _group_starts(products)
    span = spec.feature_span
    back = np.maximum(np.arange(n) - span, starts)  # rows t-L+1 .. t are the silences after row `back`
    flagged = count > count[back] if n else np.zeros(0, bool)
    position = np.arange(n) - starts
    with np.errstate(divide="ignore", invalid="ignore"):
        window_ns = spec.window / frame["trade_intensity"].to_numpy(np.float64, na_value=np.nan) * 1e9
    unseen_ns = window_ns - (ts - ts[starts])
    edge = (position < spec.window) & (unseen_ns > spec.max_gap_ns)
    edge_products = set(products[edge])
    if edge_products:
        flagged |= (position < span) & np.isin(products, list(edge_products))
    return flagged


def trailing_tau(frame: pd.DataFrame, target: np.ndarray, spec: LabelSpec) -> np.ndarray:
    """tau_t of the ``trailing`` mode: the ``quantile`` of the product's finite targets of rows
    t-H-S+1 .. t-H, whose windows closed by row t (S = ``trailing_rows``); NaN with fewer than
    ``trailing_min_rows`` of them. Rows after t never move tau_t."""
    products = frame["product_id"].to_numpy(object)
    out = np.full(len(target), np.nan)
    starts: np.ndarray | list[int] = (
        np.flatnonzero(np.concatenate(([True], products[1:] != products[:-1]))) if len(products) else []
    )
    for a, b in zip(starts, [*starts[1:], len(products)], strict=True):
        known = pd.Series(target[a:b]).shift(spec.horizon)
        out[a:b] = known.rolling(spec.trailing_rows, min_periods=spec.trailing_min_rows).quantile(spec.quantile)
    return out


def label_target(frame: pd.DataFrame, spec: LabelSpec) -> np.ndarray:
    """The quantity compared with the threshold: rolling_vol (current), else forward vol, NaN where
    the label window spans a silence longer than ``max_gap_seconds``."""
    if spec.mode == "current":
        return frame["rolling_vol"].to_numpy(np.float64, na_value=np.nan)
    target = forward_vol(frame, spec.horizon)
    target[window_spans_gap(frame, spec)] = np.nan
    return target


def fit_tau(target: np.ndarray, train_mask: np.ndarray, quantile: float) -> float:
    """tau: the ``quantile`` of the target over labelled training rows only (NaN if there are none)."""
    values = target[train_mask & np.isfinite(target)]
    return float(np.quantile(values, quantile)) if len(values) else float("nan")


def training_tau(target: np.ndarray, train_mask: np.ndarray, spec: LabelSpec) -> float:
    """The tau a training fits: the training rows' quantile for ``forward``/``current``, else NaN
    (``trailing`` and ``relative`` set a threshold per row from the row's own past)."""
    return fit_tau(target, train_mask, spec.quantile) if spec.mode in FITTED_TAU_MODES else float("nan")


def thresholds(frame: pd.DataFrame, target: np.ndarray, spec: LabelSpec, tau: float) -> np.ndarray:
    """The threshold of each row: k x the trailing column, the trailing tau_t, or the fitted tau."""
    if spec.mode == "relative":
        return spec.relative_k * frame[spec.relative_column].to_numpy(np.float64, na_value=np.nan)
    if spec.mode == "trailing":
        return trailing_tau(frame, target, spec)
    return np.full(len(target), tau)


def labels_and_thresholds(
    frame: pd.DataFrame, target: np.ndarray, spec: LabelSpec, tau: float
) -> tuple[np.ndarray, np.ndarray]:
    """0/1 labels as float64 (NaN where the row has no label) and each row's threshold.

    Args:
        frame: The rows in ``order_rows`` order.
        target: ``label_target(frame, spec)``.
        spec: The label definition.
        tau: The threshold of ``forward``/``current`` (ignored by the other modes).
    """
    threshold = thresholds(frame, target, spec, tau)
    known = np.isfinite(target) & np.isfinite(threshold) & ~after_gap(frame, spec)
    return np.where(known, (target >= threshold).astype(np.float64), np.nan), threshold


def make_labels(frame: pd.DataFrame, target: np.ndarray, spec: LabelSpec, tau: float) -> np.ndarray:
    """0/1 labels as float64, NaN where the row has no label (``labels_and_thresholds``)."""
    return labels_and_thresholds(frame, target, spec, tau)[0]


def labels_as_trained(frame: pd.DataFrame, spec: LabelSpec, tau: float) -> np.ndarray:
    """0/1 labels (NaN where unknown) of rows in the kernel's order, by a logged definition."""
    return make_labels(frame, label_target(frame, spec), spec, tau)


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
