"""A local WebSocket exchange that speaks Coinbase Advanced Trade's market-data protocol.

Inputs: ticks from ``ingest.sources`` (the synthetic market or a recording), paced at 1x,
Nx or full speed. Outputs, per connection, as Coinbase does: a 5 s subscribe deadline,
``subscriptions`` acks listing every current subscription, one ``sequence_num`` counter
from 0, a snapshot first then updates, heartbeats every second to heartbeats subscribers,
an idle close without them, ``{"type":"error","message":...}`` errors, no ``client_id``.
Faults on command, through ``LocalExchange`` methods or ``GET /control/<fault>`` on the
same port: drop, stall, malformed, oversized, skip, repeat, close1000, error; ``/control/stats``.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import time
from collections.abc import Iterator, Sequence
from urllib.parse import parse_qs, urlsplit

import orjson
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

from ingest.sources import Tick
from volpipe.coinbase import FRAME, format_timestamp

log = logging.getLogger(__name__)

_MALFORMED = {
    "json": b'{"channel":"ticker","timestamp":"2026-',
    "structure": b'{"channel":"ticker","timestamp":"%s","sequence_num":%d,"events":"oops"}',
    "price": b'{"channel":"ticker","timestamp":"%s","sequence_num":%d,"events":[{"type":"update","tickers":'
    b'[{"type":"ticker","product_id":"{product}","price":"-1","best_bid":"1","best_ask":"2"}]}]}',
    "product": b'{"channel":"ticker","timestamp":"%s","sequence_num":%d,"events":[{"type":"update","tickers":'
    b'[{"type":"ticker","product_id":"NOPE-USD","price":"1","best_bid":"1","best_ask":"2"}]}]}',
}


class _Client:
    """One connection's protocol state; a single sender task owns its sequence_num."""

    def __init__(self, ws: ServerConnection, number: int, outbox_frames: int) -> None:
        self.ws, self.number = ws, number
        self.seq = 0
        self.tickers: set[str] = set()
        self.heartbeats = False
        self.snapshotted: set[str] = set()
        self.outbox: asyncio.Queue = asyncio.Queue(outbox_frames)
        self.stalled_until = 0.0
        self.skip = 0
        self.history: collections.deque[bytes] = collections.deque(maxlen=1000)
        self.last_sent = time.monotonic()
        self.tickers_sent = 0

    def stats(self) -> dict:
        """What was sent on this connection: the reference a client's losses are counted against."""
        return {"number": self.number, "seq": self.seq, "tickers_sent": self.tickers_sent}


class LocalExchange:
    """The exchange server.

    Args:
        ticks: What to serve, in time order (one shared tape: a reconnecting client
            misses what was sent meanwhile, like on the real exchange).
        products: Products clients may subscribe to.
        speed: 1 = real time, N = N times faster, 0 = as fast as the subscribers read.
        max_ticks: Stop serving after this many ticks (None = while the source lasts).
        idle_close_seconds: Close a connection without heartbeats after this much silence.
        keep_timestamps: Stamp ticker frames with their tick's recorded ``timestamp`` (its
            exact text when it has one, else its ``time_ns``) instead of the send time, so a
            replay at any speed keeps the market's real timing. Acks and heartbeats still
            carry the send time; ``sequence_num`` stays per connection, as on Coinbase.
    """

    def __init__(
        self,
        ticks: Iterator[Tick],
        products: Sequence[str],
        *,
        speed: float = 1.0,
        host: str = "127.0.0.1",
        port: int = 0,
        max_ticks: int | None = None,
        subscribe_deadline: float = 5.0,
        idle_close_seconds: float = 75.0,
        heartbeat_seconds: float = 1.0,
        outbox_frames: int = 20_000,
        keep_timestamps: bool = False,
    ) -> None:
        self.ticks, self.products, self.speed = ticks, frozenset(products), speed
        self.keep_timestamps = keep_timestamps
        self.host, self.port, self.max_ticks = host, port, max_ticks
        self.subscribe_deadline, self.idle_close_seconds = subscribe_deadline, idle_close_seconds
        self.heartbeat_seconds, self.outbox_frames = heartbeat_seconds, outbox_frames
        self.clients: set[_Client] = set()
        self.closed: list[dict] = []  # stats of every connection that ended
        self.last_tick: dict[str, Tick] = {}
        self.counts: collections.Counter[str] = collections.Counter()
        self.exhausted = asyncio.Event()
        self._has_subscriber = asyncio.Event()
        self._server: Server | None = None
        self._tasks: list[asyncio.Task] = []

    async def start(self) -> int:
        """Starts serving; returns the port."""
        self._server = await serve(
            self._handle, self.host, self.port, process_request=self._http, compression=None, max_queue=64
        )
        self.port = self._server.sockets[0].getsockname()[1]
        self._tasks = [asyncio.create_task(self._broadcast()), asyncio.create_task(self._heartbeat())]
        log.info(
            "exchange listening port=%d speed=%s keep_timestamps=%s products=%s",
            self.port,
            self.speed,
            self.keep_timestamps,
            ",".join(self.products),
        )
        return self.port

    async def stop(self) -> None:
        """Stops the tape and closes every connection."""
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    def stats(self) -> dict:
        """Counters: connections, ticks generated and sent; per open connection (``clients``)
        and per closed one (``closed``): its number, next ``sequence_num`` and tickers sent."""
        return {
            "connections": 0,
            "ticks_generated": 0,
            "tickers_sent": 0,
            "frames_sent": 0,
            **self.counts,
            "open": len(self.clients),
            "exhausted": self.exhausted.is_set(),
            "clients": [c.stats() for c in self.clients],
            "closed": self.closed,
        }

    # --- faults, applied to every open connection ---

    def drop(self) -> None:
        """Cuts the TCP connections without a close frame."""
        for c in self.clients:
            c.ws.transport.abort()

    def stall(self, seconds: float) -> None:
        """Sends nothing, heartbeats included, for ``seconds``; ticks meanwhile are lost."""
        for c in self.clients:
            c.stalled_until = time.monotonic() + seconds

    def malformed(self, kind: str = "json") -> None:
        """Sends one bad frame: json (truncated), structure, price (-1) or product (unknown)."""
        template = _MALFORMED[kind]
        for c in self.clients:
            if kind == "json":
                c.outbox.put_nowait(("verbatim", template))
            else:
                product = next(iter(c.tickers), "BTC-USD").encode()
                c.outbox.put_nowait(("seq", template.replace(b"{product}", product)))

    def oversized(self, size: int) -> None:
        """Sends one JSON frame of ``size`` bytes (a hostile or broken feed; see WS_MAX_MESSAGE_BYTES)."""
        frame = b'{"channel":"ticker","padding":"%s"}' % (b"x" * max(0, size - 33))
        for c in self.clients:
            c.outbox.put_nowait(("verbatim", frame))

    def skip(self, n: int) -> None:
        """Makes the next frame's sequence_num jump by ``n`` (a gap of n lost messages)."""
        for c in self.clients:
            c.skip += n

    def repeat(self, n: int) -> None:
        """Sends the last ``n`` frames again, unchanged (repeated sequence_nums)."""
        for c in self.clients:
            for frame in list(c.history)[-n:]:
                c.outbox.put_nowait(("verbatim", frame))

    def close(self, code: int = 1000) -> None:
        """Closes cleanly with ``code`` (Coinbase does 1000/1001 now and then)."""
        for c in list(self.clients):
            asyncio.get_running_loop().create_task(c.ws.close(code, "closed on command"))

    def error(self, message: str) -> None:
        """Sends ``{"type":"error","message":...}``."""
        for c in self.clients:
            c.outbox.put_nowait(("verbatim", orjson.dumps({"type": "error", "message": message})))

    def _http(self, connection: ServerConnection, request: Request) -> Response | None:
        url = urlsplit(request.path)
        if not url.path.startswith("/control/"):
            return None
        query = {k: v[-1] for k, v in parse_qs(url.query).items()}
        action = url.path.removeprefix("/control/")
        actions = {
            "stats": lambda: None,
            "drop": self.drop,
            "stall": lambda: self.stall(float(query.get("seconds", "30"))),
            "malformed": lambda: self.malformed(query.get("kind", "json")),
            "oversized": lambda: self.oversized(int(query.get("bytes", "2000000"))),
            "skip": lambda: self.skip(int(query.get("n", "1"))),
            "repeat": lambda: self.repeat(int(query.get("n", "1"))),
            "close1000": lambda: self.close(1000),
            "close": lambda: self.close(int(query.get("code", "1000"))),
            "error": lambda: self.error(query.get("message", "injected error")),
        }
        if action not in actions:
            return connection.respond(404, f"unknown control {action!r}; known: {', '.join(actions)}\n")
        try:
            actions[action]()
        except (KeyError, ValueError) as exc:
            return connection.respond(400, f"bad parameters for {action}: {exc}\n")
        log.info("control action=%s query=%s", action, query)
        return connection.respond(200, orjson.dumps(self.stats()).decode() + "\n")

    # --- the protocol ---

    async def _handle(self, ws: ServerConnection) -> None:
        self.counts["connections"] += 1
        client = _Client(ws, self.counts["connections"], self.outbox_frames)
        self.clients.add(client)
        sender = asyncio.create_task(self._sender(client))
        try:
            deadline = time.monotonic() + self.subscribe_deadline
            while not (client.tickers or client.heartbeats):
                try:
                    message = await asyncio.wait_for(ws.recv(), max(0.0, deadline - time.monotonic()))
                except TimeoutError:
                    await ws.close(1008, "no subscribe within 5 seconds")
                    return
                self._request(client, message)
            async for message in ws:
                self._request(client, message)
        except ConnectionClosed:
            pass
        finally:
            self.clients.discard(client)
            self._update_subscribers()
            sender.cancel()
            await asyncio.gather(sender, return_exceptions=True)  # its counts are final
            self.closed.append(client.stats())

    def _request(self, client: _Client, message: str | bytes) -> None:
        try:
            request = orjson.loads(message)
            kind, channel = request["type"], request["channel"]
            products = set(request.get("product_ids") or ())
        except (orjson.JSONDecodeError, KeyError, TypeError) as exc:
            client.outbox.put_nowait(("verbatim", orjson.dumps({"type": "error", "message": f"bad request: {exc}"})))
            return
        unknown = products - self.products
        if channel == "ticker" and not products:
            unknown = {"(none given)"}
        if kind not in ("subscribe", "unsubscribe") or channel not in ("ticker", "heartbeats") or unknown:
            reason = f"unknown products {sorted(unknown)}" if unknown else f"unsupported {kind} {channel}"
            client.outbox.put_nowait(("verbatim", orjson.dumps({"type": "error", "message": f"Failure: {reason}"})))
            return
        subscribe = kind == "subscribe"
        if channel == "heartbeats":
            client.heartbeats = subscribe
        elif subscribe:
            for product in sorted(products - client.tickers):
                if product in self.last_tick:  # a snapshot of the current state comes first
                    client.outbox.put_nowait(("tick", self.last_tick[product]))
            client.tickers |= products
        else:
            client.tickers -= products
        self._update_subscribers()
        subscriptions = {"ticker": sorted(client.tickers)} if client.tickers else {}
        if client.heartbeats:
            subscriptions["heartbeats"] = ["heartbeats"]
        client.outbox.put_nowait(
            (
                "seq",
                b'{"channel":"subscriptions","timestamp":"%s","sequence_num":%d,"events":'
                b'[{"subscriptions":' + orjson.dumps(subscriptions) + b"}]}",
            )
        )

    def _update_subscribers(self) -> None:
        if any(c.tickers for c in self.clients):
            self._has_subscriber.set()
        else:
            self._has_subscriber.clear()

    async def _sender(self, c: _Client) -> None:
        ws = c.ws
        while True:
            kind, payload = await c.outbox.get()
            pause = c.stalled_until - time.monotonic()
            if pause > 0:
                await asyncio.sleep(pause)
            if kind == "verbatim":
                frame = payload
            else:
                c.seq += c.skip
                c.skip = 0
                stamp = format_timestamp(time.time_ns()).encode()
                if kind == "tick":
                    if self.keep_timestamps:
                        stamp = (payload.timestamp or format_timestamp(payload.time_ns)).encode()
                    product = payload.product_ids[0]
                    first = product not in c.snapshotted
                    c.snapshotted.add(product)
                    frame = FRAME % (stamp, c.seq, b"snapshot" if first else b"update", payload.tickers)
                else:
                    frame = payload % (stamp, c.seq)
                c.seq += 1
            await ws.send(frame, text=True)
            if kind == "tick":  # counted once the socket took it
                c.tickers_sent += 1
                self.counts["tickers_sent"] += 1
            c.history.append(frame)
            c.last_sent = time.monotonic()
            self.counts["frames_sent"] += 1

    async def _broadcast(self) -> None:
        wall0: float | None = None  # set, with t0, when the first subscriber comes
        t0 = 0
        for count, tick in enumerate(self.ticks):
            if self.max_ticks is not None and count >= self.max_ticks:
                break
            if self.speed > 0:
                if wall0 is None:  # the tape starts with the first subscriber, then runs on
                    await self._has_subscriber.wait()
                    wall0, t0 = time.monotonic(), tick.time_ns
                delay = wall0 + (tick.time_ns - t0) / 1e9 / self.speed - time.monotonic()
                if delay > 0.0005:
                    await asyncio.sleep(delay)
                elif count % 256 == 0:
                    await asyncio.sleep(0)
            else:
                await self._has_subscriber.wait()
                if count % 256 == 0:
                    await asyncio.sleep(0)  # let the senders run
            product = tick.product_ids[0]
            self.last_tick[product] = tick
            self.counts["ticks_generated"] += 1
            now = time.monotonic()
            for c in list(self.clients):
                if product not in c.tickers or c.stalled_until > now:
                    continue
                if self.speed == 0:
                    await self._offer(c, ("tick", tick))
                else:
                    try:
                        c.outbox.put_nowait(("tick", tick))
                    except asyncio.QueueFull:  # Coinbase drops readers that fall behind
                        log.warning("slow reader client=%d: closing", c.number)
                        self.clients.discard(c)
                        asyncio.get_running_loop().create_task(c.ws.close(1008, "slow reader"))
        self.exhausted.set()
        log.info("exchange source exhausted ticks=%d", self.counts["ticks_generated"])

    async def _offer(self, c: _Client, item: tuple) -> None:
        """Full speed: wait for room in the outbox, unless the client goes away meanwhile."""
        while c in self.clients:
            try:
                c.outbox.put_nowait(item)
                return
            except asyncio.QueueFull:
                await asyncio.sleep(0.002)

    async def _heartbeat(self) -> None:
        counter = 0
        while True:
            await asyncio.sleep(self.heartbeat_seconds)
            counter += 1
            now = time.monotonic()
            for c in list(self.clients):
                if c.stalled_until > now:
                    continue
                if c.heartbeats:
                    beat = (
                        b'{"channel":"heartbeats","timestamp":"%%s","sequence_num":%%d,"events":[{"current_time":"%s",'
                        b'"heartbeat_counter":%d}]}' % (time.strftime("%Y-%m-%d %H:%M:%S +0000 UTC").encode(), counter)
                    )
                    if not c.outbox.full():
                        c.outbox.put_nowait(("seq", beat))
                elif now - c.last_sent > self.idle_close_seconds:
                    log.info("idle close client=%d after %.0fs without heartbeats", c.number, now - c.last_sent)
                    asyncio.get_running_loop().create_task(c.ws.close(1000, "idle"))
