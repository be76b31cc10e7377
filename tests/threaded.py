"""A real server on its own event loop in a background thread, for tests whose client
blocks the main thread (Playwright's sync API, bare sockets); it can be stopped and started
again on the same port."""

from __future__ import annotations

import asyncio
import dataclasses
import threading
import time
import urllib.request
from collections.abc import Callable
from typing import Any

from dashboard.config import Config
from dashboard.server import Server
from feeds.base import Feed
from tests.clients import metric


class ServerThread:
    def __init__(self, config: Config, feed: Callable[[], Feed] | None = None) -> None:
        self.config = config
        self._feed = feed
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self._thread.start()
        self.server: Server | None = None

    def _run(self, coro: Any, timeout: float = 15) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def start(self) -> ServerThread:
        async def start() -> Server:
            server = Server(self.config, self._feed() if self._feed else None)
            await server.start()
            return server

        self.server = self._run(start())
        # Restarts come back on the same port.
        self.config = dataclasses.replace(self.config, port=self.server.port)
        return self

    @property
    def port(self) -> int:
        assert self.server is not None
        return self.server.port

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/"

    def get(self, path: str) -> bytes:
        """A plain GET from the test's thread; the body of a 200."""
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}{path}", timeout=5) as r:
            body: bytes = r.read()
            return body

    def metric(self, name: str, **labels: str) -> float:
        return metric(self.get("/metrics").decode(), name, **labels)

    def stop(self) -> None:
        if self.server is not None:
            self._run(self.server.stop())
            self.server = None

    def close(self) -> None:
        self.stop()
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(5)


def wait_until(condition: Callable[[], bool], timeout_s: float, what: str) -> None:
    """Poll ``condition`` until it holds; fail saying ``what`` did not happen in time."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, f"{what}: not within {timeout_s} s"
        time.sleep(0.02)
