"""A real server on its own event loop in a background thread, for tests whose client
blocks the main thread (Playwright's sync API); it can be stopped and started again on the
same port."""

from __future__ import annotations

import asyncio
import dataclasses
import threading
from collections.abc import Callable
from typing import Any

from dashboard.config import Config
from dashboard.server import Server
from feeds.base import Feed


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
    def url(self) -> str:
        assert self.server is not None
        return f"http://127.0.0.1:{self.server.port}/"

    def stop(self) -> None:
        if self.server is not None:
            self._run(self.server.stop())
            self.server = None

    def close(self) -> None:
        self.stop()
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(5)
