"""The ``ticks.features`` and ``ticks.predictions`` message encoding, and a publisher that
cannot deliver failing loudly."""

from __future__ import annotations

import numpy as np
import orjson
import pytest

from spark_jobs.features_stream import tick_output
from spark_jobs.kafka_rows import RowPublisher, json_values
from tests.unit.test_features import frame
from volpipe.errors import PipelineError
from volpipe.features import WindowState, featurize_frame
from volpipe.tables import FEATURE_TABLE_COLUMNS, PREDICTION_MESSAGE_COLUMNS


def feature_values(rows):
    return json_values(rows, FEATURE_TABLE_COLUMNS)


def feature_rows(n=8, window=3):
    rows = frame([100.0 + (i % 3) * 0.37 for i in range(n)])
    rows.loc[4, "sequence_num"] = -1  # unknown sequence number: the -1 placeholder
    out, _ = featurize_frame(rows, WindowState(), window)
    return tick_output(out)[out["ready"].to_numpy()].reset_index(drop=True)


def test_values_carry_every_feature_column_with_exact_floats_and_nulls():
    rows = feature_rows()
    messages = [orjson.loads(value) for value in feature_values(rows)]
    assert len(messages) == len(rows) == 5
    assert all(list(m) == list(FEATURE_TABLE_COLUMNS) for m in messages)
    for message, (_, row) in zip(messages, rows.iterrows(), strict=True):
        assert message["ingest_seq"] == row["ingest_seq"] and isinstance(message["ingest_seq"], int)
        assert message["mid_fallback"] is False
        assert np.float64(message["rolling_vol"]).tobytes() == np.float64(row["rolling_vol"]).tobytes()
        assert message["vol_300t"] is None  # NaN: fewer than 300 returns
    by_seq = {m["ingest_seq"]: m for m in messages}
    assert by_seq[4]["sequence_num"] is None and by_seq[5]["sequence_num"] == 15


def test_values_come_out_in_row_order_across_encoder_chunks():
    rows = feature_rows()
    many = rows.loc[np.arange(10_000) % len(rows)].reset_index(drop=True)
    many["ingest_seq"] = np.random.default_rng(5).permutation(10_000)  # not sorted, beyond one 2048-row chunk
    assert [orjson.loads(v)["ingest_seq"] for v in feature_values(many)] == many["ingest_seq"].tolist()


@pytest.mark.parametrize("value", [-0.0, 1.0, 1e-7, 5e-324, 1.2345678901234567e21, 0.1 + 0.2, -1.7976931348623157e308])
def test_values_keep_every_double_exactly(value):
    rows = feature_rows().assign(spread_bps=value)
    (message, *_) = [orjson.loads(v) for v in feature_values(rows)]
    assert isinstance(message["spread_bps"], float)
    assert np.float64(message["spread_bps"]).tobytes() == np.float64(value).tobytes()


@pytest.mark.parametrize("value", [np.nan, np.inf, -np.inf])
def test_values_write_non_finite_doubles_as_null(value):
    rows = feature_rows().assign(midprice_return=value)
    assert all(orjson.loads(v)["midprice_return"] is None for v in feature_values(rows))


def test_prediction_values_name_the_model_and_null_an_unscored_label():
    rows = feature_rows().assign(
        probability=0.25, predicted_label=np.int32(0), threshold=0.2, model_name="volpipe-volatility", model_version="3"
    )
    rows.loc[0, "predicted_label"] = -1
    messages = [orjson.loads(v) for v in json_values(rows, PREDICTION_MESSAGE_COLUMNS)]
    assert all(list(m) == list(PREDICTION_MESSAGE_COLUMNS) for m in messages)
    assert messages[0]["predicted_label"] is None and messages[1]["predicted_label"] == 0
    assert messages[1]["model_version"] == "3" and messages[1]["threshold"] == 0.2
    assert messages[1]["exchange_ts_ns"] == rows.loc[1, "exchange_ts_ns"]


def test_publish_raises_when_kafka_never_acknowledges():
    from volpipe.ops.services.process import free_port

    nobody = {"bootstrap.servers": f"127.0.0.1:{free_port()}"}
    publisher = RowPublisher(nobody, timeout_seconds=1.0)
    publisher.produce("ticks.features", feature_rows(), FEATURE_TABLE_COLUMNS)
    with pytest.raises(PipelineError, match="unacknowledged"):
        publisher.flush()
