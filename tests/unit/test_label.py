"""Labels, gap rules, splits and the label's flags on small series (volpipe.modeling.label, no services)."""

from __future__ import annotations

import argparse
import dataclasses

import numpy as np
import pandas as pd
import pytest

from volpipe.config import Settings
from volpipe.modeling import evaluate, train
from volpipe.modeling import label as L

SECOND = 1_000_000_000


def frame(products: dict[str, list[float]], shuffle: bool = True) -> pd.DataFrame:
    """Rows of several products; product p's i-th row has ingest_seq 10*i + offset, ts = ingest_seq
    (nanoseconds: no silence anywhere) and a ``trade_intensity`` of 5 ticks a second."""
    rows = []
    for offset, (pid, returns) in enumerate(products.items()):
        for i, r in enumerate(returns):
            seq = 10 * i + offset
            rows.append(
                {
                    "product_id": pid,
                    "ingest_seq": seq,
                    "ticker_idx": 0,
                    "exchange_ts_ns": seq,
                    "midprice_return": r,
                    "rolling_vol": abs(r),
                    "vol_300t": 0.5,
                    "trade_intensity": 5.0,
                }
            )
    out = pd.DataFrame(rows)
    return out.sample(frac=1.0, random_state=3) if shuffle else out


def clustered_returns(n: int, seed: int, levels: tuple[float, float] = (1.0, 1.0)) -> list[float]:
    """Returns with clustered volatility (AR(1) log-volatility), ~70% of them zero like real ticks and
    fat-tailed, whose level is ``levels[0]`` for the first 70% of the rows and ``levels[1]`` after."""
    from scipy.signal import lfilter

    rng = np.random.default_rng(seed)
    log_vol = lfilter([1.0], [1.0, -0.995], rng.normal(0.0, 0.08, n))
    level = np.where(np.arange(n) < int(n * 0.7), levels[0], levels[1])
    moves = rng.random(n) < 0.3
    return list(np.where(moves, level * np.exp(log_vol) * rng.standard_t(4, n), 0.0))


def split_positive_rates(rows: pd.DataFrame, spec: L.LabelSpec) -> dict[str, float]:
    """Positive rate of the train and test splits, labelled as training labels them."""
    split = L.chronological_split(rows, spec.horizon)
    target = L.label_target(rows, spec)
    y = L.make_labels(rows, target, spec, L.training_tau(target, split == L.TRAIN, spec))
    return {name: float(np.nanmean(y[split == code])) for code, name in ((L.TRAIN, "train"), (L.TEST, "test"))}


def test_forward_vol_is_the_population_std_of_the_next_h_returns_per_product():
    rows = L.order_rows(frame({"A": [0, 1, -1, 2, 0, 3], "B": [100, -100, 50, 7]}))
    vol = L.forward_vol(rows, horizon=2)
    a = rows["product_id"] == "A"
    # A: std([1,-1]) = 1, std([-1,2]) = 1.5, std([2,0]) = 1, std([0,3]) = 1.5, then incomplete.
    np.testing.assert_allclose(vol[a], [1.0, 1.5, 1.0, 1.5, np.nan, np.nan])
    # B never reads A's returns: std([-100,50]) = 75, std([50,7]) = 21.5.
    np.testing.assert_allclose(vol[~a], [75.0, 21.5, np.nan, np.nan])


def test_rows_are_ordered_by_ingest_seq_then_ticker_idx():
    rows = pd.DataFrame(
        {
            "product_id": ["A"] * 4,
            "ingest_seq": [5, 5, 3, 9],
            "ticker_idx": [1, 0, 0, 0],
            "exchange_ts_ns": [0, 0, 0, 0],
            "midprice_return": [3.0, 2.0, 1.0, 4.0],
        }
    )
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
    rows = L.order_rows(frame({"A": clustered_returns(3_000, seed=1)}, shuffle=False))
    spec = L.LabelSpec(mode="forward", horizon=5, quantile=0.9)
    prepared = train.prepare(rows, spec, min_rows=100)
    changed = rows.copy()
    test_rows = changed["exchange_ts_ns"] >= prepared.bounds["test"]["start_ns"]
    changed.loc[test_rows, "midprice_return"] *= 100.0
    again = train.prepare(changed, spec, min_rows=100)
    assert again.tau == prepared.tau
    pd.testing.assert_frame_equal(again.splits["train"], prepared.splits["train"])
    # The change did reach the test split's labels: nearly every test row now exceeds tau.
    assert again.splits["test"]["y"].mean() > 0.5 > prepared.splits["test"]["y"].mean()


def test_a_bad_label_spec_is_rejected():
    with pytest.raises(ValueError, match="label mode"):
        L.LabelSpec(mode="future")
    with pytest.raises(ValueError, match="horizon"):
        L.LabelSpec(horizon=0)
    with pytest.raises(ValueError, match="max gap"):
        L.LabelSpec(max_gap_seconds=0)


def test_the_trailing_tau_is_the_quantile_of_forward_vols_whose_windows_closed_and_never_reads_later_rows():
    rng = np.random.default_rng(7)
    rows = L.order_rows(frame({"A": list(rng.normal(size=400)), "B": list(rng.normal(size=300))}))
    spec = L.LabelSpec(mode="trailing", horizon=5, quantile=0.8, trailing_rows=40)
    target = L.label_target(rows, spec)
    tau = L.trailing_tau(rows, target, spec)
    a = np.flatnonzero(rows["product_id"] == "A")
    # By hand: row t of A reads the forward vols of A's rows t-44 .. t-5, and needs 20 of them.
    for t in (24, 25, 44, 45, 200, 399):
        window = target[a[max(0, t - 44) : t - 4]]
        expected = np.quantile(window, 0.8) if len(window) >= 20 else np.nan
        np.testing.assert_allclose(tau[a[t]], expected, err_msg=f"row {t}")
    assert np.isnan(tau[a[:24]]).all() and np.isfinite(tau[a[24:]]).all()
    b = (rows["product_id"] == "B").to_numpy()
    for t in (30, 120, 398):
        changed = rows.copy()
        later = a[t + 1 :]
        changed.loc[later, "midprice_return"] = rng.normal(size=len(later)) * 50.0
        changed.loc[later, "exchange_ts_ns"] += 3_600 * SECOND  # and an hour's silence after row t
        moved = L.trailing_tau(changed, L.label_target(changed, spec), spec)
        np.testing.assert_array_equal(moved[a[: t + 1]], tau[a[: t + 1]])
        np.testing.assert_array_equal(moved[b], tau[b])


@pytest.mark.parametrize("factor", [2.0, 0.5])
def test_the_trailing_labels_positive_rate_survives_a_volatility_level_shift_that_breaks_a_fixed_tau(factor):
    rows = L.order_rows(frame({"A": clustered_returns(30_000, seed=5, levels=(1.0, factor))}, shuffle=False))
    trailing = split_positive_rates(rows, L.LabelSpec(mode="trailing"))
    assert 0.5 <= trailing["test"] / trailing["train"] <= 2.0, trailing
    fixed = split_positive_rates(rows, L.LabelSpec(mode="forward"))
    assert not 0.5 <= fixed["test"] / fixed["train"] <= 2.0, fixed  # the level did move: a fixed tau breaks


def gap_rows(gap_seconds: float) -> pd.DataFrame:
    """800 rows of A, 0.2 s apart but ``gap_seconds`` more before row 400; 800 rows of B, 0.2 s apart."""
    rng = np.random.default_rng(3)
    parts = []
    for k, pid in enumerate(("A", "B")):
        ts = np.arange(800) * SECOND // 5 + k
        if pid == "A":
            ts[400:] += int(gap_seconds * SECOND)
        parts.append(
            pd.DataFrame(
                {
                    "product_id": pid,
                    "ingest_seq": np.arange(800) * 2 + k,
                    "ticker_idx": 0,
                    "exchange_ts_ns": ts,
                    "midprice_return": rng.normal(size=800),
                    "rolling_vol": 1.0,
                    "vol_300t": 1.0,
                    "trade_intensity": 5.0,
                }
            )
        )
    return L.order_rows(pd.concat(parts))


def test_a_label_window_across_a_long_silence_and_the_rows_right_after_it_get_no_label():
    rows = gap_rows(40.0)
    spec = L.LabelSpec(mode="forward", horizon=60, max_gap_seconds=30.0, window=60)
    a = (rows["product_id"] == "A").to_numpy()
    spans = L.window_spans_gap(rows, spec)
    assert np.flatnonzero(spans[a]).tolist() == list(range(340, 400))  # windows t .. t+60 that hold row 400
    flagged = L.after_gap(rows, spec)
    assert np.flatnonzero(flagged[a]).tolist() == list(range(400, 700))  # vol_300t reads the jump for 300 rows
    assert not spans[~a].any() and not flagged[~a].any()  # B's ticks never stopped
    y = L.labels_as_trained(rows, spec, tau=0.5)
    assert np.flatnonzero(np.isnan(y[a])).tolist() == list(range(340, 700)) + list(range(740, 800))
    assert np.flatnonzero(np.isnan(y[~a])).tolist() == list(range(740, 800))  # incomplete horizons only
    # A silence within the limit is an ordinary quiet spell.
    relaxed = dataclasses.replace(spec, max_gap_seconds=50.0)
    assert not L.window_spans_gap(rows, relaxed).any() and not L.after_gap(rows, relaxed).any()


def test_at_the_start_of_the_rows_read_a_silence_hidden_before_them_is_told_by_trade_intensity():
    rows = gap_rows(0.0)
    spec = L.LabelSpec(mode="forward", horizon=60, max_gap_seconds=30.0, window=60)
    assert not L.after_gap(rows, spec).any()  # 60 returns at 5 a second: the unseen part spans < 12 s
    b = (rows["product_id"] == "B").to_numpy()
    rows.loc[np.flatnonzero(b)[0], "trade_intensity"] = 60 / 45.0  # its 60 returns took 45 s
    flagged = L.after_gap(rows, spec)
    assert np.flatnonzero(flagged[b]).tolist() == list(range(300)) and not flagged[~b].any()


def test_the_labels_defaults_are_the_settings_defaults():
    assert L.label_spec(Settings.from_env({})) == L.LabelSpec()


@pytest.mark.parametrize("mode", ["trailing", "forward", "relative", "current"])
def test_a_logged_definition_reads_back_the_spec_that_trained(mode):
    spec = L.LabelSpec(
        mode=mode,
        horizon=7,
        quantile=0.9,
        relative_k=2.5,
        relative_column="rolling_vol",
        trailing_rows=123,
        max_gap_seconds=12.5,
        window=30,
    )
    logged = {key: str(value) for key, value in L.definition_params(spec).items()} | {"tau": "0.25"}
    read, tau = L.logged_definition(logged, L.LabelSpec())
    assert tau == 0.25
    # Every field the mode reads comes back; the others may keep the fallback's value.
    unused = {"relative": {"trailing_rows"}, "trailing": {"relative_k", "relative_column"}}.get(
        mode, {"trailing_rows", "relative_k", "relative_column"}
    )
    for field in dataclasses.fields(L.LabelSpec):
        if field.name not in unused:
            assert getattr(read, field.name) == getattr(spec, field.name), field.name


@pytest.mark.parametrize("cli", [train, evaluate], ids=["train", "evaluate"])
def test_train_and_evaluate_take_every_label_setting_as_a_flag(cli, capsys):
    with pytest.raises(SystemExit):
        cli.main(["--help"])
    usage = capsys.readouterr().out
    label_variables = {f.metadata["env"] for f in dataclasses.fields(Settings) if f.name.startswith("label_")}
    flags = {
        "--label-mode": "LABEL_MODE",
        "--horizon": "LABEL_HORIZON",
        "--quantile": "LABEL_QUANTILE",
        "--relative-k": "LABEL_RELATIVE_K",
        "--relative-column": "LABEL_RELATIVE_COLUMN",
        "--trailing-rows": "LABEL_TRAILING_ROWS",
        "--max-gap-seconds": "LABEL_MAX_GAP_SECONDS",
    }
    for flag, variable in flags.items():
        assert flag in usage and variable in usage, flag
    assert label_variables == set(flags.values()), "a label setting without a flag"


def test_label_flags_override_the_environment():
    parser = argparse.ArgumentParser()
    L.add_arguments(parser)
    args = parser.parse_args(["--trailing-rows", "500", "--max-gap-seconds", "7.5", "--relative-k", "3"])
    settings = Settings.from_env({"LABEL_TRAILING_ROWS": "900", "LABEL_HORIZON": "30"}, **L.overrides(args))
    spec = L.label_spec(settings)
    assert (spec.trailing_rows, spec.max_gap_seconds, spec.relative_k, spec.horizon) == (500, 7.5, 3.0, 30)
