"""``probabilities`` and the ``LinearScorer``: the pipeline's own bits, the same bits in any batch,
through JSON (the stream's pin), and without scikit-learn in the scoring process."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from volpipe.modeling import models as M


@pytest.fixture(scope="module")
def frame() -> tuple[pd.DataFrame, np.ndarray]:
    """Heavy-tailed features with nulls in two columns (``trade_intensity`` is often null)."""
    rng = np.random.default_rng(5)
    n = 20_000
    x = pd.DataFrame({name: rng.lognormal(0, 2, n) * rng.choice([-1.0, 1.0], n) for name in M.LR_FEATURES})
    x.loc[rng.random(n) < 0.1, "trade_intensity"] = np.nan
    x.loc[rng.random(n) < 0.01, "spread"] = np.nan
    y = (x["rolling_vol"].abs() + rng.normal(0, 5, n) > 8).to_numpy(np.int64)
    return x, y


@pytest.fixture(scope="module")
def pipeline(frame):
    x, y = frame
    return M.fit(M.LOGISTIC, x, y, seed=0)


def bits(values: np.ndarray) -> np.ndarray:
    return np.asarray(values, np.float64).view(np.int64)


def test_the_linear_scorer_gives_the_pipelines_own_transform_bit_for_bit(frame, pipeline):
    from scipy.special import expit

    x, _ = frame
    scorer = M.LinearScorer.of(pipeline)
    transformed = np.ascontiguousarray(pipeline[:-1].transform(x), np.float64)
    linear = pipeline[-1]
    expected = expit(np.einsum("ij,j->i", transformed, linear.coef_[0]) + linear.intercept_[0])
    np.testing.assert_array_equal(bits(scorer.probabilities(x)), bits(expected))
    np.testing.assert_array_equal(bits(M.probabilities(pipeline, x)), bits(expected))
    # And what scikit-learn itself says, to rounding.
    np.testing.assert_allclose(scorer.probabilities(x), pipeline.predict_proba(x)[:, 1], rtol=1e-12)


def test_any_batch_and_a_json_round_trip_give_the_same_bits(frame, pipeline):
    x, _ = frame
    whole = M.probabilities(pipeline, x)
    again = M.LinearScorer.from_dict(json.loads(json.dumps(M.LinearScorer.of(pipeline).to_dict())))
    pieces = np.concatenate([again.probabilities(x.iloc[i : i + 7]) for i in range(0, len(x), 7)])
    np.testing.assert_array_equal(bits(pieces), bits(whole))


def test_other_models_score_with_predict_proba(frame, pipeline):
    x, y = frame
    assert (
        M.LinearScorer.of(
            M.fit(M.BOOSTING, x.assign(**{c: 0.0 for c in M.CHALLENGER_FEATURES if c not in x}), y, seed=0)
        )
        is None
    )
    from sklearn.pipeline import Pipeline

    without_scaler = Pipeline([pipeline.steps[0], pipeline.steps[2]])
    assert M.LinearScorer.of(without_scaler) is None
    np.testing.assert_array_equal(M.probabilities(without_scaler, x), without_scaler.predict_proba(x)[:, 1])


def test_a_column_without_a_median_is_not_compiled(frame):
    """The imputer drops a column it never saw a value of: the arrays would not line up."""
    x, y = frame
    with pytest.warns(UserWarning, match="without any observed values"):
        model = M.fit(M.LOGISTIC, x.assign(spread=np.nan), y, seed=0)
    assert M.LinearScorer.of(model) is None


def test_scoring_from_the_arrays_imports_no_scikit_learn(frame, pipeline):
    """What a stream worker does with a logistic-regression pin."""
    x, _ = frame
    fields = json.dumps(M.LinearScorer.of(pipeline).to_dict())
    code = (
        "import json, sys, numpy as np, pandas as pd\n"
        "from volpipe.modeling.models import LinearScorer, probabilities\n"
        f"scorer = LinearScorer.from_dict(json.loads({fields!r}))\n"
        f"x = pd.DataFrame(json.loads({x.head(50).to_json(orient='split')!r})['data'], columns={list(x.columns)!r})\n"
        "print(json.dumps(probabilities(scorer, x).tolist()))\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('sklearn', 'skops')))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.splitlines()
    expected = M.probabilities(
        pipeline, pd.DataFrame(json.loads(x.head(50).to_json(orient="split"))["data"], columns=list(x.columns))
    )
    np.testing.assert_array_equal(bits(json.loads(out[0])), bits(expected))
    assert out[1] == "[]"
