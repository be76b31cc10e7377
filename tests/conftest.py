"""Real servers on loopback ports, started inside the test's own IOLoop."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Awaitable, Callable, Iterator
from typing import Any, TypeVar

import pytest
from tornado.ioloop import IOLoop

from dashboard.config import Config
from dashboard.server import Server
from tests.fake_exchanges import FakeBinance, FakeCoinbase

#: Fast batches so hundreds of them pass in a second or two.
TEST_CONFIG = Config(
    host="127.0.0.1", port=0, symbols=20, tick_rate=2000.0, seed=7, batch_ms=10.0,
    history_s=5.0, ping_interval_s=20.0, ping_timeout_s=20.0, keepalive_s=15.0,
)

StartServer = Callable[..., Awaitable[Server]]


@pytest.fixture
def start_server(io_loop: IOLoop) -> Iterator[StartServer]:
    """``await start_server(batch_ms=5, ...)``: a started server with those config changes."""
    started: list[Server] = []

    async def start(**changes: Any) -> Server:
        server = Server(dataclasses.replace(TEST_CONFIG, **changes))
        await server.start()
        started.append(server)
        return server

    yield start
    for server in started:
        io_loop.run_sync(server.stop, timeout=10)


F = TypeVar("F", FakeBinance, FakeCoinbase)


@pytest.fixture
def started(io_loop: IOLoop) -> Iterator[Callable[[F], Awaitable[F]]]:
    """``fake = await started(FakeBinance(...))``: a fake exchange started now and stopped
    after the test, whether it passed or not."""
    fakes: list[FakeBinance | FakeCoinbase] = []

    async def start(fake: F) -> F:
        await fake.start()
        fakes.append(fake)
        return fake

    yield start
    for fake in fakes:
        io_loop.run_sync(fake.stop, timeout=5)


def require(available: bool, what: str) -> None:
    """Skip a test whose component is missing here, but fail it where it must run:
    ``.ci/run`` sets DASHBOARD_TEST_STRICT=1 after installing every component."""
    if available:
        return
    if os.environ.get("DASHBOARD_TEST_STRICT") == "1":
        pytest.fail(f"{what} is required (DASHBOARD_TEST_STRICT=1)")
    pytest.skip(f"{what} is not installed here")


@pytest.fixture
def redis_server() -> Iterator[Any]:
    """A started ``redis-server`` on a free port (skipped here when it is not installed)."""
    from tests.redis_server import BINARY, RedisServer

    require(BINARY is not None, "redis-server (apt-get install redis-server)")
    server = RedisServer()
    server.start()
    yield server
    server.stop()
