"""The feature kernel against hand-computed values, the dedupe rules, and chunking parity."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from volpipe.features import FEATURE_COLUMNS, WindowState, featurize_frame, history_length

NAN = float("nan")


def frame(mids=None, *, bids=None, asks=None, prices=None, ts=None, seqs=None, conns=None, product="BTC-USD"):
    """Rows of one product; by default a clean book with spread 2 around each mid."""
    n = len(mids if mids is not None else prices)
    bids = bids if bids is not None else [m - 1 for m in mids]
    asks = asks if asks is not None else [m + 1 for m in mids]
    return pd.DataFrame(
        {
            "product_id": product,
            "ingest_seq": np.arange(n, dtype=np.int64) if seqs is None else np.array(seqs, np.int64),
            "ticker_idx": np.zeros(n, np.int64),
            "conn_id": conns or ["c1"] * n,
            "sequence_num": np.arange(n, dtype=np.int64) + 10,
            "exchange_ts_ns": np.array(ts if ts is not None else [i * 500_000_000 for i in range(n)], np.int64),
            "recv_ns": np.arange(n, dtype=np.int64) + 7,
            "event_type": "update",
            "price": prices if prices is not None else [m + 0.5 for m in mids],
            "best_bid": bids,
            "best_ask": asks,
            "best_bid_quantity": [1.0] * n,
            "best_ask_quantity": [3.0] * n,
        }
    )


def test_hand_computed_window_of_two():
    out, state = featurize_frame(frame([100.0, 101.0, 100.0, 102.0]), WindowState(), window=2)
    a, b, c = 101 / 100 - 1, 100 / 101 - 1, 102 / 100 - 1
    assert list(out["ready"]) == [False, False, True, True]
    assert math.isnan(out["midprice_return"][0])
    assert out["midprice_return"][1:].tolist() == pytest.approx([a, b, c], rel=1e-15)
    for row, (x, y) in ((2, (a, b)), (3, (b, c))):
        mean = (x + y) / 2
        assert out["rolling_vol"][row] == pytest.approx(math.sqrt(((x - mean) ** 2 + (y - mean) ** 2) / 2), rel=1e-12)
    assert np.isnan(out["rolling_vol"][:2]).all()
    # 2 returns between ticks 0.5 s apart: 2 ticks / 1.0 s.
    assert out["trade_intensity"][2:].tolist() == [2.0, 2.0]
    assert out["spread"].tolist() == [2.0] * 4
    assert out["spread_bps"][0] == pytest.approx(2 / 100 * 1e4)
    assert out["imbalance_1t"].tolist() == [-0.5] * 4
    assert not out["mid_fallback"].any()
    assert state.mids.tolist() == [100.0, 101.0, 100.0, 102.0]
    assert (state.last_ingest_seq, state.last_conn_id, state.max_sequence_num) == (3, "c1", 13)


def test_fallback_on_missing_crossed_or_non_positive_book():
    rows = frame(prices=[50.0, 60.0, 70.0, 80.0], bids=[NAN, 61.0, 0.0, 79.0], asks=[51.0, 60.5, 71.0, 81.0])
    out, _ = featurize_frame(rows, WindowState(), window=1)
    assert out["mid_fallback"].tolist() == [True, True, True, False]
    assert out["midprice"].tolist() == [50.0, 60.0, 70.0, 80.0]
    assert out["spread"].tolist() == [0.0, 0.0, 0.0, 2.0]
    assert out["spread_bps"][:3].tolist() == [0.0, 0.0, 0.0]


def test_equal_timestamps_give_null_intensity_and_first_w_ticks_no_features():
    out, _ = featurize_frame(frame([10.0, 11.0, 12.0, 13.0], ts=[5, 5, 5, 9]), WindowState(), window=2)
    assert out["ready"].tolist() == [False, False, True, True]
    assert math.isnan(out["trade_intensity"][2])  # ticks 0..2 share one timestamp
    assert out["trade_intensity"][3] == 2 / (4 / 1e9)
    assert np.isnan(out["vol_300t"]).all()  # the extra window needs 300 returns


def test_redelivered_and_repeated_rows_are_dropped():
    _first, state = featurize_frame(frame([10.0, 11.0, 12.0]), WindowState(), window=1)
    again = frame([10.0, 11.0, 12.0, 13.0, 14.0])  # keys 0..2 redelivered, 3..4 new
    again.loc[4, "sequence_num"] = 12  # same connection, sequence already accepted: an exchange repeat
    out, state = featurize_frame(again, state, window=1)
    assert out["ingest_seq"].tolist() == [3]
    assert out["midprice_return"][0] == 13.0 / 12.0 - 1
    # A new connection restarts the sequence: its sequence 0 is accepted.
    fresh = frame([20.0], seqs=[9], conns=["c2"])
    fresh["sequence_num"] = 0
    out, state = featurize_frame(fresh, state, window=1)
    assert out["ingest_seq"].tolist() == [9] and state.last_conn_id == "c2"


def test_rows_are_sorted_by_ordering_key_and_in_batch_duplicates_dropped():
    rows = frame([1.0, 2.0, 3.0, 4.0])
    shuffled = pd.concat([rows.iloc[[3, 1]], rows.iloc[[0, 2, 1]]])
    out, _ = featurize_frame(shuffled, WindowState(), window=1)
    assert out["ingest_seq"].tolist() == [0, 1, 2, 3]


def test_state_keeps_only_the_needed_history():
    _, state = featurize_frame(frame([float(100 + i % 7) for i in range(500)]), WindowState(), window=60)
    assert len(state.mids) == len(state.ts_ns) == history_length(60) == 301


def test_matches_a_plain_numpy_reference():
    rng = np.random.default_rng(3)
    mids = (100 + np.cumsum(rng.normal(0, 0.1, 400))).tolist()
    out, _ = featurize_frame(frame(mids), WindowState(), window=20)
    ret = np.array(mids[1:]) / np.array(mids[:-1]) - 1
    np.testing.assert_allclose(out["rolling_vol"][20:], [np.std(ret[i - 20 : i]) for i in range(20, 400)], rtol=1e-9)
    np.testing.assert_allclose(out["vol_300t"][300:], [np.std(ret[i - 300 : i]) for i in range(300, 400)], rtol=1e-9)
    np.testing.assert_allclose(out["ret_mean_30t"][30:], [ret[i - 30 : i].mean() for i in range(30, 400)], atol=1e-15)


def bits(out: pd.DataFrame) -> dict[str, np.ndarray]:
    return {c: out[c].to_numpy(np.float64).view(np.int64) for c in FEATURE_COLUMNS}


@settings(max_examples=40, deadline=None)
@given(
    st.integers(min_value=1, max_value=8),
    st.lists(st.integers(min_value=1, max_value=120), min_size=1, max_size=12),
    st.integers(min_value=0, max_value=2**31),
)
def test_any_batching_gives_identical_bits(window, cuts, seed):
    rng = np.random.default_rng(seed)
    n = 420
    mids = 100 + np.cumsum(rng.normal(0, 0.05, n))
    bids = np.where(rng.random(n) < 0.1, NAN, mids - 0.01)
    rows = frame(mids.tolist(), bids=bids.tolist(), ts=np.cumsum(rng.integers(0, 3, n) * 1000).tolist())
    rows["best_bid_quantity"] = rng.random(n)
    rows = pd.concat([rows, rows.sample(30, random_state=seed % 1000)])  # redeliveries
    whole, whole_state = featurize_frame(rows, WindowState(), window)
    bounds = sorted({min(c * 7, n) for c in cuts} | {n})
    parts, state, start = [], WindowState(), 0
    for end in bounds:
        chunk = rows[(rows["ingest_seq"] >= start) & (rows["ingest_seq"] < end)].sample(frac=1, random_state=end)
        out, state = featurize_frame(chunk, state, window)
        parts.append(out)
        start = end
    chunked = pd.concat(parts, ignore_index=True)
    assert chunked["ingest_seq"].tolist() == whole["ingest_seq"].tolist() == list(range(n))
    for column, expected in bits(whole).items():
        assert np.array_equal(bits(chunked)[column], expected), column
    assert np.array_equal(state.mids.view(np.int64), whole_state.mids.view(np.int64))
