"""Synthetic rows and a stand-in champion for monitoring's tests and benchmarks (no Spark).

Outputs: seeded feature and prediction rows shaped like the ``features`` and ``predictions``
tables (random draws with the tables' columns, not the kernel's output: the drift reports need
regimes to tell apart, ``feature_rows(vol=...)``), and a champion registered in MLflow whose run
carries the reference-window params ``volpipe.monitoring.data`` reads. Write the rows to Delta
with ``volpipe.modeling.synthetic.write_features``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

from volpipe.config import Settings
from volpipe.features import FEATURE_COLUMNS
from volpipe.modeling import registry

T0_NS = 1_790_000_000 * 1_000_000_000  # 2026-09-21, an arbitrary UTC instant
TICK_NS = 100_000_000  # 10 ticks a second


def feature_rows(
    n: int,
    seed: int,
    *,
    start_ns: int = T0_NS,
    vol: float = 1.0,
    imbalance: float = 0.0,
    products: tuple[str, ...] = ("BTC-USD", "ETH-USD"),
) -> pd.DataFrame:
    """``n`` rows with every ``features`` column; ``vol`` scales the volatility regime, ``imbalance``
    shifts the book."""
    rng = np.random.default_rng(seed)
    sigma = np.exp(rng.normal(np.log(2e-4 * vol), 0.3, n))
    returns = rng.standard_t(4, n) * sigma / np.sqrt(2)
    return pd.DataFrame(
        {
            "product_id": np.array(products)[np.arange(n) % len(products)],
            "ingest_seq": np.arange(n, dtype=np.int64) + seed * 10_000_000,
            "ticker_idx": np.zeros(n, np.int64),
            "conn_id": "c1",
            "sequence_num": np.arange(n, dtype=np.int64),
            "exchange_ts_ns": start_ns + np.arange(n, dtype=np.int64) * TICK_NS,
            "recv_ns": start_ns + np.arange(n, dtype=np.int64) * TICK_NS + 5_000_000,
            "produced_ns": start_ns + np.arange(n, dtype=np.int64) * TICK_NS + 9_000_000,
            "midprice": 30_000 * np.exp(np.cumsum(returns)),
            "mid_fallback": rng.uniform(size=n) < 0.01,
            "spread": 0.01 * rng.integers(1, 4, n),
            "spread_bps": rng.gamma(2.0, 0.5, n),
            "midprice_return": returns,
            "rolling_vol": sigma,
            "trade_intensity": rng.gamma(5.0, 2.0, n),
            "vol_300t": sigma * np.exp(rng.normal(0, 0.1, n)),
            "ret_mean_30t": rng.normal(0, 1, n) * sigma / 5,
            "abs_ret_mean_60t": sigma * 0.8 * np.exp(rng.normal(0, 0.05, n)),
            "imbalance_1t": np.clip(rng.normal(imbalance, 0.4, n), -1, 1),
        }
    )


def prediction_rows(
    features: pd.DataFrame, seed: int, *, shift: float = 0.0, model_name: str = "m", model_version: str = "1"
) -> pd.DataFrame:
    """Scored rows for ``features`` in the ``predictions`` contract; ``shift`` moves the scores up."""
    rng = np.random.default_rng(seed)
    probability = np.clip(rng.beta(1.5, 12.0, len(features)) + shift, 0, 1)
    return pd.DataFrame(
        {
            "product_id": features["product_id"],
            "ingest_seq": features["ingest_seq"],
            "ticker_idx": features["ticker_idx"],
            "exchange_ts_ns": features["exchange_ts_ns"],
            "probability": probability,
            "predicted_label": (probability >= 0.2).astype(np.int64),
            "threshold": 0.2,
            "model_name": model_name,
            "model_version": model_version,
            "run_id": "r",
            "label_mode": "forward",
        }
    )


# The label the stand-in champion's run logs: rows are labelled by this definition (no label
# within the last HORIZON rows of a product).
HORIZON = 20
LABEL_PARAMS = {
    "label_mode": "relative",
    "horizon": str(HORIZON),
    "relative_k": "1.0",
    "relative_column": "rolling_vol",
}


def contract_params(
    start_ns: int,
    end_ns: int,
    columns: Sequence[str] = FEATURE_COLUMNS,
    products: Sequence[str] = ("BTC-USD", "ETH-USD"),
) -> dict[str, str]:
    """The params of a champion's run that monitoring reads: its training window, products, columns, label."""
    return {
        "train_start_ns": str(start_ns),
        "train_end_ns": str(end_ns),
        "products": ",".join(products),
        "feature_columns": ",".join(columns),
        **LABEL_PARAMS,
    }


def register_champion(settings: Settings, name: str, params: Mapping[str, str]) -> str:
    """Logs a run with ``params`` and a trivial sklearn model, registers it as ``name`` and makes it
    champion; returns the run id."""
    import mlflow
    from mlflow.tracking import MlflowClient
    from sklearn.linear_model import LogisticRegression

    mlflow.set_tracking_uri(settings.mlflow_tracking_uri)
    mlflow.set_experiment("monitoring-tests")
    X = pd.DataFrame({"rolling_vol": [1e-4, 2e-4, 3e-4, 4e-4], "imbalance_1t": [0.1, -0.2, 0.3, -0.4]})
    with mlflow.start_run() as run:
        mlflow.log_params(dict(params))
        # Requirements given, not inferred: inferring them costs seconds per model.
        info = mlflow.sklearn.log_model(
            LogisticRegression().fit(X, [0, 0, 1, 1]),
            name="model",
            registered_model_name=name,
            pip_requirements=["scikit-learn"],
        )
    MlflowClient(settings.mlflow_tracking_uri).set_registered_model_alias(
        name, registry.CHAMPION, info.registered_model_version
    )
    return run.info.run_id
