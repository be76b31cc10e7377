"""Assembling one server: the feed pump, the batch clock, the hub, the handlers, and a
graceful lifecycle (WebSockets closed with 1001, streams ended, exit within the grace)."""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import logging
import socket
import ssl
import time
import uuid
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import TYPE_CHECKING, Any

import tornado.netutil
import tornado.web

from dashboard.clock import now_ms
from dashboard.config import Config
from dashboard.core.batcher import Batch, Batcher
from dashboard.core.hub import Hub
from dashboard.core.overload import Overload
from dashboard.core.params import MAX_CLIENT_MESSAGE_BYTES
from dashboard.core.symbols import SymbolTable
from dashboard.errors import BrokerError, ConfigError
from dashboard.feed_loader import build_feed
from dashboard.feed_supervisor import FeedSupervisor
from dashboard.gc_watch import PauseTimer
from dashboard.metrics import Metrics
from dashboard.scaleout.codec import FeedInfo
from dashboard.scaleout.health import BrokerHealth, redacted
from dashboard.state import ServerState
from dashboard.transports.access_log import log_request
from dashboard.transports.head_guard import HeadGuardedServer
from dashboard.transports.http_api import (
    BarsHandler,
    HealthHandler,
    MetricsHandler,
    PageHandler,
    SnapshotHandler,
    SymbolsHandler,
)
from dashboard.transports.logsafe import guard_tornado_logs
from dashboard.transports.outlet import offer_all
from dashboard.transports.streams import NDJSONHandler, SSEHandler
from dashboard.transports.websocket import WebSocketHandler
from feeds.base import Feed, FeedHealth, FeedState, Ticks
from feeds.record import RecordWriter

if TYPE_CHECKING:  # the redis package is an extra, imported only with a Redis broker
    from redis.asyncio import Redis

    from dashboard.scaleout.publisher import Publisher
    from dashboard.scaleout.reader import Reader

log = logging.getLogger(__name__)

#: Keepalives, pings and dead-peer checks run this often, so a dead peer is gone within
#: ping interval + ping timeout + 1 s.
HOUSEKEEPING_S = 0.5
#: How long stop() waits for its background tasks to take their cancel.
TASK_STOP_S = 2.0


def web_dir() -> Path:
    """The page: package data ``dashboard.web`` once installed (``setup.cfg`` maps the
    top-level ``web/`` there), or ``web/`` beside the package in a source checkout."""
    spec = importlib.util.find_spec("dashboard.web")
    if spec is not None and spec.submodule_search_locations:
        return Path(next(iter(spec.submodule_search_locations)))
    return Path(__file__).resolve().parent.parent / "web"


def make_app(state: ServerState, clients: bool = True) -> tornado.web.Application:
    """The routes; without ``clients`` (a ``--role feed`` process) no streams and no page."""
    s = {"state": state}
    routes: list[Any] = [
        (r"/healthz", HealthHandler, s),
        (r"/metrics", MetricsHandler, s),
        (r"/api/symbols", SymbolsHandler, s),
        (r"/api/snapshot", SnapshotHandler, s),
        (r"/api/bars", BarsHandler, s),
    ]
    if clients:
        routes += [
            (r"/ws", WebSocketHandler, s),
            (r"/sse", SSEHandler, s),
            (r"/stream", NDJSONHandler, s),
            (r"/(.*)", PageHandler, {"path": str(web_dir()), "default_filename": "index.html",
                                     "trusted_proxies": state.config.trusted_proxies}),
        ]
    return tornado.web.Application(
        routes,
        # Pings are the housekeeping's (see WebSocketHandler.keepalive), not Tornado's.
        websocket_ping_interval=0,
        websocket_max_message_size=MAX_CLIENT_MESSAGE_BYTES,
        log_function=log_request,  # no token= in the access log
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
    """One process of any role: ``all`` (feed and clients), ``feed`` (publishes to the
    broker) or ``edge`` (serves clients from the broker)."""

    def __init__(self, config: Config, feed: Feed | None = None) -> None:
        self.config = config
        self._supervisor = None if config.role == "edge" else FeedSupervisor(
            feed or build_feed(config), rebuild=None if feed else lambda: build_feed(config)
        )
        self._redis: Redis | None = None
        self._tls = tls_context(config.certfile, config.keyfile) if (
            config.certfile and config.keyfile) else None
        self.port = 0
        self._http: HeadGuardedServer | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._gc: PauseTimer | None = None
        self._recorder: RecordWriter | None = None
        self._publisher: Publisher | None = None
        self.state: ServerState | None = None
        #: Set when a background task ends on an error (another feed took the broker, Redis
        #: refuses this server, a bug): the process should stop with ``failure``, not go on
        #: serving frozen data.
        self.failed = asyncio.Event()
        self.failure: Exception | None = None

    @property
    def feed(self) -> Feed | None:
        """The running feed (a new instance after a restart); None on an edge."""
        return None if self._supervisor is None else self._supervisor.feed

    @property
    def url(self) -> str:
        return display_url(self.config.host, self.port, tls=self.config.certfile is not None)

    async def start(self) -> None:
        """Start the feed (or load the broker's stream), then listen. Raises ``FeedError``,
        ``BrokerError`` or ``OSError`` when it cannot."""
        c = self.config
        metrics = Metrics()
        self._gc = metrics.gc
        self._gc.install()
        health = None
        if c.broker != "memory":
            from dashboard.scaleout.connection import connect

            health = BrokerHealth(redacted(c.broker))
            self._redis = connect(c.broker)
            metrics.watch_broker(health)
        if self.feed is None:
            state, reader = await self._edge_state(metrics, health)
        else:
            state = await self._feed_state(metrics, health)
        self.state = state
        sockets = tornado.netutil.bind_sockets(
            c.port, c.host, family=_family(c.host), reuse_port=c.reuse_port
        )
        self.port = sockets[0].getsockname()[1]
        guard_tornado_logs()
        self._http = HeadGuardedServer(
            make_app(state, clients=c.role != "feed"), max_header_size=MAX_HEADER_BYTES,
            max_body_size=MAX_BODY_BYTES, ssl_options=self._tls,
            on_refused=lambda reason: metrics.heads_refused.labels(reason).inc(),
            proxy_protocol_from=c.trusted_proxies if c.proxy_protocol else (),
        )
        self._http.add_sockets(sockets)
        if self.feed is None:
            self._spawn(reader.run(state.batcher, self._edge_batch, self._edge_reset))
        else:
            self._spawn(self._pump_feed(state))
            self._spawn(self._batch_clock(state))
        self._spawn(self._housekeeping(state))

    async def _feed_state(self, metrics: Metrics, health: BrokerHealth | None) -> ServerState:
        c, feed = self.config, self.feed
        assert feed is not None
        await feed.start()
        if c.record_path:
            self._recorder = RecordWriter(c.record_path, feed.name, feed.symbols)
        table = SymbolTable(feed.symbols)
        batcher = Batcher(table.names, c.history_s, first_seq=int(now_ms()))
        if self._redis is not None and health is not None:
            from dashboard.scaleout.publisher import Publisher

            info = FeedInfo(feed.name, tuple(table.names), c.batch_ms, c.history_s,
                            run=uuid.uuid4().hex)
            self._publisher = Publisher(self._redis, batcher, info, health)
            await self._publisher.start()
            self._spawn(self._publisher.run())
        metrics.watch_feed(feed.name, feed.health)
        return ServerState(
            config=c, table=table, batcher=batcher, hub=Hub(batcher, table, offer_all=offer_all),
            metrics=metrics, feed_name=feed.name, feed_health=feed.health, broker=health,
            overload=Overload(c.batch_ms / 1000),
        )

    async def _edge_state(
        self, metrics: Metrics, health: BrokerHealth | None
    ) -> tuple[ServerState, Reader]:
        """The feed's symbols and settings, state and held batches, from the broker."""
        from dashboard.scaleout.reader import Reader

        assert self._redis is not None and health is not None
        reader = Reader(self._redis, health)
        info = await reader.feed_info()
        table = SymbolTable(info.symbols)
        batcher = Batcher(table.names, info.history_s, first_seq=1)
        await reader.load(batcher)
        feed_health = FeedHealth()
        metrics.watch_feed(info.feed, feed_health)
        return ServerState(
            config=self.config, table=table, batcher=batcher, metrics=metrics,
            hub=Hub(batcher, table, wait_ahead_ms=EDGE_WAIT_AHEAD_S * 1000,
                    offer_all=offer_all),
            feed_name=info.feed, feed_health=feed_health, broker=health,
            overload=Overload(info.batch_ms / 1000, stretches=False),
        ), reader

    def _edge_batch(self, batch: Batch) -> None:
        state = self.state
        assert state is not None
        state.metrics.batches.inc()
        state.metrics.ticks_in.inc(len(batch.ticks))
        state.feed_health.message()
        _fan_out(state, batch)

    def _edge_reset(self) -> None:
        assert self.state is not None
        self.state.hub.reset(now_ms())

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(coro, name=getattr(coro, "__qualname__", None))
        task.add_done_callback(self._task_done)
        self._tasks.append(task)

    def _task_done(self, task: asyncio.Task[None]) -> None:
        error = None if task.cancelled() else task.exception()
        if error is None or self.failed.is_set():
            return
        if isinstance(error, BrokerError):
            self.failure = error
        else:
            log.error("%s failed", task.get_name(), exc_info=error)
            self.failure = RuntimeError(f"{task.get_name()} failed: {error!r}")
        self.failed.set()

    async def _pump_feed(self, state: ServerState) -> None:
        assert self._supervisor is not None
        await self._supervisor.run(lambda ticks: self._take(state, ticks),
                                   lambda: state.stopping)

    def _take(self, state: ServerState, ticks: Ticks) -> None:
        state.batcher.add(ticks)
        state.metrics.ticks_in.inc(len(ticks))
        self._record(lambda r: r.write(ticks, now_ms()))

    def _record(self, action: Callable[[RecordWriter], None]) -> None:
        """A recording that fails (a full disk) stops; the live feed and clients go on."""
        if self._recorder is None:
            return
        try:
            action(self._recorder)
        except OSError as e:
            log.error("recording to %s failed (%s); recording stopped, serving goes on",
                      self.config.record_path, e.strerror or e)
            self._recorder = None

    async def _batch_clock(self, state: ServerState) -> None:
        """Close a batch every ``batch_ms``, on a fixed grid so intervals do not drift
        (stretched while the server is overloaded, see :mod:`dashboard.core.overload`)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time()
        while True:
            interval = state.overload.wait_s()
            deadline += interval
            await asyncio.sleep(max(0.0, deadline - loop.time()))
            if loop.time() - deadline > interval:  # fell behind: skip, do not burst
                deadline = loop.time()
            try:
                if self.feed is not None and (due := self.feed.due()) is not None:
                    self._take(state, due)
                batch = state.batcher.close(now_ms())
                if batch is not None:
                    state.metrics.batches.inc()
                    _fan_out(state, batch)
                    if self._publisher is not None:
                        self._publisher.notify()
            except Exception:
                log.exception("batch %d failed; going on", state.batcher.seq)

    async def _housekeeping(self, state: ServerState) -> None:
        while True:
            await asyncio.sleep(HOUSEKEEPING_S)
            now = now_ms()
            self._record(RecordWriter.flush)
            if self.feed is None:
                _watch_edge_feed(state.feed_health)
                state.hub.expire_waiting(now)
            for client in list(state.clients):
                try:
                    client.keepalive(now)
                except Exception:  # one client's trouble must not stop the others' pings
                    log.exception("keepalive of a %s client failed", client.transport)

    async def stop(self) -> None:
        """Refuse new clients, close WebSockets with 1001 and end streams, wait up to the
        grace for them to go, then tear down whatever is left."""
        state = self.state
        if state is not None:
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
        if self._tasks:  # bounded: a task that ignores its cancel must not hold up exit
            _, stuck = await asyncio.wait(self._tasks, timeout=TASK_STOP_S)
            for task in stuck:
                log.warning("%s did not stop in time", task.get_name())
        if self._gc is not None:
            self._gc.uninstall()
        if self.feed is not None:
            await self.feed.stop()
        if self._recorder is not None:
            self._recorder.close()
        if self._publisher is not None:
            await self._publisher.release()
        if self._redis is not None:
            await self._redis.aclose()
        if self._http is not None:
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._http.close_all_connections(), 0.5)


#: A client resuming from a seq this edge has not read yet (it comes from an edge further
#: ahead) waits this long for it, then gets a reset snapshot.
EDGE_WAIT_AHEAD_S = 5.0
#: An edge whose broker is up but brings no batch for this long shows its feed as stale
#: (the feed process stopped, or its own source went quiet).
EDGE_FEED_STALE_S = 3.0


def _fan_out(state: ServerState, batch: Batch) -> None:
    """Publish ``batch`` to every client, timed for the overload check in this thread's CPU
    time (the kernel's work in ``send()`` included, the garbage collector's left out): a
    process the machine descheduled for a while, or a collection that happened to start
    in it, is not one that cannot keep up. The same time sets the best compression's
    share."""
    o, gc = state.overload, state.metrics.gc
    started, collecting = time.thread_time(), gc.seconds
    conflated = state.hub.publish(batch, conflate=o.conflating, best_s=o.best_compression_s())
    took = time.thread_time() - started - (gc.seconds - collecting)
    o.fanned_out(max(0.0, took), best_s=state.hub.best_spent_s)
    state.metrics.overload_conflated_ticks.inc(conflated)


def _watch_edge_feed(health: FeedHealth) -> None:
    last = health.last_message_at
    if health.state is FeedState.LIVE and last is not None and (
            time.monotonic() - last > EDGE_FEED_STALE_S):
        health.state = FeedState.STALE  # the next batch makes it live again


def _family(host: str) -> socket.AddressFamily:
    return socket.AF_INET6 if ":" in host else socket.AF_UNSPEC
