"""The three models, their metrics and their plots; shared by training and walk-forward evaluation.

Inputs: feature matrices (pandas, the columns below) and 0/1 labels. Outputs: fitted
scikit-learn estimators, scores (P(y=1) or, for the baseline, ``rolling_vol`` over the label's threshold),
metric dicts and matplotlib figures. scikit-learn and matplotlib are imported inside the
functions so that importing this module costs nothing.

* ``baseline``: the persistence baseline, "volatility persists": the label's own rule applied to
  the volatility of now instead of the next H ticks, y_hat = rolling_vol >= the row's label
  threshold (``THRESHOLD_COLUMN``: k x vol_300t, the trailing tau_t or the fitted tau).
  Its PR-AUC score is rolling_vol / threshold. Under a fixed tau that ranks as ``rolling_vol``
  alone; under a per-row threshold, ranking by ``rolling_vol`` alone would be a straw man (it
  ignores the very level the label compares with), so the models are held to the stronger rule.
* ``logistic_regression``: ``max_iter=1000``, ``class_weight="balanced"``, standardised, on four
  kernel columns; a median imputer first, because ``trade_intensity`` is null when ticks share a
  timestamp.
* ``hist_gradient_boosting``: the challenger, on every kernel feature except the price level
  ``midprice`` (non-stationary: it would learn the period, not the market state), plus two
  scale-free ratios it computes itself (``ratio_columns``). Small, slow trees: tuned on the
  early walk-forward folds of real and synthetic data (``bench/tune_challenger.py``,
  docs/modeling.md "Tuning the challenger").
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any

import numpy as np
import pandas as pd

# The column labelled rows carry beside ``y`` (``label.labels_and_thresholds``): the threshold each
# row's forward volatility was compared with. The persistence baseline compares today's volatility with it.
THRESHOLD_COLUMN = "label_threshold"
BASELINE, LOGISTIC, BOOSTING = "baseline", "logistic_regression", "hist_gradient_boosting"
MODEL_NAMES = (BASELINE, LOGISTIC, BOOSTING)
BASELINE_FEATURES = ("rolling_vol",)
LR_FEATURES = ("midprice_return", "rolling_vol", "spread", "trade_intensity")
CHALLENGER_FEATURES = (
    "midprice_return",
    "rolling_vol",
    "spread",
    "spread_bps",
    "trade_intensity",
    "vol_300t",
    "ret_mean_30t",
    "abs_ret_mean_60t",
    "imbalance_1t",
)
# What each model reads from a feature row (the challenger derives RATIO_FEATURES from these).
FEATURES = {BASELINE: BASELINE_FEATURES, LOGISTIC: LR_FEATURES, BOOSTING: CHALLENGER_FEATURES}
ALL_FEATURES = tuple(dict.fromkeys((*LR_FEATURES, *CHALLENGER_FEATURES)))
RATIO_FEATURES = ("rolling_vol_to_300t", "abs_ret_60t_to_300t")
# The challenger's hyperparameters, chosen by bench/tune_challenger.py on the early folds only.
# Early stopping would hold out a random (not chronological) slice: off, fixed iterations.
BOOSTING_PARAMS = {
    "max_iter": 50,
    "learning_rate": 0.1,
    "max_leaf_nodes": 7,
    "min_samples_leaf": 500,
    "l2_regularization": 1.0,
    "early_stopping": False,
}


def ratio_columns(x: pd.DataFrame) -> dict[str, np.ndarray]:
    """The challenger's two scale-free features (``RATIO_FEATURES``): the recent volatility
    (``rolling_vol``, the last W returns; ``abs_ret_mean_60t``) over the last 300 returns'
    (``vol_300t``).

    Why: the default label asks whether the next minute is extreme *for the product's recent past*,
    and ratios keep their values when the market's whole volatility level doubles, where levels
    leave the range the trees were fitted on. NaN exactly where ``vol_300t`` is null (fewer than
    300 returns; the trees route NaN on their own); 1 where it is 0 (300 equal returns: the recent
    ones are no different). Element-wise: a row's ratios are the same bits in any batch.
    """
    slow = x["vol_300t"].to_numpy(np.float64, na_value=np.nan)
    positive = slow > 0
    denominator = np.where(positive, slow, 1.0)
    return {
        ratio: np.where(
            positive, x[column].to_numpy(np.float64, na_value=np.nan) / denominator, np.where(slow == 0, 1.0, np.nan)
        )
        for ratio, column in zip(RATIO_FEATURES, ("rolling_vol", "abs_ret_mean_60t"), strict=True)
    }


def with_ratios(x: pd.DataFrame) -> np.ndarray:
    """The challenger's first step: ``x``'s columns, then ``ratio_columns``, as one float64 array.

    An array, not a frame: scikit-learn's trees check a frame's column names on every call, which
    made scoring one row cost 5.5 ms against 0.55 ms for the array (bench/scoring_cost.py).
    """
    return np.column_stack([x.to_numpy(np.float64, na_value=np.nan), *ratio_columns(x).values()])


class Baseline:
    """The persistence baseline: score = rolling_vol / the row's label threshold, y_hat = score >= 1.
    Nothing to fit: the rule is the label's own."""

    threshold = 1.0

    def fit(self, x: pd.DataFrame, y: np.ndarray) -> Baseline:  # x, y unused: same interface as the models
        return self

    def hyperparameters(self) -> dict[str, Any]:
        return {"score": f"rolling_vol / {THRESHOLD_COLUMN}", "threshold": self.threshold}


def build(name: str, seed: int) -> Any:
    """An unfitted model ``name`` (one of ``MODEL_NAMES``), seeded."""
    if name == BASELINE:
        return Baseline()
    from sklearn.impute import SimpleImputer
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import StandardScaler

    if name == LOGISTIC:
        from sklearn.linear_model import LogisticRegression

        return Pipeline(
            [
                ("impute", SimpleImputer(strategy="median")),
                ("scale", StandardScaler()),
                ("model", LogisticRegression(max_iter=1000, class_weight="balanced", random_state=seed)),
            ]
        )
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.preprocessing import FunctionTransformer

    return Pipeline(
        [
            ("ratios", FunctionTransformer(with_ratios)),
            ("model", HistGradientBoostingClassifier(**BOOSTING_PARAMS, random_state=seed)),
        ]
    )


def hyperparameters(name: str, model: Any) -> dict[str, Any]:
    """The parameters worth logging for ``model``."""
    if name == BASELINE:
        return model.hyperparameters()
    if name == LOGISTIC:
        lr = model.named_steps["model"]
        return {
            "max_iter": lr.max_iter,
            "class_weight": lr.class_weight,
            "C": lr.C,
            "imputer": "median",
            "scaler": "standard",
        }
    params = model.named_steps["model"].get_params()
    return {
        **{key: params[key] for key in (*BOOSTING_PARAMS, "random_state")},
        "derived_features": ",".join(RATIO_FEATURES),
    }


def single_threaded() -> Any:
    """A context limiting OpenMP/BLAS to one thread.

    Why: on two cores shared with Spark and other jobs, the boosting model's OpenMP threads
    spin against each other: fitting 60k rows took 38 s with the default pool, 1.7 s with one.
    """
    from threadpoolctl import threadpool_limits

    return threadpool_limits(limits=1)


def fit(name: str, x: pd.DataFrame, y: np.ndarray, seed: int) -> Any:
    """Fits model ``name`` on its own feature columns of ``x``."""
    with single_threaded():
        return build(name, seed).fit(x[list(FEATURES[name])], y.astype(np.int64))


def score(name: str, model: Any, x: pd.DataFrame) -> np.ndarray:
    """Ranking score of each row: P(y=1) for the models, rolling_vol over the row's label threshold
    for the baseline (``x`` labelled: it carries ``THRESHOLD_COLUMN``)."""
    if name == BASELINE:
        return x["rolling_vol"].to_numpy(np.float64) / x[THRESHOLD_COLUMN].to_numpy(np.float64)
    return probabilities(model, x[list(FEATURES[name])])


def probabilities(model: Any, x: pd.DataFrame) -> np.ndarray:
    """P(y=1) of each row of ``x`` (the model's columns), the same bits whatever rows come with it.

    ``model``: a fitted estimator or its ``LinearScorer``. Batch and live scoring both call this;
    a logistic-regression pipeline always scores through its ``LinearScorer``, so whichever of the
    two a path holds, the bits are the same. The boosting model's trees are per row already.
    """
    linear = model if isinstance(model, LinearScorer) else LinearScorer.of(model)
    if linear is not None:
        return linear.probabilities(x)
    _single_threaded_process()
    return model.predict_proba(x)[:, 1]


@dataclasses.dataclass(frozen=True, eq=False)
class LinearScorer:
    """The logistic-regression pipeline ``build`` makes (median imputer, standard scaler, binary
    logistic regression), fitted, as its arrays.

    Why: scoring with it needs NumPy and ``scipy.special`` only. A stream worker that loaded the
    pipeline itself first imported scikit-learn and skops, seconds of CPU per worker on the
    stream's first micro-batch (docs/streaming.md). ``probabilities`` does what the pipeline's
    steps do, in the same floating-point operations: NaN -> the median, ``(x - mean) / scale``
    (``StandardScaler.transform``), then the decision function with ``einsum``, not
    ``predict_proba``'s BLAS product, whose summation order depends on the number of rows
    (2,000 of 20,000 rows differed in the last bit between batch sizes).
    """

    fill: np.ndarray
    mean: np.ndarray
    scale: np.ndarray
    coef: np.ndarray
    intercept: float

    @classmethod
    def of(cls, model: Any) -> LinearScorer | None:
        """``model``'s arrays, or None when it is not such a pipeline (it then scores with ``predict_proba``)."""
        if len(getattr(model, "steps", ())) != 3:  # not a three-step pipeline: no scikit-learn import needed
            return None
        from sklearn.impute import SimpleImputer
        from sklearn.linear_model import LogisticRegression
        from sklearn.preprocessing import StandardScaler

        impute, scale, linear = (step for _, step in model.steps)
        if not (type(impute) is SimpleImputer and type(scale) is StandardScaler and type(linear) is LogisticRegression):
            return None
        fills_nan = isinstance(impute.missing_values, float) and np.isnan(impute.missing_values)
        # A column with no value in training has no median: the imputer drops it. Not ours to mimic.
        if not (
            fills_nan
            and not impute.add_indicator
            and np.isfinite(impute.statistics_).all()
            and scale.with_mean
            and scale.with_std
            and linear.coef_.shape[0] == 1
        ):
            return None
        return cls(
            np.array(impute.statistics_, np.float64),
            np.array(scale.mean_, np.float64),
            np.array(scale.scale_, np.float64),
            np.array(linear.coef_[0], np.float64),
            float(linear.intercept_[0]),
        )

    def to_dict(self) -> dict[str, Any]:
        """Plain lists and floats, for JSON (``repr`` of a float round-trips exactly)."""
        return {field.name: np.asarray(getattr(self, field.name)).tolist() for field in dataclasses.fields(self)}

    @classmethod
    def from_dict(cls, fields: dict[str, Any]) -> LinearScorer:
        values: dict[str, Any] = {
            name: np.array(value, np.float64) if isinstance(value, list) else float(value)
            for name, value in fields.items()
        }
        return cls(**values)

    def probabilities(self, x: pd.DataFrame) -> np.ndarray:
        """P(y=1) of each row of ``x`` (the pipeline's columns, in its order)."""
        from scipy.special import expit

        values = x.to_numpy(np.float64, na_value=np.nan, copy=True)
        missing = np.isnan(values)
        values[missing] = np.broadcast_to(self.fill, values.shape)[missing]
        standardised = np.ascontiguousarray((values - self.mean) / self.scale)
        return expit(np.einsum("ij,j->i", standardised, self.coef) + self.intercept)


@functools.cache
def _single_threaded_process() -> None:
    """One OpenMP/BLAS thread for the rest of this process (a scoring process: a Spark worker,
    a training task). Entering ``single_threaded`` per call cost 4 ms, most of a small batch's
    scoring time (bench/scoring_cost.py)."""
    from threadpoolctl import threadpool_limits

    threadpool_limits(limits=1)


def decide(probability: np.ndarray, threshold: float) -> np.ndarray:
    """The predicted label of each probability: 1 at or above the decision threshold."""
    return (np.asarray(probability) >= threshold).astype(np.int32)


def f1_threshold(y: np.ndarray, scores: np.ndarray) -> float:
    """The score threshold that maximises F1 on (y, scores): the models' decision threshold."""
    from sklearn.metrics import precision_recall_curve

    precision, recall, thresholds = precision_recall_curve(y, scores)
    f1 = 2 * precision[:-1] * recall[:-1] / np.maximum(precision[:-1] + recall[:-1], 1e-12)
    return float(thresholds[int(np.argmax(f1))])


def ranked_last(scores: np.ndarray) -> np.ndarray:
    """The scores with NaN replaced by a finite value below every score (scikit-learn's curves refuse
    NaN and infinities): an unscored row ranks lowest."""
    scores = np.asarray(scores, np.float64)
    finite = scores[np.isfinite(scores)]
    return np.nan_to_num(scores, nan=(finite.min() - 1.0) if len(finite) else 0.0)


def pr_auc(y: np.ndarray, scores: np.ndarray) -> float:
    """Average precision, the primary metric (NaN scores rank lowest)."""
    from sklearn.metrics import average_precision_score

    return float(average_precision_score(y, ranked_last(scores)))


def metrics(y: np.ndarray, scores: np.ndarray, threshold: float) -> dict[str, float]:
    """PR-AUC, ROC-AUC, and F1/precision/recall at ``threshold``, positive rate and rows."""
    from sklearn.metrics import f1_score, precision_score, recall_score, roc_auc_score

    clean = np.nan_to_num(scores, nan=-np.inf)
    predicted = (clean >= threshold).astype(np.int64)
    y = y.astype(np.int64)
    return {
        "pr_auc": pr_auc(y, scores),
        "roc_auc": float(roc_auc_score(y, np.nan_to_num(scores, nan=np.nanmin(scores)))),
        "f1": float(f1_score(y, predicted, zero_division=0)),
        "precision": float(precision_score(y, predicted, zero_division=0)),
        "recall": float(recall_score(y, predicted, zero_division=0)),
        "positive_rate": float(y.mean()),
        "rows": float(len(y)),
    }


def pr_curve_figure(curves: dict[str, tuple[np.ndarray, np.ndarray]], title: str):
    """Precision-recall curves of several (y, scores) pairs, with each one's positive rate."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from sklearn.metrics import precision_recall_curve

    fig, ax = plt.subplots(figsize=(6, 4.5))
    for label, (y, s) in curves.items():
        precision, recall, _ = precision_recall_curve(y, ranked_last(s))
        ax.plot(recall, precision, label=f"{label} (AP {pr_auc(y, s):.3f})")
        ax.axhline(y.mean(), linestyle=":", linewidth=0.8, color=ax.lines[-1].get_color())
    ax.set(xlabel="recall", ylabel="precision", title=title, xlim=(0, 1), ylim=(0, 1.02))
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def calibration_figure(y: np.ndarray, probabilities: np.ndarray, title: str):
    """Reliability diagram (10 quantile bins) of predicted P(y=1) against the observed rate."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from sklearn.calibration import calibration_curve

    observed, predicted = calibration_curve(y, probabilities, n_bins=10, strategy="quantile")
    fig, ax = plt.subplots(figsize=(4.5, 4.5))
    ax.plot([0, 1], [0, 1], linestyle=":", color="grey")
    ax.plot(predicted, observed, marker="o")
    ax.set(xlabel="mean predicted probability", ylabel="observed positive rate", title=title)
    fig.tight_layout()
    return fig


def importance_figure(name: str, model: Any, x: pd.DataFrame, y: np.ndarray, seed: int):
    """LR: standardised coefficients. Boosting: permutation importance (PR-AUC drop) on <= 5,000 rows."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    columns = list(FEATURES[name])
    if name == LOGISTIC:
        values, xlabel = model.named_steps["model"].coef_[0], "coefficient (standardised features)"
    else:
        from sklearn.inspection import permutation_importance

        take = np.random.default_rng(seed).permutation(len(y))[:5000]
        with single_threaded():
            result = permutation_importance(
                model, x[columns].iloc[take], y[take], scoring="average_precision", n_repeats=3, random_state=seed
            )
        values, xlabel = result.importances_mean, "PR-AUC drop when permuted (validation)"
    fig, ax = plt.subplots(figsize=(6, 0.35 * len(columns) + 1.2))
    ax.barh(columns, values)
    ax.set(xlabel=xlabel, title=name)
    fig.tight_layout()
    return fig
