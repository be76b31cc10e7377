"""Assembling one server: the feed pump, the batch clock, the hub, the handlers, and a
graceful lifecycle (WebSockets closed with 1001, streams ended, exit within the grace)."""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import logging
import socket
import ssl
from collections.abc import Coroutine
from pathlib import Path
from typing import Any

import tornado.httpserver
import tornado.netutil
import tornado.web

from dashboard.batcher import Batcher
from dashboard.config import Config
from dashboard.errors import ConfigError
from dashboard.feed_loader import build_feed
from dashboard.http_api import (
    BarsHandler,
    HealthHandler,
    MetricsHandler,
    PageHandler,
    SnapshotHandler,
    SymbolsHandler,
)
from dashboard.hub import Hub
from dashboard.metrics import Metrics
from dashboard.params import MAX_CLIENT_MESSAGE_BYTES
from dashboard.state import ServerState, now_ms
from dashboard.stream_handler import NDJSONHandler, SSEHandler
from dashboard.symbols import SymbolTable
from dashboard.ws_handler import WebSocketHandler
from feeds.base import Feed, FeedState
from feeds.record import RecordWriter

log = logging.getLogger(__name__)

#: Keepalives, pings and dead-peer checks run this often, so a dead peer is gone within
#: ping interval + ping timeout + 1 s.
HOUSEKEEPING_S = 0.5


def web_dir() -> Path:
    """The page: package data ``dashboard.web`` once installed (``setup.cfg`` maps the
    top-level ``web/`` there), or ``web/`` beside the package in a source checkout."""
    spec = importlib.util.find_spec("dashboard.web")
    if spec is not None and spec.submodule_search_locations:
        return Path(next(iter(spec.submodule_search_locations)))
    return Path(__file__).resolve().parent.parent / "web"


def make_app(state: ServerState) -> tornado.web.Application:
    s = {"state": state}
    return tornado.web.Application(
        [
            (r"/ws", WebSocketHandler, s),
            (r"/sse", SSEHandler, s),
            (r"/stream", NDJSONHandler, s),
            (r"/healthz", HealthHandler, s),
            (r"/metrics", MetricsHandler, s),
            (r"/api/symbols", SymbolsHandler, s),
            (r"/api/snapshot", SnapshotHandler, s),
            (r"/api/bars", BarsHandler, s),
            (r"/(.*)", PageHandler, {"path": str(web_dir()), "default_filename": "index.html"}),
        ],
        # Pings are the housekeeping's (see WebSocketHandler.keepalive), not Tornado's.
        websocket_ping_interval=0,
        websocket_max_message_size=MAX_CLIENT_MESSAGE_BYTES,
    )


#: Request limits: a dashboard takes no uploads, and no honest request line or header
#: block comes near these.
MAX_HEADER_BYTES = 16 * 1024
MAX_BODY_BYTES = 64 * 1024


def display_url(host: str, port: int, tls: bool = False) -> str:
    scheme = "https" if tls else "http"
    return f"{scheme}://[{host}]:{port}" if ":" in host else f"{scheme}://{host}:{port}"


def tls_context(certfile: str, keyfile: str) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    try:
        context.load_cert_chain(certfile, keyfile)
    except (OSError, ValueError) as e:  # ssl.SSLError is an OSError
        reason = getattr(e, "strerror", None) or str(e)
        raise ConfigError(
            "--certfile", f"cannot use {certfile} with {keyfile}: {reason}"
        ) from None
    return context


class Server:
    def __init__(self, config: Config, feed: Feed | None = None) -> None:
        self.config = config
        self.feed = feed or build_feed(config)
        self._tls = tls_context(config.certfile, config.keyfile) if (
            config.certfile and config.keyfile) else None
        self.port = 0
        self._http: tornado.httpserver.HTTPServer | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._recorder: RecordWriter | None = None
        self.state: ServerState | None = None

    @property
    def url(self) -> str:
        return display_url(self.config.host, self.port, tls=self.config.certfile is not None)

    async def start(self) -> None:
        """Start the feed, then listen. Raises ``FeedError`` or ``OSError`` when it cannot."""
        c = self.config
        await self.feed.start()
        if c.record_path:
            self._recorder = RecordWriter(c.record_path, self.feed.name, self.feed.symbols)
        table = SymbolTable(self.feed.symbols)
        batcher = Batcher(table.names, c.history_s, first_seq=int(now_ms()))
        metrics = Metrics()
        state = self.state = ServerState(
            config=c, table=table, batcher=batcher, hub=Hub(batcher, table, metrics),
            metrics=metrics, feed_name=self.feed.name, feed_health=self.feed.health,
        )
        metrics.watch_feed(self.feed.name, self.feed.health)
        sockets = tornado.netutil.bind_sockets(c.port, c.host, family=_family(c.host))
        self.port = sockets[0].getsockname()[1]
        self._http = tornado.httpserver.HTTPServer(
            make_app(state), idle_connection_timeout=60, max_header_size=MAX_HEADER_BYTES,
            max_body_size=MAX_BODY_BYTES,
            ssl_options=self._tls,
        )
        self._http.add_sockets(sockets)
        self._spawn(self._pump_feed(state))
        self._spawn(self._batch_clock(state))
        self._spawn(self._housekeeping(state))

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        self._tasks.append(asyncio.create_task(coro))

    async def _pump_feed(self, state: ServerState) -> None:
        try:
            async for ticks in self.feed:
                state.batcher.add(ticks)
                state.metrics.ticks_in.inc(len(ticks))
                if self._recorder is not None:
                    self._recorder.write(ticks, now_ms())
        except Exception:
            log.exception("feed %s failed; no more ticks will arrive", self.feed.name)
            return
        if state.stopping:
            return
        if self.feed.health.state is FeedState.STOPPED:  # a replay that finished, say
            log.info("feed %s ended", self.feed.name)
        else:
            log.error("feed %s ended; no more ticks will arrive", self.feed.name)

    async def _batch_clock(self, state: ServerState) -> None:
        """Close a batch every ``batch_ms``, on a fixed grid so intervals do not drift."""
        loop = asyncio.get_running_loop()
        interval = self.config.batch_ms / 1000.0
        deadline = loop.time()
        while True:
            deadline += interval
            await asyncio.sleep(max(0.0, deadline - loop.time()))
            if loop.time() - deadline > interval:  # fell behind: skip, do not burst
                deadline = loop.time()
            try:
                batch = state.batcher.close(now_ms())
                if batch is not None:
                    state.metrics.batches.inc()
                    state.hub.publish(batch)
            except Exception:
                log.exception("batch %d failed; going on", state.batcher.seq)

    async def _housekeeping(self, state: ServerState) -> None:
        while True:
            await asyncio.sleep(HOUSEKEEPING_S)
            now = now_ms()
            if self._recorder is not None:
                self._recorder.flush()
            for client in list(state.clients):
                try:
                    client.keepalive(now)
                except Exception:  # one client's trouble must not stop the others' pings
                    log.exception("keepalive of a %s client failed", client.transport)

    async def stop(self) -> None:
        """Refuse new clients, close WebSockets with 1001 and end streams, wait up to the
        grace for them to go, then tear down whatever is left."""
        state = self.state
        if state is None:
            await self.feed.stop()
            if self._recorder is not None:
                self._recorder.close()
            return
        if state.stopping:
            return
        state.stopping = True
        if self._http is not None:
            self._http.stop()
        for client in list(state.clients):
            client.shutdown()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.config.shutdown_grace_s
        while state.clients and loop.time() < deadline:
            await asyncio.sleep(0.02)
        for client in list(state.clients):
            client.abort()
        for task in self._tasks:
            task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.gather(*self._tasks, return_exceptions=True)
        await self.feed.stop()
        if self._recorder is not None:
            self._recorder.close()
        if self._http is not None:
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._http.close_all_connections(), 0.5)


def _family(host: str) -> socket.AddressFamily:
    return socket.AF_INET6 if ":" in host else socket.AF_UNSPEC
