"""A well-behaved WebSocket client on its own thread and event loop, reading every message as
it comes while a test attacks the server from the main thread: what it sees says whether
the others were served."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import threading
from collections.abc import Iterator
from typing import Any

import orjson
import tornado.websocket

from dashboard.config import Config
from dashboard.metrics import TRANSPORTS
from tests.clients import metric
from tests.logs import LogRecorder
from tests.threaded import ServerThread, wait_until


class HealthyClient:
    def __init__(self, port: int, query: str = "") -> None:
        self.last_seq: int | None = None
        self.batches = 0
        #: (last seq, first seq of the next message) for every gap in the contract's sense.
        self.gaps: list[tuple[int, int]] = []
        self.others: list[dict[str, Any]] = []
        #: Close code and reason, when the server closed it.
        self.closed_by_server: tuple[int | None, str | None] | None = None
        self._leaving = False
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._thread.start()
        url = f"ws://127.0.0.1:{port}/ws?{query}"
        self._conn = asyncio.run_coroutine_threadsafe(self._connect(url), self._loop).result(10)
        self._reader = asyncio.run_coroutine_threadsafe(self._read(), self._loop)

    @staticmethod
    async def _connect(url: str) -> tornado.websocket.WebSocketClientConnection:
        return await tornado.websocket.websocket_connect(url)

    async def _read(self) -> None:
        while (frame := await self._conn.read_message()) is not None:
            self._take(orjson.loads(frame))
        if not self._leaving:
            self.closed_by_server = (self._conn.close_code, self._conn.close_reason)

    def _take(self, msg: dict[str, Any]) -> None:
        """The gap test: ``(first_seq or seq) > last_seq + 1``; a snapshot's seq is the last
        batch it reflects."""
        if msg["type"] == "snapshot":
            self.last_seq = msg["seq"]
        elif msg["type"] == "batch":
            first = msg.get("first_seq", msg["seq"])
            if self.last_seq is not None and first > self.last_seq + 1:
                self.gaps.append((self.last_seq, first))
            self.last_seq = msg["seq"]
            self.batches += 1
        else:
            self.others.append(msg)

    def assert_served_through(self, seq: int, timeout_s: float = 10.0) -> None:
        """It got every batch up to ``seq``, with no gap, and is still connected."""
        wait_until(
            lambda: self.closed_by_server is not None or (self.last_seq or 0) >= seq,
            timeout_s, f"the healthy client reaching seq {seq} (at {self.last_seq})",
        )
        assert self.closed_by_server is None, f"closed by the server: {self.closed_by_server}"
        assert self.gaps == [], f"gaps: {self.gaps[:5]}"
        assert self.others == [], f"unexpected messages: {self.others[:3]}"

    def close(self) -> None:
        self._leaving = True
        self._loop.call_soon_threadsafe(self._conn.close)
        self._reader.result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)
        self._loop.close()


@dataclasses.dataclass
class Watched:
    """A live server on its own thread, a healthy client reading from it, and the server's
    log records: what a test attacking the server must leave unharmed."""

    server: ServerThread
    healthy: HealthyClient
    logs: LogRecorder

    @classmethod
    @contextlib.contextmanager
    def serving(cls, config: Config, healthy_query: str = "") -> Iterator[Watched]:
        """``healthy_query`` narrows what the healthy client reads (a busy feed's every
        tick would make it a slow client on a busy machine); every batch still comes."""
        with LogRecorder() as logs:
            server = ServerThread(config).start()
            healthy = HealthyClient(server.port, healthy_query)
            try:
                yield cls(server, healthy, logs)
            finally:
                healthy.close()
                server.close()

    @property
    def port(self) -> int:
        return self.server.port

    def connections(self) -> dict[str, float]:
        text = self.server.get("/metrics").decode()
        return {t: metric(text, "dashboard_connections", transport=t) for t in TRANSPORTS}

    def wait_for_only_the_healthy_client(self, timeout_s: float, what: str) -> None:
        wait_until(
            lambda: self.connections() == {"ws": 1.0, "sse": 0.0, "stream": 0.0}, timeout_s, what
        )

    def assert_unharmed(self) -> None:
        """The server still serves; every other connection is gone; nothing was logged as
        an error, with a traceback or on a forged line; and the healthy client got every
        batch up to now, with no gap, on a connection that stayed open."""
        self.wait_for_only_the_healthy_client(10, "every connection but the healthy one closed")
        seq = orjson.loads(self.server.get("/healthz"))["seq"]
        self.healthy.assert_served_through(seq)
        assert self.logs.problems() == []
