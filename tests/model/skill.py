"""Feature rows whose forward label a model can or cannot predict, by construction, for tests
that need the promotion gate to pass or to fail whatever the synthetic market's realism.

The synthetic market is meant to be about as predictable as a real one: on the few thousand
rows a test can afford, whether a model beats "volatility persists" beyond noise is a coin
flip. These rows settle it: ``skilled_rows`` hand the models a feature that reads the label's
own future window, ``unpredictable_rows`` give every row a label no feature can know.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from volpipe.modeling import label as L
from volpipe.modeling.synthetic import synthetic_features

MARKET = {"calm_seconds": 120.0, "burst_seconds": 60.0, "burst_multiplier": 5.0}  # bursts in every split


def skilled_rows(ticks: int = 20_000, seed: int = 5, horizon: int = 60) -> pd.DataFrame:
    """Synthetic feature rows whose ``trade_intensity`` is a noisy reading of the forward volatility
    of the next ``horizon`` rows (what the label thresholds): both learned models read that column,
    the baseline (``rolling_vol``) does not, so a training beats persistence far beyond noise.
    Rows without a complete horizon keep their own value."""
    rows = L.order_rows(synthetic_features(ticks, seed=seed, **MARKET))
    future = L.forward_vol(rows, horizon)
    noise = np.random.default_rng(seed).lognormal(0.0, 0.15, len(rows))
    planted = future / np.nanmedian(future) * np.nanmedian(rows["trade_intensity"]) * noise
    return rows.assign(trade_intensity=np.where(np.isfinite(future), planted, rows["trade_intensity"]))


def unpredictable_rows(ticks: int = 20_000, seed: int = 4) -> pd.DataFrame:
    """Synthetic feature rows whose ``midprice_return`` (what the label is computed from) is
    replaced, after the features, by independent draws of one volatility, and whose relative
    label's threshold column (``vol_300t``, a model input) by one constant, set so that about 5%
    of rows cross it: every label is independent of every feature, the baseline's included."""
    rows = L.order_rows(synthetic_features(ticks, seed=seed, **MARKET))
    scale = float(np.nanstd(rows["midprice_return"]))
    rows = rows.assign(midprice_return=np.random.default_rng(seed).normal(0.0, scale, len(rows)))
    spec = L.LabelSpec()
    level = np.nanquantile(L.forward_vol(rows, spec.horizon), 0.95) / spec.relative_k
    return rows.assign(**{spec.relative_column: level})
