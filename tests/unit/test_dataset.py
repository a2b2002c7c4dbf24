"""The one reader of table windows (``volpipe.modeling.dataset.read_window``), on delta-rs tables."""

from __future__ import annotations

import pandas as pd
import pytest

from volpipe.dates import NS_PER_DAY
from volpipe.errors import MonitoringDataError, TableReadError, TrainingDataError
from volpipe.modeling.dataset import read_window
from volpipe.modeling.synthetic import write_features
from volpipe.monitoring.synthetic import T0_NS, TICK_NS, feature_rows, prediction_rows
from volpipe.tables import ROW_KEYS

PRODUCTS = ("BTC-USD", "ETH-USD", "SOL-USD")


def test_filters_time_half_open_and_products_in_key_order(tmp_path):
    path = tmp_path / "predictions"
    rows = prediction_rows(feature_rows(100, seed=1, products=PRODUCTS), seed=1)
    write_features(path, rows.sample(frac=1.0, random_state=3))  # stored out of order
    start, end = T0_NS + 10 * TICK_NS, T0_NS + 40 * TICK_NS
    got = read_window(path, ["probability"], start, end, ("BTC-USD", "SOL-USD")).frame
    expected = rows[(rows.exchange_ts_ns >= start) & (rows.exchange_ts_ns < end) & (rows.product_id != "ETH-USD")]
    assert len(got) == len(expected) == 20
    assert list(got.columns) == [*ROW_KEYS, "exchange_ts_ns", "probability"]
    assert list(got[list(ROW_KEYS)].itertuples(index=False)) == sorted(expected[list(ROW_KEYS)].itertuples(index=False))
    assert got.index.tolist() == list(range(20))
    assert len(read_window(path, ["probability"], start, end).frame) == 30  # the row at end_ns is out
    everything = read_window(path).frame
    assert len(everything) == 100 and {"model_version", "exchange_ts", "date"} <= set(everything.columns)


def test_only_the_windows_days_are_opened(tmp_path):
    """A file of another day is never read, even when no file carries time statistics to skip it by."""
    import pyarrow as pa
    from deltalake import write_deltalake

    from volpipe.tables import FEATURES, arrow_layout_columns

    path = tmp_path / "features"
    for seed, start in ((1, T0_NS), (2, T0_NS + NS_PER_DAY)):
        frame = feature_rows(100, seed=seed, start_ns=start)
        table = pa.Table.from_pandas(frame, preserve_index=False)
        for name, column in arrow_layout_columns(FEATURES, frame["exchange_ts_ns"].to_numpy()).items():
            table = table.append_column(name, column)
        write_deltalake(
            str(path),
            table,
            mode="append",
            partition_by=["date"],
            configuration={"delta.dataSkippingNumIndexedCols": "0"},
        )
    (other_day,) = path.glob("date=2026-09-22/*.parquet")
    other_day.write_bytes(b"not a parquet file")
    assert len(read_window(path, ["rolling_vol"], T0_NS, T0_NS + 50 * TICK_NS).frame) == 50
    with pytest.raises(pa.ArrowInvalid, match="Parquet"):  # the broken day itself is read when asked for
        read_window(path, ["rolling_vol"], T0_NS + NS_PER_DAY, T0_NS + NS_PER_DAY + 50 * TICK_NS)


def test_a_missing_table_or_column_is_every_readers_data_error(tmp_path):
    write_features(tmp_path / "features", feature_rows(10, seed=1))
    with pytest.raises(TableReadError, match=r"lacks columns \['nope'\]") as caught:
        read_window(tmp_path / "features", ["rolling_vol", "nope"])
    # Training skips on it, monitoring stops with it as its reason.
    assert isinstance(caught.value, TrainingDataError) and isinstance(caught.value, MonitoringDataError)
    with pytest.raises(TableReadError, match=f"no Delta table at {tmp_path / 'missing'}"):
        read_window(tmp_path / "missing", ["rolling_vol"])
    assert read_window(tmp_path / "features", ["rolling_vol"], 0, 1).frame.empty
    pd.testing.assert_index_equal(
        read_window(tmp_path / "features", ["rolling_vol"], 0, 1).frame.columns,
        pd.Index([*ROW_KEYS, "exchange_ts_ns", "rolling_vol"]),
    )
