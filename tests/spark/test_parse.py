"""The shared raw-record parser on a static DataFrame: exact nanoseconds, explode order, reasons."""

from __future__ import annotations

import pytest

from volpipe.records import raw_record
from volpipe.schema import parse_raw
from volpipe.tables import PARSED_COLUMNS

pytestmark = pytest.mark.spark


def _ticker(product, price="10.5", bid="10", ask="11", **extra):
    fields = {
        "type": "ticker",
        "product_id": product,
        "price": price,
        "best_bid": bid,
        "best_ask": ask,
        "best_bid_quantity": "0.5",
        "best_ask_quantity": "1.5",
        **extra,
    }
    return "{" + ",".join(f'"{k}":"{v}"' for k, v in fields.items()) + "}"


def _frame(ts, seq, events):
    return f'{{"channel":"ticker","timestamp":"{ts}","sequence_num":{seq:d},"events":[{",".join(events)}]}}'.encode()


def _event(kind, *tickers):
    return f'{{"type":"{kind}","tickers":[{",".join(tickers)}]}}'


def _parse(spark, values):
    frame = spark.createDataFrame([(v, f"test:{i}") for i, v in enumerate(values)], "value binary, source string")
    rows = parse_raw(frame).collect()
    assert all(tuple(r.asDict()) == PARSED_COLUMNS for r in rows)
    return rows


def test_tickers_exploded_in_order_with_exact_nanoseconds(spark):
    values = [
        raw_record(
            7,
            1_775_428_514_100_000_123,
            "c1",
            _frame(
                "2026-04-05T22:35:14.009945409Z",
                3,
                [
                    _event("snapshot", _ticker("BTC-USD"), _ticker("ETH-USD", price="3000")),
                    _event("update", _ticker("SOL-USD")),
                ],
            ),
        ),
        raw_record(8, 2, "c1", _frame("2026-04-05T22:35:14.9253Z", 4, [_event("update", _ticker("BTC-USD"))])),
        raw_record(9, 3, "c1", _frame("2026-04-05T22:35:15Z", 5, [_event("update", _ticker("BTC-USD"))])),
        raw_record(
            10,
            4,
            "c1",
            b'{"channel":"heartbeats","timestamp":"2026-04-05T22:35:15Z","sequence_num":6,'
            b'"events":[{"current_time":"x","heartbeat_counter":1}]}',
        ),
    ]
    rows = sorted(_parse(spark, values), key=lambda r: (r.ingest_seq, r.ticker_idx))
    assert [(r.ingest_seq, r.ticker_idx, r.product_id, r.event_type) for r in rows] == [
        (7, 0, "BTC-USD", "snapshot"),
        (7, 1, "ETH-USD", "snapshot"),
        (7, 2, "SOL-USD", "update"),
        (8, 0, "BTC-USD", "update"),
        (9, 0, "BTC-USD", "update"),
    ]  # the heartbeat is skipped
    assert [r.exchange_ts_ns for r in rows[2:]] == [
        1_775_428_514_009_945_409,
        1_775_428_514_925_300_000,
        1_775_428_515_000_000_000,
    ]
    first = rows[0]
    assert (
        first.recv_ns,
        first.conn_id,
        first.sequence_num,
        first.price,
        first.best_bid,
        first.best_ask,
        first.best_bid_quantity,
        first.error,
        first.raw,
    ) == (1_775_428_514_100_000_123, "c1", 3, 10.5, 10.0, 11.0, 0.5, None, None)


def test_unusable_records_and_tickers_get_a_reason_and_keep_their_bytes(spark):
    bad_ts = raw_record(1, 1, "c", _frame("2026-04-05 22:35:14", 1, [_event("update", _ticker("BTC-USD"))]))
    values = [
        b"\xff not json",
        b'{"ingest_seq":"x","recv_ns":1,"conn_id":"c","msg":{"channel":"ticker"}}',
        raw_record(2, 1, "c", _frame("2026-04-05T22:35:14Z", 2, [])),
        bad_ts,
        raw_record(
            3,
            1,
            "c",
            _frame(
                "2026-04-05T22:35:14Z",
                3,
                [
                    _event(
                        "update",
                        _ticker("BTC-USD", price="NaN", bid="12", ask="11"),
                        _ticker("ETH-USD", price="-1", bid="", ask="abc"),
                    )
                ],
            ),
        ),
    ]
    rows = _parse(spark, values)
    reasons = sorted((r.source, r.error) for r in rows if r.error)
    assert reasons == [
        ("test:0", "not a raw record (JSON with ingest_seq, recv_ns, conn_id, msg)"),
        ("test:1", "not a raw record (JSON with ingest_seq, recv_ns, conn_id, msg)"),
        ("test:2", "ticker message without tickers"),
        ("test:3", "unparseable exchange timestamp: 2026-04-05 22:35:14"),
        ("test:4", "no positive price and no valid book"),
        ("test:4", "no positive price and no valid book"),
    ]
    assert {bytes(r.raw) for r in rows if r.error} == set(values)
    assert all(r.product_id is None for r in rows)


def test_a_time_beyond_int64_nanoseconds_is_quarantined_not_a_failed_query(spark):
    """Regression: the seconds-to-nanoseconds multiply overflowed and failed the whole batch (ANSI)."""
    times = ["2300-01-01T00:00:00Z", "9999-12-31T23:59:59.999999999Z", "1000-01-01T00:00:00Z", "1969-12-31T23:59:59Z"]
    update = [_event("update", _ticker("BTC-USD"))]
    values = [raw_record(i, 1, "c", _frame(ts, i, update)) for i, ts in enumerate(times)]
    values.append(raw_record(9, 1, "c", _frame("2262-04-11T23:47:16.854775807Z", 9, update)))
    rows = sorted(_parse(spark, values), key=lambda r: r.source or "")
    assert [(r.source, r.error) for r in rows[1:]] == [
        (f"test:{i}", f"unparseable exchange timestamp: {ts}") for i, ts in enumerate(times)
    ]
    assert (rows[0].ingest_seq, rows[0].exchange_ts_ns, rows[0].error) == (9, 2**63 - 1, None)  # the last one that fits


def test_a_bad_record_is_quarantined_once_however_many_tickers_it_has(spark):
    """Regression: a bad envelope was exploded first, so its raw bytes were quarantined once per ticker."""
    tickers = [_event("update", _ticker("BTC-USD"), _ticker("ETH-USD"), _ticker("SOL-USD"))]
    msg = _frame("2026-04-05T22:35:14Z", 1, tickers)
    values = [
        b'{"ingest_seq":"x","recv_ns":1,"conn_id":"c","msg":' + msg + b"}",
        raw_record(-3, 1, "c", msg),
        raw_record(4, -1, "c", msg),
    ]
    rows = _parse(spark, values)
    assert sorted((r.source, r.ticker_idx, r.error) for r in rows) == [
        (f"test:{i}", -1, "not a raw record (JSON with ingest_seq, recv_ns, conn_id, msg)") for i in range(3)
    ]


def test_a_non_ticker_message_never_yields_ticks(spark):
    """Regression: a heartbeat (or any other channel) carrying a tickers list was parsed into ticks."""
    beat = _frame("2026-04-05T22:35:14Z", 1, [_event("update", _ticker("BTC-USD"))])
    beat = beat.replace(b'"ticker"', b'"heartbeats"', 1)
    assert _parse(spark, [raw_record(1, 1, "c", beat)]) == []


def test_a_message_of_10000_tickers_is_parsed_without_carrying_it_into_every_row(spark):
    """Regression: each ticker row carried the whole message (n^2): this 700 kB record ran the JVM out of memory."""
    tickers = [_ticker("BTC-USD", price=f"{i}.5") for i in range(10_000)]
    rows = _parse(spark, [raw_record(1, 1, "c", _frame("2026-04-05T22:35:14Z", 1, [_event("update", *tickers)]))])
    assert sorted((r.ticker_idx, r.price, r.event_type, r.error) for r in rows) == [
        (i, i + 0.5, "update", None) for i in range(10_000)
    ]
