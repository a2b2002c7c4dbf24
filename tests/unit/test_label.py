"""Labels and splits on small hand-computed series (volpipe.modeling.label, no services)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from volpipe.modeling import label as L


def frame(products: dict[str, list[float]], shuffle: bool = True) -> pd.DataFrame:
    """Rows of several products; product p's i-th row has ingest_seq 10*i + offset, ts = ingest_seq."""
    rows = []
    for offset, (pid, returns) in enumerate(products.items()):
        for i, r in enumerate(returns):
            seq = 10 * i + offset
            rows.append({"product_id": pid, "ingest_seq": seq, "ticker_idx": 0, "exchange_ts_ns": seq,
                         "midprice_return": r, "rolling_vol": abs(r), "vol_300t": 0.5})
    out = pd.DataFrame(rows)
    return out.sample(frac=1.0, random_state=3) if shuffle else out


def test_forward_vol_is_the_population_std_of_the_next_h_returns_per_product():
    rows = L.order_rows(frame({"A": [0, 1, -1, 2, 0, 3], "B": [100, -100, 50, 7]}))
    vol = L.forward_vol(rows, horizon=2)
    a = rows["product_id"] == "A"
    # A: std([1,-1]) = 1, std([-1,2]) = 1.5, std([2,0]) = 1, std([0,3]) = 1.5, then incomplete.
    np.testing.assert_allclose(vol[a], [1.0, 1.5, 1.0, 1.5, np.nan, np.nan])
    # B never reads A's returns: std([-100,50]) = 75, std([50,7]) = 21.5.
    np.testing.assert_allclose(vol[~a], [75.0, 21.5, np.nan, np.nan])


def test_rows_are_ordered_by_ingest_seq_then_ticker_idx():
    rows = pd.DataFrame({"product_id": ["A"] * 4, "ingest_seq": [5, 5, 3, 9], "ticker_idx": [1, 0, 0, 0],
                         "exchange_ts_ns": [0, 0, 0, 0], "midprice_return": [3.0, 2.0, 1.0, 4.0]})
    ordered = L.order_rows(rows)
    assert ordered["midprice_return"].tolist() == [1.0, 2.0, 3.0, 4.0]
    np.testing.assert_allclose(L.forward_vol(ordered, 1), [0.0, 0.0, 0.0, np.nan])


def test_the_label_never_reads_the_rows_own_window():
    returns = [0.1, -0.2, 0.3, 0.05, -0.4, 0.2, 0.1, -0.1]
    base = L.forward_vol(L.order_rows(frame({"A": returns})), 3)
    for t in range(len(returns)):
        changed = list(returns)
        changed[: t + 1] = [9.0] * (t + 1)  # the row's own return and everything before it
        after = L.forward_vol(L.order_rows(frame({"A": changed})), 3)
        assert after[t] == base[t] or (np.isnan(after[t]) and np.isnan(base[t]))


def test_forward_labels_use_tau_and_incomplete_horizons_have_no_label():
    rows = L.order_rows(frame({"A": [0, 1, -1, 2, 0, 3]}))
    spec = L.LabelSpec(mode="forward", horizon=2)
    target = L.label_target(rows, spec)
    y = L.make_labels(rows, target, spec, tau=1.5)
    np.testing.assert_array_equal(y, [0.0, 1.0, 0.0, 1.0, np.nan, np.nan])


def test_relative_labels_compare_with_k_times_the_trailing_column():
    rows = L.order_rows(frame({"A": [0, 1, -1, 2, 0, 3]}))
    rows.loc[2, "vol_300t"] = np.nan
    spec = L.LabelSpec(mode="relative", horizon=2, relative_k=2.5, relative_column="vol_300t")
    # forward vols 1, 1.5, 1, 1.5 against 2.5 * 0.5 = 1.25; a null trailing vol gives no label.
    y = L.make_labels(rows, L.label_target(rows, spec), spec, tau=float("nan"))
    np.testing.assert_array_equal(y, [0.0, 1.0, np.nan, 1.0, np.nan, np.nan])


def test_current_labels_are_the_seeds_rolling_vol_threshold():
    rows = L.order_rows(frame({"A": [0, 1, -1, 2, 0, 3]}))
    spec = L.LabelSpec(mode="current", horizon=2)
    y = L.make_labels(rows, L.label_target(rows, spec), spec, tau=1.0)
    np.testing.assert_array_equal(y, [0.0, 1.0, 1.0, 1.0, 0.0, 1.0])  # rolling_vol = |r| here


def test_split_is_chronological_with_an_embargo_of_h_ticks_before_each_boundary():
    rows = L.order_rows(frame({"A": [0.0] * 10}, shuffle=False))
    rows["exchange_ts_ns"] = np.arange(10)
    split = L.chronological_split(rows, horizon=1)
    # Cuts at ts 6 (60%) and 8 (80%): row 5's window (row 6) is in validation, row 7's (row 8) in test.
    T, V, X, E = L.TRAIN, L.VALIDATION, L.TEST, L.EMBARGO
    assert split.tolist() == [T, T, T, T, T, E, V, E, X, X]


def test_no_label_window_of_a_split_reaches_the_next_across_products():
    rng = np.random.default_rng(0)
    rows = L.order_rows(frame({"A": list(rng.normal(size=200)), "B": list(rng.normal(size=150))}))
    h = 7
    split = L.chronological_split(rows, h)
    end = L.window_end_ts(rows, h)
    ts = rows["exchange_ts_ns"].to_numpy()
    for code, later in ((L.TRAIN, L.VALIDATION), (L.VALIDATION, L.TEST)):
        first_later = ts[split == later].min()
        assert end[split == code].max() < first_later
    assert (split == L.EMBARGO).sum() == 4 * h  # H rows per product at each of the two boundaries


def test_tau_does_not_move_when_test_rows_change():
    rng = np.random.default_rng(1)
    rows = L.order_rows(frame({"A": list(rng.normal(size=300))}, shuffle=False))
    spec = L.LabelSpec(horizon=5, quantile=0.9)
    split = L.chronological_split(rows, spec.horizon)
    tau = L.fit_tau(L.label_target(rows, spec), split == L.TRAIN, spec.quantile)
    changed = rows.copy()
    changed.loc[split == L.TEST, "midprice_return"] *= 100.0
    split2 = L.chronological_split(changed, spec.horizon)
    assert (split2 == split).all()
    assert L.fit_tau(L.label_target(changed, spec), split2 == L.TRAIN, spec.quantile) == tau


def test_a_bad_label_spec_is_rejected():
    with pytest.raises(ValueError, match="label mode"):
        L.LabelSpec(mode="future")
    with pytest.raises(ValueError, match="horizon"):
        L.LabelSpec(horizon=0)
