"""The promotion gate (``evaluate.decide_promotion``) on scores made to order: no services, milliseconds."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from volpipe.modeling import evaluate
from volpipe.modeling import models as M

H = 20  # label horizon: blocks of H x 2 products rows
SAMPLES = 200


@pytest.fixture(scope="module")
def rows() -> pd.DataFrame:
    """4,000 test rows of two products, interleaved in time, with clustered labels (~10% positive)
    and the baseline's score (``rolling_vol``) that follows them loosely."""
    rng = np.random.default_rng(3)
    n = 4_000
    level = np.repeat(rng.random(n // 50) < 0.1, 50)  # bursts of 50 rows
    y = (level & (rng.random(n) < 0.8)).astype(float)
    return pd.DataFrame(
        {
            "exchange_ts_ns": np.arange(n, dtype=np.int64) * 10**8,
            "product_id": np.where(np.arange(n) % 2, "ETH-USD", "BTC-USD"),
            "y": y,
            M.BASELINE: y * 0.5 + rng.random(n),
        }
    )


def decide(rows, candidate_scores, champion=None, candidate=M.LOGISTIC) -> evaluate.Promotion:
    scores = {M.BASELINE: rows[M.BASELINE].to_numpy(), candidate: np.asarray(candidate_scores, float)}
    return evaluate.decide_promotion(rows, scores, candidate, champion, H, SAMPLES, seed=1)


def test_a_candidate_that_is_the_baseline_is_not_promoted(rows):
    verdict = decide(rows, rows[M.BASELINE])
    assert verdict.decision == evaluate.NO_SKILL and not verdict.promoted
    assert verdict.gain == 0 and verdict.gain_ci == (0.0, 0.0)
    assert verdict.reason.startswith("no model beat the persistence baseline beyond noise")


def test_a_candidate_scoring_what_the_labels_do_not_depend_on_is_not_promoted(rows):
    noise = np.random.default_rng(8).random(len(rows))
    verdict = decide(rows, noise)
    assert verdict.decision == evaluate.NO_SKILL and verdict.gain < 0


def test_a_gain_within_noise_is_not_promoted(rows):
    """An edge over the baseline blurred by noise: positive on these rows, its interval reaches below 0."""
    edge = rows[M.BASELINE] + 0.5 * np.random.default_rng(6).random(len(rows)) + 0.1 * rows["y"]
    verdict = decide(rows, edge)
    low, high = verdict.gain_ci
    assert verdict.gain > 0 and low <= 0 < high, verdict
    assert verdict.decision == evaluate.NO_SKILL


def test_a_skilled_candidate_is_promoted_with_its_figures(rows):
    skilled = rows["y"] + np.random.default_rng(6).random(len(rows)) * 1.5
    verdict = decide(rows, skilled)
    assert verdict.decision == evaluate.PROMOTED and verdict.promoted
    assert 0 < verdict.gain_ci[0] <= verdict.gain <= verdict.gain_ci[1]
    assert verdict.gain == pytest.approx(verdict.candidate_pr_auc - verdict.baseline_pr_auc)
    assert verdict.rows == len(rows) and verdict.positive_rate == rows["y"].mean() and verdict.block_rows == 2 * H
    assert "no champion before" in verdict.reason and f"{verdict.gain:+.3f}" in verdict.reason
    # The figures travel as plain JSON (the Airflow XCom) and as version tags.
    assert json.loads(json.dumps(verdict.to_dict(), allow_nan=False))["gain_ci"] == list(verdict.gain_ci)
    tags = verdict.tags()
    assert tags["promotion.decision"] == "promoted" and tags["promotion.champion_version_before"] == "none"
    assert float(tags["promotion.gain_ci_low"]) == pytest.approx(verdict.gain_ci[0], abs=1e-6)
    assert float(tags["promotion.positive_rate"]) == pytest.approx(verdict.positive_rate, abs=1e-6)


def test_a_skilled_candidate_that_loses_to_the_champion_on_the_same_rows_is_not_promoted(rows):
    rng = np.random.default_rng(6)
    skilled = rows["y"] + rng.random(len(rows)) * 1.5
    sharper = rows["y"] + rng.random(len(rows))
    verdict = decide(rows, skilled, evaluate.Champion("4", sharper.to_numpy(), "re-scored"))
    assert verdict.decision == evaluate.KEPT_CHAMPION and verdict.gain_ci[0] > 0
    assert verdict.gain_over_champion < 0 and verdict.champion_pr_auc > verdict.candidate_pr_auc
    assert verdict.champion_version == "4" and "champion v4 kept" in verdict.reason
    # The same champion against a sharper candidate: it moves; a tie keeps it.
    assert decide(rows, sharper, evaluate.Champion("4", skilled.to_numpy(), "re-scored")).promoted
    tie = decide(rows, skilled, evaluate.Champion("4", skilled.to_numpy(), "re-scored"))
    assert tie.decision == evaluate.KEPT_CHAMPION and tie.gain_over_champion == 0


def test_a_champion_that_cannot_be_scored_does_not_stop_a_skilled_candidate(rows):
    skilled = rows["y"] + np.random.default_rng(6).random(len(rows)) * 1.5
    verdict = decide(rows, skilled, evaluate.Champion("2", None, "champion reads columns absent here: ['x']"))
    assert verdict.promoted and verdict.champion_pr_auc is None and verdict.gain_over_champion is None
    assert "champion v2 not comparable" in verdict.reason and verdict.note.startswith("champion reads")
    assert not decide(rows, rows[M.BASELINE], evaluate.Champion("2", None, "absent")).promoted


def test_the_gate_scores_rows_in_time_order(rows):
    """Shuffling the rows (with their scores) changes nothing: blocks are cut in exchange time."""
    skilled = rows["y"] + np.random.default_rng(6).random(len(rows)) * 1.5
    shuffled = np.random.default_rng(0).permutation(len(rows))
    straight = decide(rows, skilled)
    mixed = decide(rows.iloc[shuffled].reset_index(drop=True), skilled.to_numpy()[shuffled])
    assert mixed.gain_ci == straight.gain_ci and mixed.gain == pytest.approx(straight.gain)
