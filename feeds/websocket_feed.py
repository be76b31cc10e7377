"""What every exchange adapter shares: WebSocket connections kept alive forever.

Each connection (a *shard*: exchanges cap the streams one connection may carry) runs its
own loop: connect, subscribe, read, and on any failure reconnect with exponential backoff
and jitter, up to a cap, forever by default (a capped retry count that gives up silently is
the failure users of feed libraries report most). A watchdog marks the feed stale when
nothing at all — not even a heartbeat — has arrived for ``stale_s``, and reconnects after
``watchdog_s``. A malformed frame is counted and skipped, never fatal.

Adapters implement :meth:`WebSocketFeed.shards` (the URLs), :meth:`on_open` (subscribe),
and :meth:`on_message` (parse one decoded frame into rows of :attr:`rows`).
"""

from __future__ import annotations

import abc
import asyncio
import contextlib
import enum
import logging
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Any

import orjson
import tornado.websocket

from feeds.base import (
    Feed,
    FeedError,
    FeedSpec,
    FeedState,
    Symbol,
    Ticks,
    jittered_backoff,
)
from feeds.rows import RowBuffer

log = logging.getLogger(__name__)

#: Exchange frames are small; a bigger one is a broken or hostile peer.
MAX_FRAME_BYTES = 4 * 1024 * 1024


class ParseError(ValueError):
    """A frame that does not have the documented shape."""


class Action(enum.Enum):
    RECONNECT = "reconnect"  # the exchange asked us to (e.g. Binance serverShutdown)


@dataclass(frozen=True, slots=True)
class Keepalive:
    """Reconnection and watchdog settings, all from ``--feed-option``."""

    initial_backoff_s: float = 0.5
    max_backoff_s: float = 30.0
    max_retries: int = 0  # 0: forever
    stale_s: float = 10.0
    watchdog_s: float = 30.0
    connect_timeout_s: float = 10.0
    max_connection_s: float = 0.0  # 0: no limit

    @classmethod
    def from_spec(cls, spec: FeedSpec, **defaults: float) -> Keepalive:
        base = cls(**defaults)  # type: ignore[arg-type]
        values = {
            name: spec.number(name, getattr(base, name))
            for name in cls.__dataclass_fields__
        }
        values["max_retries"] = int(values["max_retries"])
        k = cls(**values)  # type: ignore[arg-type]
        if min(k.initial_backoff_s, k.max_backoff_s, k.stale_s, k.watchdog_s) <= 0:
            raise FeedError("backoff, stale and watchdog options must be positive")
        return k

    def backoff(self, attempt: int) -> float:
        return jittered_backoff(attempt, self.initial_backoff_s, self.max_backoff_s)


class WebSocketFeed(Feed):
    #: The exchange's public endpoint; ``--feed-url`` replaces it.
    default_url: str

    def __init__(self, names: Sequence[Symbol], url: str, keepalive: Keepalive) -> None:
        super().__init__()
        if not names:
            raise FeedError(f"{self.name} needs at least one symbol")
        self._symbols = tuple(names)
        self.index = {name: i for i, name in enumerate(self._symbols)}
        self.url = url.rstrip("/")
        self.keepalive = keepalive
        self.rows = RowBuffer()
        self._stopped = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._open = 0

    @property
    def symbols(self) -> Sequence[Symbol]:
        return self._symbols

    # -- what an adapter implements ---------------------------------------------------------

    @abc.abstractmethod
    def shards(self) -> list[str]:
        """One URL per connection to keep open."""

    async def on_open(self, conn: tornado.websocket.WebSocketClientConnection, shard: int) -> None:
        """Subscribe, if the exchange wants a message for it (called on every connect)."""

    @abc.abstractmethod
    def on_message(self, message: Any, shard: int) -> Action | None:
        """Parse one decoded frame into :attr:`rows`; raise ParseError for a bad one."""

    # -- lifecycle --------------------------------------------------------------------------

    async def start(self) -> None:
        for shard, url in enumerate(self.shards()):
            self._tasks.append(asyncio.create_task(self._keep(shard, url)))

    async def stop(self) -> None:
        self._stopped.set()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self.health.state = FeedState.STOPPED
        self.rows.close()

    async def ticks(self) -> AsyncIterator[Ticks]:
        async for ticks in self.rows.drain():
            yield ticks

    # -- one connection, forever ------------------------------------------------------------

    async def _keep(self, shard: int, url: str) -> None:
        k = self.keepalive
        await self._sleep(shard * 0.25)  # stagger shards: exchanges limit connects per IP
        attempt = 0
        while not self._stopped.is_set():
            got_data = await self._session(shard, url)
            if self._stopped.is_set():
                return
            attempt = 0 if got_data else attempt + 1
            if k.max_retries and attempt > k.max_retries:
                log.error("%s: giving up on %s after %d failed connects (max_retries)",
                          self.name, url, k.max_retries)
                self.health.state = FeedState.STOPPED
                return
            self.health.reconnects += 1
            self.health.state = FeedState.RECONNECTING
            await self._sleep(k.backoff(attempt))

    async def _session(self, shard: int, url: str) -> bool:
        """One connection's life; True if any data arrived on it."""
        k = self.keepalive
        try:
            conn = await tornado.websocket.websocket_connect(
                url, connect_timeout=k.connect_timeout_s, max_message_size=MAX_FRAME_BYTES
            )
        except Exception as e:  # refused, DNS, TLS, HTTP error: all mean "try again"
            log.warning("%s: cannot connect to %s: %s", self.name, url, e)
            return False
        log.info("%s: connected to %s", self.name, url)
        got_data = False
        opened = time.monotonic()
        try:
            await self.on_open(conn, shard)
            while True:
                frame = await self._read(conn, opened)
                if frame is None:
                    return got_data
                got_data = True
                self.health.message()
                try:
                    action = self.on_message(orjson.loads(frame), shard)
                except (orjson.JSONDecodeError, ParseError, KeyError, TypeError,
                        ValueError) as e:
                    self.health.parse_errors += 1
                    log.warning("%s: skipped a malformed frame (%s): %.200r", self.name, e, frame)
                    continue
                if action is Action.RECONNECT:
                    log.info("%s: the exchange asked to reconnect", self.name)
                    return got_data
        except tornado.websocket.WebSocketClosedError:
            return got_data
        finally:
            conn.close()

    async def _read(
        self, conn: tornado.websocket.WebSocketClientConnection, opened: float
    ) -> str | bytes | None:
        """The next frame; None when the connection ended, went silent past the watchdog,
        or reached the exchange's connection lifetime."""
        k = self.keepalive
        quiet_since = time.monotonic()
        while True:
            timeout = k.stale_s
            if k.max_connection_s:
                timeout = min(timeout, max(0.0, opened + k.max_connection_s - time.monotonic()))
            try:
                return await asyncio.wait_for(conn.read_message(), timeout)
            except TimeoutError:
                now = time.monotonic()
                if k.max_connection_s and now - opened >= k.max_connection_s:
                    log.info("%s: connection lifetime reached; reconnecting", self.name)
                    return None
                if now - quiet_since >= k.stale_s:
                    self.health.state = FeedState.STALE
                if now - quiet_since >= k.watchdog_s:
                    log.warning("%s: nothing for %.0fs; reconnecting", self.name, k.watchdog_s)
                    return None

    async def _sleep(self, seconds: float) -> None:
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(self._stopped.wait(), seconds)
