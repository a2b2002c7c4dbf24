"""Behavioural model tests on the synthetic market: the leak, shuffled labels, predictable bursts.

No services: labels, split and models are called directly (``prepare`` + ``train_models``),
on feature rows computed by the kernel from the seeded market (volpipe.modeling.synthetic).
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pytest

from volpipe.modeling import label as L
from volpipe.modeling import models as M
from volpipe.modeling import train
from volpipe.modeling.synthetic import synthetic_features

# Strong bursts, several per split, each lasting several label horizons: predictable by persistence.
MARKET = {"calm_seconds": 300.0, "burst_seconds": 60.0, "burst_multiplier": 6.0}


@pytest.fixture(scope="module")
def market_rows() -> pd.DataFrame:
    return L.order_rows(synthetic_features(60_000, seed=3, **MARKET))


@pytest.fixture(scope="module")
def forward(market_rows) -> tuple[train.Prepared, dict[str, train.Trained]]:
    prepared = train.prepare(market_rows, L.LabelSpec(mode="forward"), min_rows=1000)
    return prepared, train.train_models(prepared, seed=0)


def test_current_labels_leak_logistic_regression_reaches_pr_auc_above_0_95(market_rows):
    prepared = train.prepare(market_rows, L.LabelSpec(mode="current"), min_rows=1000)
    tr, te = prepared.splits["train"], prepared.splits["test"]
    lr = M.fit(M.LOGISTIC, tr, tr["y"].to_numpy(), seed=0)
    assert M.pr_auc(te["y"].to_numpy(), M.score(M.LOGISTIC, lr, te)) > 0.95
    # The baseline's score *is* the label's input: a current-volatility label measures nothing.
    assert M.pr_auc(te["y"].to_numpy(), te["rolling_vol"].to_numpy()) > 0.99


def test_with_shuffled_forward_labels_no_model_beats_the_positive_rate(market_rows):
    prepared = train.prepare(market_rows, L.LabelSpec(mode="forward"), min_rows=1000)
    rng = np.random.default_rng(11)
    shuffled = {name: part.assign(y=rng.permutation(part["y"].to_numpy())) for name, part in prepared.splits.items()}
    trained = train.train_models(dataclasses.replace(prepared, splits=shuffled), seed=0)
    positive_rate = shuffled["test"]["y"].mean()
    for name in M.MODEL_NAMES:
        assert abs(trained[name].metrics["test"]["pr_auc"] - positive_rate) < 0.03, name


def test_on_a_market_with_predictable_bursts_the_challenger_clearly_beats_the_positive_rate(forward):
    prepared, trained = forward
    positive_rate = prepared.splits["test"]["y"].mean()
    challenger = trained[M.BOOSTING].metrics["test"]["pr_auc"]
    assert challenger > 2 * positive_rate and challenger > positive_rate + 0.05
    assert trained[M.LOGISTIC].metrics["test"]["pr_auc"] > 2 * positive_rate


def test_forward_tau_is_the_training_quantile_and_splits_follow_in_time(market_rows):
    spec = L.LabelSpec(mode="forward", horizon=60, quantile=0.95)
    prepared = train.prepare(market_rows, spec, min_rows=1000)
    assert prepared.splits["train"]["y"].mean() == pytest.approx(0.05, abs=0.005)
    bounds = prepared.bounds
    assert bounds["train"]["end_ns"] <= bounds["validation"]["start_ns"]
    assert bounds["validation"]["end_ns"] <= bounds["test"]["start_ns"]
    assert bounds["embargo_rows"] == 2 * 2 * spec.horizon  # 2 products x 2 boundaries x H
    rows = sum(bounds[s]["rows"] for s in ("train", "validation", "test"))
    assert rows + bounds["embargo_rows"] + 2 * spec.horizon == len(market_rows)  # + incomplete horizons


def test_metrics_at_the_decision_threshold_match_hand_computed_values():
    y = np.array([1, 0, 1, 1, 0, 0, 0, 0])
    scores = np.array([0.9, 0.8, 0.7, 0.2, 0.1, 0.05, np.nan, 0.3])
    m = M.metrics(y, scores, threshold=0.5)
    # At 0.5: predicted 1 for 0.9, 0.8, 0.7 -> TP 2, FP 1, FN 1 (the unscored row counts as 0).
    assert m["precision"] == pytest.approx(2 / 3) and m["recall"] == pytest.approx(2 / 3)
    assert m["f1"] == pytest.approx(2 / 3)
    # Ranked: 1 0 1 0 1 0 0 0 -> precision at each positive 1/1, 2/3, 3/5.
    assert m["pr_auc"] == pytest.approx((1 + 2 / 3 + 3 / 5) / 3)
    # 12 of the 15 (positive, negative) pairs are ordered right; the unscored row ranks with the lowest.
    assert m["roc_auc"] == pytest.approx(12 / 15)
    assert (m["positive_rate"], m["rows"]) == (3 / 8, 8.0)


def test_the_trained_models_metrics_agree_with_each_other(forward):
    prepared, trained = forward
    test = prepared.splits["test"]
    positives = int(test["y"].sum())
    for name in M.MODEL_NAMES:
        t = trained[name].metrics["test"]
        # precision x predicted positives and recall x actual positives both count the true positives.
        predicted = int((np.nan_to_num(trained[name].scores["test"], nan=-np.inf) >= trained[name].threshold).sum())
        assert t["precision"] * predicted == pytest.approx(t["recall"] * positives), name
        assert t["f1"] == pytest.approx(2 * t["precision"] * t["recall"] / (t["precision"] + t["recall"])), name
        assert t["rows"] == len(test) and t["positive_rate"] == pytest.approx(positives / len(test))


def test_the_challengers_ratio_features_ignore_the_volatility_level():
    x = pd.DataFrame(
        {
            "rolling_vol": [2e-5, 4e-5, 1e-5, 0.0],
            "abs_ret_mean_60t": [1e-5, 3e-5, 5e-6, 0.0],
            "vol_300t": [1e-5, 2e-5, np.nan, 0.0],
        }
    )
    ratios = M.with_ratios(x)
    np.testing.assert_array_equal(ratios[:, :3], x.to_numpy())  # the columns as they came, then the ratios
    np.testing.assert_allclose(ratios[:, 3:], [[2.0, 1.0], [2.0, 1.5], [np.nan, np.nan], [1.0, 1.0]])
    np.testing.assert_array_equal(M.with_ratios(x * 2.0)[:, 3:], ratios[:, 3:])  # the same bits: x2 / x2 is exact
