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
    # The baseline's score *is* the label's input: the seed's setup measures nothing.
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


def test_metrics_at_the_decision_threshold_are_consistent(forward):
    prepared, trained = forward
    test = prepared.splits["test"]
    for name in M.MODEL_NAMES:
        t = trained[name]
        predicted = np.nan_to_num(t.scores["test"], nan=-np.inf) >= t.threshold
        y = test["y"].to_numpy().astype(bool)
        precision = (predicted & y).sum() / max(predicted.sum(), 1)
        assert t.metrics["test"]["precision"] == pytest.approx(precision)
        assert t.metrics["test"]["rows"] == len(test)
        assert 0.0 <= t.metrics["test"]["roc_auc"] <= 1.0
