"""Layer 1 of the ingestor: stay connected, forever, and notice when the feed goes silent.

Input: the exchange URL and the subscribe messages. Output: every frame received, handed
to a ``FrameHandler`` whose records are put on the writer's bounded queue. Any end of a
connection (error, stall, even a clean 1000/1001 close from the server) leads to a
reconnect after a capped, jittered exponential backoff that resets once a connection has
subscribed successfully. Retries are unlimited unless RECONNECT_MAX_ATTEMPTS says otherwise.
A message over WS_MAX_MESSAGE_BYTES is refused by the WebSocket library (close code 1009)
before it is buffered; the handler counts it and the loop reconnects.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Callable, Sequence
from typing import Protocol

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, WebSocketException
from websockets.frames import CloseCode

from volpipe.config import Settings
from volpipe.errors import ExhaustedRetries

log = logging.getLogger(__name__)


class FrameHandler(Protocol):
    """What the connection loop needs from the ingestor."""

    subscribed: bool  # set once the current connection proved its ticker subscription works
    abandon: str | None  # set when the current connection should be dropped, with the reason

    def new_connection(self) -> str:
        """Starts accounting for a new connection; returns its conn_id."""

    def on_frame(self, frame: bytes) -> object | None:
        """Classifies one frame; returns the record to queue for the sinks, if any."""

    def on_disconnect(self, reason: str) -> None:
        """Counts a lost connection."""

    def on_oversized(self, detail: str) -> None:
        """Counts a message refused for exceeding WS_MAX_MESSAGE_BYTES (the connection is dropped)."""


class Backoff:
    """Capped exponential backoff with "equal jitter": half fixed, half random.

    Jitter spreads the reconnects of many clients after an exchange-wide drop; the cap
    keeps a long outage from growing the delay without bound.
    """

    def __init__(self, initial: float, cap: float, rand: Callable[[], float] = random.random) -> None:
        self.initial, self.cap, self.rand = initial, cap, rand
        self.attempt = 0

    def next_delay(self) -> float:
        """The delay before the next attempt (and counts the attempt)."""
        base = min(self.cap, self.initial * 2**self.attempt)
        self.attempt += 1
        return base / 2 + self.rand() * base / 2

    def reset(self) -> None:
        """Back to the initial delay (after a successful subscribe)."""
        self.attempt = 0


class Feed:
    """The reconnect loop around one WebSocket at a time.

    Args:
        settings: URL, stale-feed threshold, backoff and attempt limit.
        subscribe: Messages to send right after connecting (within the 5 s window).
        handler: Classifies frames and builds records.
        queue: The writer's bounded queue.
    """

    def __init__(self, settings: Settings, subscribe: Sequence[bytes], handler: FrameHandler, queue: asyncio.Queue):
        self.settings = settings
        self.subscribe = [message.decode() for message in subscribe]  # text frames, like Coinbase expects
        self.handler = handler
        self.queue = queue
        self.backoff = Backoff(settings.reconnect_initial_seconds, settings.reconnect_max_seconds)
        self.last_frame = time.monotonic()

    async def run(self) -> None:
        """Connects and reads until cancelled.

        Raises:
            ExhaustedRetries: RECONNECT_MAX_ATTEMPTS consecutive attempts failed.
        """
        failures = 0
        while True:
            conn_id = self.handler.new_connection()
            reason = await self._session(conn_id)
            if self.handler.subscribed:
                self.backoff.reset()
                failures = 0
            failures += 1
            self.handler.on_disconnect(reason)
            limit = self.settings.reconnect_max_attempts
            if limit and failures >= limit:
                raise ExhaustedRetries(f"gave up after {failures} failed attempts; last: {reason}")
            delay = self.backoff.next_delay()
            log.warning("reconnecting conn_id=%s reason=%r delay_s=%.2f attempt=%d", conn_id, reason, delay, failures)
            await asyncio.sleep(delay)

    async def _session(self, conn_id: str) -> str:
        url = self.settings.coinbase_ws_url
        try:
            async with connect(
                url,
                compression=None,
                max_size=self.settings.ws_max_message_bytes,
                max_queue=4096,
                open_timeout=10,
                close_timeout=2,
            ) as ws:
                log.info("connected conn_id=%s url=%s", conn_id, url)
                for message in self.subscribe:
                    await ws.send(message)
                return await self._read(ws, conn_id)
        except ConnectionClosed as exc:
            return f"closed: {exc}"
        except (OSError, TimeoutError, WebSocketException) as exc:  # refused, TLS, handshake, HTTP status
            return f"connect failed: {type(exc).__name__}: {exc}"

    async def _read(self, ws: ClientConnection, conn_id: str) -> str:
        self.last_frame = time.monotonic()
        stale = asyncio.Event()
        watchdog = asyncio.create_task(self._watchdog(ws, stale, conn_id))
        handler, queue = self.handler, self.queue
        try:
            while True:
                try:
                    frame = await ws.recv(decode=False)
                except ConnectionClosed as exc:
                    if exc.sent is not None and exc.sent.code == CloseCode.MESSAGE_TOO_BIG:
                        handler.on_oversized(exc.sent.reason)
                        return f"oversized message: {exc.sent.reason}"
                    return (
                        f"stale feed: no message for {self.settings.stale_feed_seconds}s"
                        if stale.is_set()
                        else (f"closed: {exc}")
                    )
                self.last_frame = time.monotonic()
                record = handler.on_frame(frame)
                if record is not None:
                    try:
                        queue.put_nowait(record)
                    except asyncio.QueueFull:
                        await queue.put(record)  # the disk is behind: push back on the socket
                if handler.abandon:
                    return handler.abandon
        finally:
            watchdog.cancel()

    async def _watchdog(self, ws: ClientConnection, stale: asyncio.Event, conn_id: str) -> None:
        limit = self.settings.stale_feed_seconds
        while True:
            await asyncio.sleep(min(1.0, limit / 4))
            silent = time.monotonic() - self.last_frame
            if silent >= limit:
                log.warning("stale feed conn_id=%s silent_s=%.1f: closing", conn_id, silent)
                stale.set()
                ws.transport.abort()  # a stalled peer would not answer a close handshake
                return
