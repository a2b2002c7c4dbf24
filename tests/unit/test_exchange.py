"""The local exchange speaks Coinbase's protocol and injects faults on command (real sockets, in-process)."""

from __future__ import annotations

import asyncio
import datetime as dt
import time
import urllib.error
import urllib.request

import orjson
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, ConnectionClosedError, ConnectionClosedOK

from ingest.exchange import LocalExchange
from ingest.exchange.__main__ import build_parser, synthetic_market
from ingest.protocol import Accepted, classify, subscribe_messages
from ingest.sources import load_recording, replay_ticks, synthetic_ticks
from tests.recordings import real_recording
from volpipe.coinbase import format_timestamp, parse_timestamp, ticker_frame
from volpipe.dates import NS_PER_DAY, day_of_ns
from volpipe.market import DEFAULT_START_NS, Sessions, SyntheticMarket, synthetic_raw_records

PRODUCTS = ["BTC-USD", "ETH-USD"]


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, 30))


async def started(ticks=None, products=PRODUCTS, **options) -> LocalExchange:
    exchange = LocalExchange(ticks if ticks is not None else synthetic_ticks(PRODUCTS, 3), products, **options)
    await exchange.start()
    return exchange


async def subscribed(exchange: LocalExchange, products=PRODUCTS, heartbeats=True):
    ws = await connect(f"ws://127.0.0.1:{exchange.port}")
    for message in subscribe_messages(products)[: 2 if heartbeats else 1]:
        await ws.send(message.decode())
    return ws


async def frames(ws, n: int) -> list[dict]:
    return [orjson.loads(await ws.recv()) for _ in range(n)]


def test_acks_snapshot_first_and_one_sequence_counter_per_connection():
    async def scenario():
        exchange = await started(speed=0, max_ticks=60)
        ws = await subscribed(exchange)
        received = [await ws.recv(decode=False) for _ in range(62)]
        await ws.close()
        await exchange.stop()
        return received

    received = run(scenario())
    messages = [orjson.loads(frame) for frame in received]
    assert [m["sequence_num"] for m in messages] == list(range(62))
    assert all("client_id" not in m for m in messages)
    acks = [m for m in messages if m["channel"] == "subscriptions"]
    assert acks[-1]["events"] == [{"subscriptions": {"ticker": PRODUCTS, "heartbeats": ["heartbeats"]}}]
    tickers = [m for m in messages if m["channel"] == "ticker"]
    assert len(tickers) == 60
    kinds = {}
    for m in tickers:
        kinds.setdefault(m["events"][0]["tickers"][0]["product_id"], []).append(m["events"][0]["type"])
    for product_kinds in kinds.values():
        assert product_kinds[0] == "snapshot" and set(product_kinds[1:]) == {"update"}
    for frame in received:
        assert isinstance(classify(frame, set(PRODUCTS)), Accepted)
    digits = {len(m["timestamp"].split(".")[1]) - 1 for m in messages}
    assert digits <= set(range(6, 10))


def test_no_subscribe_within_the_deadline_closes_the_connection():
    async def scenario():
        exchange = await started(subscribe_deadline=0.3)
        ws = await connect(f"ws://127.0.0.1:{exchange.port}")
        start = time.monotonic()
        with pytest.raises(ConnectionClosed):
            await ws.recv()
        await exchange.stop()
        return time.monotonic() - start, ws.close_code

    elapsed, code = run(scenario())
    assert 0.2 < elapsed < 5 and code == 1008


def test_heartbeats_every_interval_and_idle_close_without_them():
    async def scenario():
        exchange = await started(iter(()), heartbeat_seconds=0.1, idle_close_seconds=0.5)
        beating = await subscribed(exchange, heartbeats=True)
        silent = await subscribed(exchange, heartbeats=False)
        beats = [m for m in await frames(beating, 8) if m["channel"] == "heartbeats"]
        await asyncio.sleep(0.6)
        with pytest.raises(ConnectionClosedOK):
            while True:
                await silent.recv()
        await beating.close()
        await exchange.stop()
        return beats, silent.close_code

    beats, code = run(scenario())
    counters = [b["events"][0]["heartbeat_counter"] for b in beats]
    assert len(counters) >= 5 and counters == sorted(counters) and len(set(counters)) == len(counters)
    assert code == 1000


@pytest.mark.parametrize(
    ("request_", "message"),
    [
        ({"type": "subscribe", "channel": "ticker", "product_ids": ["NOPE-USD"]}, "unknown products"),
        ({"type": "subscribe", "channel": "level9", "product_ids": ["BTC-USD"]}, "unsupported"),
        ({"type": "subscribe", "channel": "ticker"}, "unknown products ['(none given)']"),
        ("not json", "bad request"),
    ],
)
def test_bad_requests_get_error_messages(request_, message):
    async def scenario():
        exchange = await started()
        ws = await connect(f"ws://127.0.0.1:{exchange.port}")
        await ws.send(request_ if isinstance(request_, str) else orjson.dumps(request_).decode())
        answer = orjson.loads(await ws.recv())
        await ws.close()
        await exchange.stop()
        return answer

    answer = run(scenario())
    assert answer["type"] == "error" and message in answer["message"]


def test_faults_skip_repeat_malformed_and_clean_close():
    async def scenario():
        exchange = await started(speed=1, ticks=synthetic_ticks(["BTC-USD"], 1, rate=200))
        ws = await subscribed(exchange, ["BTC-USD"])
        before = [await ws.recv(decode=False) for _ in range(10)]
        exchange.repeat(2)
        repeated = [await ws.recv(decode=False) for _ in range(2)]
        exchange.skip(5)
        last = orjson.loads(before[-1])["sequence_num"]
        after_skip = orjson.loads(await ws.recv())["sequence_num"]
        exchange.malformed("json")
        exchange.malformed("price")
        bad = [await ws.recv(decode=False) for _ in range(8)]
        exchange.close(1000)
        with pytest.raises(ConnectionClosedOK):
            while True:
                await ws.recv()
        await exchange.stop()
        return before, repeated, last, after_skip, bad, ws.close_code

    before, repeated, last, after_skip, bad, code = run(scenario())
    assert repeated == before[-2:]
    assert after_skip >= last + 6
    assert b'{"channel":"ticker","timestamp":"2026-' in bad
    assert any(b'"price":"-1"' in frame for frame in bad)
    assert code == 1000


def test_drop_and_stall():
    async def scenario():
        exchange = await started(speed=1, ticks=synthetic_ticks(["BTC-USD"], 1, rate=200))
        ws = await subscribed(exchange, ["BTC-USD"])
        await ws.recv()
        exchange.stall(0.6)
        await asyncio.sleep(0.05)
        while True:  # what was already queued may still arrive
            try:
                await asyncio.wait_for(ws.recv(), 0.2)
            except TimeoutError:
                break
        start = time.monotonic()
        await ws.recv()
        silent = time.monotonic() - start
        exchange.drop()
        with pytest.raises(ConnectionClosedError):
            while True:
                await ws.recv()
        await exchange.stop()
        return silent

    assert run(scenario()) > 0.2


def test_http_control_endpoint():
    async def scenario():
        exchange = await started()
        ws = await subscribed(exchange)
        await ws.recv()
        stats = await asyncio.to_thread(_get, f"http://127.0.0.1:{exchange.port}/control/skip?n=3")
        with pytest.raises(urllib.error.HTTPError) as missing:
            await asyncio.to_thread(_get, f"http://127.0.0.1:{exchange.port}/control/explode")
        missing.value.close()  # else the server waits for this client to hang up
        await ws.close()
        await exchange.stop()
        return stats, missing.value.code

    stats, code = run(scenario())
    assert stats["open"] == 1 and stats["connections"] == 1
    assert code == 404


def _get(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=5) as answer:
        return orjson.loads(answer.read())


def test_replay_reads_coinbase_frames_and_raw_records_alike(tmp_path):
    events = [e for _, e in zip(range(30), SyntheticMarket(PRODUCTS, seed=4), strict=False)]
    coinbase = tmp_path / "coinbase.ndjson"
    ack = b'{"channel":"subscriptions","timestamp":"2026-01-01T00:00:00.1Z","sequence_num":0,"events":[{}]}'
    coinbase.write_bytes(ack + b"\n" + b"\n".join(ticker_frame(e, i + 1) for i, e in enumerate(events)) + b"\n")
    raw = tmp_path / "raw.ndjson"
    raw.write_bytes(b"\n".join(v for _, v in synthetic_raw_records(30, PRODUCTS, seed=4)) + b"\n")
    from_coinbase, from_raw = load_recording(coinbase), load_recording(raw)
    assert [t.tickers for t in from_coinbase] == [t.tickers for t in from_raw]
    assert [t.time_ns for t in from_coinbase] == [e.time_ns for e in events]
    assert from_coinbase[0].tickers == ticker_frame(events[0], 0).split(b'"tickers":[')[1][:-4]

    async def scenario():
        exchange = await started(replay_ticks(from_raw), speed=0)
        ws = await subscribed(exchange, heartbeats=False)
        received = [orjson.loads(f) for f in [await ws.recv() for _ in range(31)]]
        await ws.close()
        await exchange.stop()
        return [m for m in received if m["channel"] == "ticker"]

    served = run(scenario())
    assert [orjson.dumps(m["events"][0]["tickers"][0]) for m in served] == [t.tickers for t in from_raw]


def test_replay_at_n_times_speed_is_paced(tmp_path):
    start = 1_775_428_513_000_000_000
    lines = [
        b'{"channel":"ticker","timestamp":"%s","sequence_num":%d,"events":[{"type":"update","tickers":[{"type":'
        b'"ticker","product_id":"BTC-USD","price":"1","best_bid":"1","best_ask":"2"}]}]}'
        % (format_timestamp(start + i * 100_000_000).encode(), i)
        for i in range(21)
    ]  # 2 seconds of recording
    path = tmp_path / "two_seconds.ndjson"
    path.write_bytes(b"\n".join(lines))
    assert parse_timestamp(orjson.loads(lines[-1])["timestamp"]) - start == 2_000_000_000

    async def scenario():
        exchange = await started(replay_ticks(load_recording(path)), ["BTC-USD"], speed=4)
        ws = await subscribed(exchange, ["BTC-USD"], heartbeats=False)
        await ws.recv()  # the ack
        first = time.monotonic()
        for _ in range(21):
            await ws.recv()
        await ws.close()
        await exchange.stop()
        return time.monotonic() - first

    assert run(scenario()) >= 0.4  # 2 s at 4x is 0.5 s


def test_at_full_speed_a_client_that_leaves_does_not_block_the_tape():
    async def scenario():
        exchange = await started(speed=0, outbox_frames=50)
        leaving = await subscribed(exchange, ["BTC-USD"], heartbeats=False)
        await leaving.recv()
        await asyncio.sleep(0.5)  # it reads no more: socket buffers and its outbox fill up ...
        exchange.drop()  # ... and then it is gone
        staying = await subscribed(exchange, ["BTC-USD"], heartbeats=False)
        frames_ = [await staying.recv() for _ in range(200)]
        staying.transport.abort()  # a close handshake would queue behind the unread flood
        await exchange.stop()
        return frames_

    assert len(run(scenario())) == 200


def _replayed(ticks, products, n: int, **options) -> list[dict]:
    """The first ``n`` ticker messages a subscriber gets from a full-speed replay of ``ticks``."""

    async def scenario():
        exchange = await started(ticks, products, speed=0, **options)
        ws = await subscribed(exchange, products, heartbeats=False)
        tickers = []
        while len(tickers) < n:
            message = orjson.loads(await ws.recv())
            if message["channel"] == "ticker":
                tickers.append(message)
        await ws.close()
        await exchange.stop()
        return tickers

    return run(scenario())


def test_replay_keeps_the_recorded_timestamps_when_asked(tmp_path):
    stamps = [
        "2026-04-05T10:00:00.12345678Z",
        "2026-04-05T10:00:00.200001Z",
        "2026-04-05T10:00:00.500000000Z",
        "2026-04-05T10:00:00.5000001Z",
        "2026-04-05T10:00:01.123456789Z",
    ]
    frame = (
        b'{"channel":"ticker","timestamp":"%s","sequence_num":%d,"events":[{"type":"update","tickers":'
        b'[{"type":"ticker","product_id":"BTC-USD","price":"1.5","best_bid":"1","best_ask":"2"}]}]}'
    )
    path = tmp_path / "recording.ndjson"
    path.write_bytes(b"\n".join(frame % (s.encode(), 40 + i) for i, s in enumerate(stamps)))
    recording = load_recording(path)

    kept = _replayed(
        replay_ticks(recording, loop=True),
        ["BTC-USD"],
        2 * len(stamps),
        keep_timestamps=True,
        max_ticks=2 * len(stamps),
    )
    assert [m["timestamp"] for m in kept[: len(stamps)]] == stamps  # the recorded text, exactly
    # Later laps are shifted in time: their stamps follow the recording's spacing, not the clock.
    span = recording[-1].time_ns - recording[0].time_ns + 1_000_000
    assert [parse_timestamp(m["timestamp"]) for m in kept[len(stamps) :]] == [t.time_ns + span for t in recording]
    # The protocol stays the exchange's: one sequence_num counter per connection, snapshot first.
    assert [m["sequence_num"] for m in kept] == sorted({m["sequence_num"] for m in kept})
    assert kept[0]["events"][0]["type"] == "snapshot"

    default = _replayed(replay_ticks(recording), ["BTC-USD"], len(stamps))
    assert all(abs(parse_timestamp(m["timestamp"]) - time.time_ns()) < 60e9 for m in default)  # send time


def test_replay_of_the_real_recording_keeps_every_timestamp():
    path = real_recording()
    recorded = [m for m in map(orjson.loads, path.read_bytes().splitlines()) if m["channel"] == "ticker"]
    kept = _replayed(replay_ticks(load_recording(path)), ["BTC-USD"], len(recorded), keep_timestamps=True)
    assert [m["timestamp"] for m in kept] == [m["timestamp"] for m in recorded]
    assert [m["events"][0]["tickers"] for m in kept] == [m["events"][0]["tickers"] for m in recorded]


def test_the_command_line_serves_live_without_outages_unless_asked():
    """Live serving (--speed 1) must never stall for an outage nobody asked for."""
    now = DEFAULT_START_NS + 7 * NS_PER_DAY
    start_ns, market = synthetic_market(build_parser().parse_args([]), now)
    assert (start_ns, market) == (now, {})
    assert SyntheticMarket(PRODUCTS, 3, start_ns, **market).silences(now + 30 * NS_PER_DAY) == []
    args = build_parser().parse_args(
        [
            "--outages-per-day",
            "3",
            "--outage-minutes",
            "20",
            "--level-step",
            "600:2",
            "--level-step",
            "1200:0.5",
            "--day-night-ratio",
            "1.5",
            "--level-sd",
            "0",
        ]
    )
    start_ns, market = synthetic_market(args, now)
    assert market == {
        "outages_per_day": 3.0,
        "outage_median_minutes": 20.0,
        "day_night_ratio": 1.5,
        "level_sd": 0.0,
        "level_steps": [(600.0, 2.0), (1200.0, 0.5)],
    }
    assert len(SyntheticMarket(PRODUCTS, 3, start_ns, **market).silences(now + 30 * NS_PER_DAY)) > 20


def test_a_history_is_served_with_its_real_dates_and_then_the_tape_ends():
    args = build_parser().parse_args(["--history-days", "2", "--sessions-per-day", "2", "--session-minutes", "1"])
    start_ns, market = synthetic_market(args, DEFAULT_START_NS + 12 * 3600 * 10**9)  # 2026-01-01 12:00 UTC
    assert start_ns is None and market["sessions"] == Sessions(dt.date(2026, 1, 1), 2, 2, 1.0)
    expected = list(SyntheticMarket(PRODUCTS, 3, **market))
    windows = market["sessions"].windows()

    async def scenario():
        exchange = await started(synthetic_ticks(PRODUCTS, 3, start_ns, **market), speed=0, keep_timestamps=True)
        ws = await subscribed(exchange, heartbeats=False)
        tickers = []
        while len(tickers) < len(expected):
            message = orjson.loads(await ws.recv())
            if message["channel"] == "ticker":
                tickers.append(message)
        await asyncio.wait_for(exchange.exhausted.wait(), 10)
        await ws.close()
        await exchange.stop()
        return tickers, exchange.stats()

    tickers, stats = run(scenario())
    assert stats["ticks_generated"] == len(expected) and stats["exhausted"]
    stamps = [parse_timestamp(m["timestamp"]) for m in tickers]
    assert stamps == [e.time_ns for e in expected]  # the simulated times, on 2025-12-30 and 31
    assert {day_of_ns(t) for t in stamps} == {dt.date(2025, 12, 30), dt.date(2025, 12, 31)}
    assert all(any(start <= t < end for start, end in windows) for t in stamps)
