"""What the fake exchanges of ``tests/fake_exchanges.py`` share: a loopback WebSocket server
that replays recorded frames to every subscriber, and can drop or refuse connections."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Coroutine, Iterable
from pathlib import Path
from typing import Any

import tornado.httpserver
import tornado.netutil
import tornado.web
import tornado.websocket
from tornado.iostream import IOStream

DATA_DIR = Path(__file__).parent / "data"

Frame = dict[str, Any]


def load_frames(name: str) -> list[Frame]:
    """The frames of ``tests/data/<name>``, one JSON object per line."""
    with open(DATA_DIR / name, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def dumps(message: Any) -> str:
    return json.dumps(message, separators=(",", ":"))


def now_ms() -> int:
    return int(time.time() * 1000)


class Handler(tornado.websocket.WebSocketHandler):
    """One accepted connection of a fake: registers itself and owns its background tasks."""

    fake: FakeExchange

    def initialize(self, fake: FakeExchange) -> None:
        self.fake = fake
        self._tasks: set[asyncio.Future[None]] = set()
        self._stream: IOStream | None = None

    def check_origin(self, origin: str) -> bool:
        return True

    def accepted(self) -> None:
        """Count this connection as accepted and open (call from ``open``)."""
        assert self.ws_connection is not None
        self._stream = self.ws_connection.stream
        self.fake._accept(self)

    def spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def send(self, message: Any) -> None:
        """Send a JSON (or raw text) frame now; ignored if the connection is gone."""
        text = message if isinstance(message, str) else dumps(message)
        try:
            sent = self.write_message(text)
        except tornado.websocket.WebSocketClosedError:
            return
        sent.add_done_callback(lambda f: f.cancelled() or f.exception())  # closed meanwhile: fine

    async def replay(self, frames: Iterable[Frame], interval: float) -> None:
        """Send the frames this connection wants (:meth:`outgoing`), ``interval`` apart."""
        try:
            for frame in frames:
                message = self.outgoing(frame)
                if message is None:
                    continue
                await self.write_message(dumps(message))
                await asyncio.sleep(interval)
        except tornado.websocket.WebSocketClosedError:
            pass

    def outgoing(self, frame: Frame) -> Any | None:
        """What to send for ``frame``, or None to skip it."""
        raise NotImplementedError

    def abort(self) -> None:
        """Close the TCP stream at once: the peer sees EOF without a close frame."""
        if self._stream is not None:
            self._stream.close()

    def on_close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        self.fake._open.discard(self)


class FakeExchange:
    """The shared part of both fakes: start/stop, connection counting, drop and raw sends."""

    def __init__(self, frames: Iterable[Frame] = (), frame_interval_s: float = 0.01) -> None:
        self.frames: list[Frame] = list(frames)
        self.frame_interval_s = frame_interval_s
        self.port = 0
        self.url = ""
        #: Connections accepted so far (WebSocket handshakes that succeeded).
        self.connections = 0
        #: What each accepted connection asked for, in order of acceptance.
        self.requests: list[Any] = []
        self._open: set[Handler] = set()
        self._accepted = asyncio.Event()
        self._server: tornado.httpserver.HTTPServer | None = None

    def routes(self) -> list[tuple[str, type[Handler]]]:
        raise NotImplementedError

    async def start(self) -> None:
        """Listen on 127.0.0.1 at a free port, in the running loop."""
        app = tornado.web.Application(
            [(path, handler, {"fake": self}) for path, handler in self.routes()]
        )
        sockets = tornado.netutil.bind_sockets(0, "127.0.0.1")
        self.port = sockets[0].getsockname()[1]
        self.url = f"ws://127.0.0.1:{self.port}"
        self._server = tornado.httpserver.HTTPServer(app)
        self._server.add_sockets(sockets)

    async def stop(self) -> None:
        """Stop listening, close open connections (aborting those that do not answer within a
        second). Safe to call twice."""
        if self._server is None:
            return
        self._server.stop()
        for h in list(self._open):
            h.close(1001, "going away")
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 1.0
        while self._open and loop.time() < deadline:
            await asyncio.sleep(0.01)
        self.drop()
        await self._server.close_all_connections()
        self._server = None

    async def wait_connections(self, n: int, timeout: float = 5.0) -> None:
        """Until ``n`` connections have been accepted in total; TimeoutError after ``timeout``."""
        try:
            async with asyncio.timeout(timeout):
                while self.connections < n:
                    self._accepted.clear()
                    await self._accepted.wait()
        except TimeoutError:
            raise TimeoutError(
                f"{self.connections} of {n} connections after {timeout} s"
            ) from None

    def drop(self) -> None:
        """Abort every open connection: TCP stream closed, no WebSocket close frame."""
        handlers, self._open = list(self._open), set()
        for h in handlers:
            h.abort()

    def send_raw(self, text: str) -> None:
        """Send ``text`` as a text frame, unchanged, to every open connection."""
        for h in list(self._open):
            h.send(text)

    def _accept(self, handler: Handler) -> None:
        self.connections += 1
        self._open.add(handler)
        self._accepted.set()


# -- Binance --------------------------------------------------------------------------------
