"""Walk-forward evaluation: weighted PR-AUC, folds with embargo, bootstrap CI, MLflow logging."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from volpipe.modeling import evaluate
from volpipe.modeling import label as L
from volpipe.modeling import models as M
from volpipe.modeling.synthetic import synthetic_features, write_features

MARKET = {"calm_seconds": 120.0, "burst_seconds": 60.0, "burst_multiplier": 5.0}


@pytest.fixture(scope="module")
def rows():
    return L.order_rows(synthetic_features(40_000, seed=4, **MARKET))


def test_weighted_pr_auc_equals_scikit_learns_with_sample_weights_and_ties():
    from sklearn.metrics import average_precision_score

    rng = np.random.default_rng(5)
    y = (rng.random(2_000) < 0.1).astype(float)
    scores = np.round(rng.random(2_000) + y * 0.3, 2)  # rounding makes many ties
    weights = rng.integers(0, 4, 2_000).astype(float)
    order = np.argsort(-scores, kind="stable")
    ranked = scores[order]
    tie_end = np.concatenate((ranked[1:] != ranked[:-1], [True]))
    assert evaluate.weighted_pr_auc(order, tie_end, y, weights) == pytest.approx(
        average_precision_score(y, scores, sample_weight=weights)
    )
    assert evaluate.weighted_pr_auc(order, tie_end, y, np.ones(2_000)) == pytest.approx(
        average_precision_score(y, scores)
    )


def test_walk_forward_folds_expand_in_time_and_the_result_is_seeded(rows):
    spec = L.LabelSpec(horizon=60)
    result = evaluate.walk_forward(rows, spec, folds=4, seed=1, samples=60)
    assert [f["fold"] for f in result.folds] == sorted(f["fold"] for f in result.folds)
    trains = [f["train_rows"] for f in result.folds]
    assert trains == sorted(trains) and len(set(trains)) == len(trains)  # expanding window
    assert result.block == 2 * spec.horizon  # H rows per product, two products
    assert sum(f["test_rows"] for f in result.folds) == result.pooled["rows"]
    for name in (M.LOGISTIC, M.BOOSTING):
        _, low, high = result.gain[name]
        assert high - low > 0
    again = evaluate.walk_forward(rows, spec, folds=4, seed=1, samples=60)
    assert again.gain == result.gain  # seeded
    table = result.table()
    assert "minus baseline" in table and M.BASELINE in table


def test_a_bootstrap_resample_is_made_of_whole_blocks_of_consecutive_rows():
    rng = np.random.default_rng(0)
    for n, block in ((1_000, 37), (120, 120), (500, 1)):
        picks = evaluate.block_resample(rng, n, block)
        assert len(picks) == n and picks.min() >= 0 and picks.max() < n
        runs = np.split(picks, np.arange(block, n, block))
        assert all((np.diff(run) == 1).all() for run in runs), (n, block)
    # Different starts from one draw to the next: a resample, not the rows as they are.
    assert not np.array_equal(evaluate.block_resample(rng, 1_000, 37), evaluate.block_resample(rng, 1_000, 37))


def test_the_bootstrap_scores_the_model_and_the_baseline_on_the_same_resampled_rows():
    rng = np.random.default_rng(3)
    y = (rng.random(3_000) < 0.1).astype(float)
    noisy = rng.random(3_000) + y * 0.5
    # The same ranking as the baseline: on every paired resample the gain is exactly 0. Unpaired
    # resamples (other rows for the model) would spread it around 0.
    scores = {M.BASELINE: noisy, M.LOGISTIC: 2.0 * noisy + 1.0, M.BOOSTING: rng.random(3_000)}
    gain = evaluate.block_bootstrap_gain(y, scores, block=50, samples=40, seed=1)
    assert gain[M.LOGISTIC] == (0.0, 0.0, 0.0)
    diff, low, high = gain[M.BOOSTING]
    assert diff < 0 and high < 0 < high - low  # random scores lose to the informative baseline


def test_walk_forward_with_shuffled_returns_finds_no_gain_beyond_noise(rows):
    # Shuffling returns within a product destroys volatility clustering: nothing is predictable
    # under a fixed tau. (A relative label's threshold, k x vol_300t of the unshuffled rows, is a
    # model input: it would stay predictable.)
    rng = np.random.default_rng(2)
    shuffled = rows.copy()
    for _, index in shuffled.groupby("product_id").groups.items():
        shuffled.loc[index, "midprice_return"] = rng.permutation(shuffled.loc[index, "midprice_return"].to_numpy())
    result = evaluate.walk_forward(shuffled, L.LabelSpec(mode="forward", horizon=60), folds=3, seed=1, samples=60)
    for name in (M.LOGISTIC, M.BOOSTING):
        assert abs(result.pooled[name] - result.pooled["positive_rate"]) < 0.05


@pytest.mark.integration
def test_run_logs_the_folds_and_the_ci_to_mlflow(mlflow_server, rows, tmp_path):
    from mlflow.tracking import MlflowClient

    settings = dataclasses.replace(
        mlflow_server, delta_dir=tmp_path / "delta", walk_forward_folds=3, bootstrap_samples=30
    )
    write_features(settings.delta_table("features"), rows)
    result = evaluate.run(settings)
    client = MlflowClient(settings.mlflow_tracking_uri)
    experiment = client.get_experiment_by_name(settings.mlflow_experiment).experiment_id
    [run] = client.search_runs(
        [experiment],
        "attributes.run_name = 'walk-forward-relative'",
        max_results=1,
        order_by=["attributes.start_time DESC"],
    )
    metrics = run.data.metrics
    assert metrics["logistic_regression_minus_baseline"] == pytest.approx(result.gain[M.LOGISTIC][0])
    assert {"hist_gradient_boosting_minus_baseline_ci_low", "baseline_pooled_pr_auc"} <= set(metrics)
    assert run.data.params["folds"] == "3" and run.data.params["block_rows"] == str(result.block)
    logged, _ = L.logged_definition(run.data.params, L.LabelSpec(mode="forward", relative_k=9.0))
    assert logged == L.label_spec(settings)
    assert "walk_forward.txt" in {a.path for a in client.list_artifacts(run.info.run_id)}
