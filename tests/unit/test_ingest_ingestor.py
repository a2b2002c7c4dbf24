"""The ingestor's accounting for every kind of frame, without sockets or Kafka (kafka=False)."""

from __future__ import annotations

import asyncio
import dataclasses

import orjson
from prometheus_client import generate_latest

from ingest.ingestor import Ingestor, build_parser
from ingest.sinks import Record
from volpipe.coinbase import ticker_frame
from volpipe.market import SyntheticMarket
from volpipe.ops.sandbox import isolated_settings
from volpipe.records import raw_record

BEAT = b'{"channel":"heartbeats","timestamp":"2026-04-05T22:35:14.1Z","sequence_num":%d,"events":[{}]}'
ACK = b'{"channel":"subscriptions","timestamp":"2026-04-05T22:35:14.1Z","sequence_num":%d,"events":[{}]}'


def _frames():
    events = SyntheticMarket(["BTC-USD"], seed=2)

    def tick(seq):
        return ticker_frame(next(iter(events)), seq)

    return [tick(0), ACK % 1, tick(2), BEAT % 3, tick(7), tick(7), b"{oops", tick(8)]


def _ingest(settings, frames) -> tuple[Ingestor, list[Record]]:
    ingestor = Ingestor(settings, kafka=False)
    ingestor.new_connection()
    return ingestor, [r for r in (ingestor.on_frame(f) for f in frames) if r is not None]


def test_every_frame_is_counted_and_tickers_and_rejects_become_records(tmp_path):
    settings = isolated_settings(tmp_path)
    ingestor, records = asyncio.run(_async(_ingest, settings, _frames()))
    stats = ingestor.stats.snapshot()
    assert stats["messages"] == 8 and stats["tickers"] == 5 and stats["heartbeats"] == 1 and stats["acks"] == 1
    assert stats["invalid"] == 1 and stats["gaps"] == 3 and stats["repeats"] == 1
    assert [r.ingest_seq for r in records] == list(range(6))
    assert [r.deadletter for r in records] == [False, False, False, False, True, False]
    first = records[0]
    assert first.key == b"BTC-USD"
    assert first.value == raw_record(0, first.recv_ns, ingestor.conn_id, _frames()[0])
    assert orjson.loads(records[4].value)["raw"] == "{oops"
    exposition = generate_latest(ingestor.registry).decode()
    for name in (
        "messages",
        "tickers",
        "heartbeats",
        "invalid",
        "gaps",
        "repeats",
        "reconnects",
        "delivered",
        "failed",
    ):
        assert f"ingest_{name}_total" in exposition
    assert "ingest_receive_to_ack_seconds_bucket" in exposition
    assert "tickers=5" in ingestor.summary() and "gaps=3" in ingestor.summary()


def test_a_restart_resumes_ingest_seq_with_a_new_conn_id(tmp_path):
    settings = isolated_settings(tmp_path)

    async def first_run():
        ingestor, records = _ingest(settings, _frames())
        for record in records:
            ingestor.queue.put_nowait(record)
        ingestor.writer.drain()
        ingestor.writer.close()
        return ingestor

    first = asyncio.run(first_run())
    second, records = asyncio.run(_async(_ingest, settings, _frames()[:3]))
    assert second.next_seq == 8 and [r.ingest_seq for r in records] == [6, 7]
    assert second.conn_id != first.conn_id


def test_help_lists_the_flags_and_the_environment():
    text = build_parser().format_help()
    assert "--url" in text and "--products" in text and "STALE_FEED_SECONDS" in text


async def _async(function, *args):
    return function(*args)


ERROR = b'{"type":"error","message":"Failed to subscribe"}'
TICKER_ACK = (
    b'{"channel":"subscriptions","timestamp":"2026-04-05T22:35:14.1Z","sequence_num":0,'
    b'"events":[{"subscriptions":{"ticker":["BTC-USD"]}}]}'
)


def test_an_exchange_error_before_the_subscription_worked_abandons_the_connection(tmp_path):
    settings = isolated_settings(tmp_path)
    failing, _ = asyncio.run(_async(_ingest, settings, [BEAT % 0, ERROR]))
    assert failing.abandon and "Failed to subscribe" in failing.abandon
    working, _ = asyncio.run(_async(_ingest, settings, [TICKER_ACK, ERROR]))
    assert working.subscribed and working.abandon is None
    working.new_connection()
    assert not working.subscribed and working.abandon is None


def test_an_ack_without_every_product_is_logged(tmp_path, caplog):
    settings = isolated_settings(tmp_path, PRODUCT_IDS="BTC-USD,ETH-USD")
    ingestor, _ = asyncio.run(_async(_ingest, settings, [TICKER_ACK]))
    assert ingestor.subscribed and ingestor.stats.acks == 1
    assert "missing=['ETH-USD']" in caplog.text


def test_the_latency_histogram_is_cumulative_prometheus(tmp_path):
    ingestor = asyncio.run(_async(Ingestor, isolated_settings(tmp_path), False))
    for latency_ms in (0.1, 0.9, 3, 3, 250):
        ingestor.metrics.delivered(int(latency_ms * 1e6))
    text = generate_latest(ingestor.registry).decode()
    assert 'ingest_receive_to_ack_seconds_bucket{le="0.00025"} 1.0' in text
    assert 'ingest_receive_to_ack_seconds_bucket{le="0.001"} 2.0' in text
    assert 'ingest_receive_to_ack_seconds_bucket{le="0.004"} 4.0' in text
    assert 'ingest_receive_to_ack_seconds_bucket{le="+Inf"} 5.0' in text
    assert "ingest_receive_to_ack_seconds_count 5.0" in text
    assert "ingest_delivered_total 5.0" in text


def test_records_kafka_never_took_are_counted_and_logged_as_ranges_per_file(tmp_path, caplog):
    # A producer whose broker does not exist: nothing can be delivered before the bounded flush.
    settings = isolated_settings(tmp_path, SHUTDOWN_FLUSH_SECONDS="0.5")

    async def scenario():
        ingestor = Ingestor(settings, kafka=True)
        ingestor.new_connection()
        for frame in _frames():
            record = ingestor.on_frame(frame)
            if record is not None:
                ingestor.queue.put_nowait(record)
        ingestor.close(settings.shutdown_flush_seconds)
        return ingestor

    ingestor = asyncio.run(scenario())
    assert ingestor.stats.failed == 6 and ingestor.stats.delivered == 0
    raw_file = tmp_path / "raw"
    assert any(f"kafka undelivered file={raw_file}" in m and "count=5 ingest_seq=0-3,5" in m for m in caplog.messages)
    assert any("quarantine" in m and "count=1 ingest_seq=4" in m for m in caplog.messages)
    assert len((raw_file / next(raw_file.iterdir()).name).read_bytes().splitlines()) == 5  # the files have them


def test_an_oversized_message_is_counted_logged_and_followed_by_a_reconnect(tmp_path, caplog):
    from ingest.exchange import LocalExchange
    from ingest.sources import synthetic_ticks

    settings = isolated_settings(tmp_path, WS_MAX_MESSAGE_BYTES="20000", RECONNECT_INITIAL_SECONDS="0.1")

    async def scenario():
        exchange = LocalExchange(synthetic_ticks(["BTC-USD"], 1, rate=200), ["BTC-USD"], speed=1)
        await exchange.start()
        ingestor = Ingestor(
            dataclasses.replace(settings, coinbase_ws_url=f"ws://127.0.0.1:{exchange.port}"), kafka=False
        )
        stop = asyncio.Event()
        run = asyncio.create_task(ingestor.run(stop))
        while ingestor.stats.tickers < 5:
            await asyncio.sleep(0.05)
        exchange.oversized(20001)
        while ingestor.stats.oversized < 1:
            await asyncio.sleep(0.05)
        tickers = ingestor.stats.tickers
        while ingestor.stats.tickers < tickers + 5:  # the next connection delivers again
            await asyncio.sleep(0.05)
        stop.set()
        counts = await run
        await exchange.stop()
        return counts

    counts = asyncio.run(asyncio.wait_for(scenario(), 30))
    assert counts["oversized"] == 1 and counts["reconnects"] >= 1
    assert "oversized message dropped" in caplog.text and "limit_bytes=20000" in caplog.text
