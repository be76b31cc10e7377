"""Request heads that break the limits, from real sockets: a head over the size limit gets
431 with the contract's JSON error (Tornado alone closes without a word), and a head that
never ends is dropped within the head timeout; both are counted. Against the whole server
with its own limits, and against the guard alone with a timeout short enough to wait for.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator

import orjson
import pytest
import tornado.gen
import tornado.iostream
import tornado.web
import tornado.websocket

from dashboard.server import MAX_HEADER_BYTES
from dashboard.transports.head_guard import HeadGuardedServer
from tests.conftest import TEST_CONFIG
from tests.healthy import Watched
from tests.rawhttp import RawConnection


@pytest.fixture(scope="module")
def watched() -> Iterator[Watched]:
    with Watched.serving(TEST_CONFIG) as w:
        yield w


def answer_to(port: int, head: bytes) -> bytes:
    """What the server sends to ``head`` until it closes the connection."""
    conn = RawConnection(port)
    try:
        conn.sock.sendall(head)
    except OSError:  # closed while the head was still going out: what came back counts
        pass
    received = b""
    while True:
        try:
            data = conn.sock.recv(65536)
        except (ConnectionResetError, TimeoutError):
            break
        if not data:
            break
        received += data
    conn.close()
    return received


def too_large(received: bytes) -> dict[str, str]:
    head, _, body = received.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 431 Request Header Fields Too Large\r\n"), received[:200]
    assert b"\r\ncontent-type: application/json" in head.lower()
    error: dict[str, str] = orjson.loads(body)
    return error


BIG = b"a" * (MAX_HEADER_BYTES + 100)


@pytest.mark.parametrize("head", [
    pytest.param(b"GET /api/symbols HTTP/1.1\r\nHost: x\r\nCookie: " + BIG + b"\r\n\r\n",
                 id="one-big-header"),
    pytest.param(b"GET /api/symbols HTTP/1.1\r\nHost: x\r\n"
                 + b"".join(b"X-%d: %s\r\n" % (i, b"b" * 90) for i in range(200)) + b"\r\n",
                 id="many-headers"),
    pytest.param(b"GET /ws?symbols=" + BIG + b" HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n"
                 b"Connection: Upgrade\r\n\r\n", id="websocket-target"),
    pytest.param(b"GET /sse HTTP/1.1\r\nHost: x\r\nX-Big: " + b"c" * 1_000_000, id="unended-1MB"),
])
def test_a_head_over_the_limit_gets_431_with_the_json_error(watched: Watched, head: bytes) -> None:
    before = watched.server.metric("dashboard_http_heads_refused_total", reason="too_large")
    error = too_large(answer_to(watched.port, head))
    assert error == {"type": "error", "code": "bad_request",
                     "message": f"request head over {MAX_HEADER_BYTES} bytes"}
    after = watched.server.metric("dashboard_http_heads_refused_total", reason="too_large")
    assert after == before + 1
    watched.assert_unharmed()


def test_a_second_request_over_the_limit_on_a_kept_alive_connection_gets_431(
    watched: Watched,
) -> None:
    conn = RawConnection(watched.port)
    conn.request(b"/api/symbols")
    head = conn.head()
    assert head is not None and head.status == 200
    conn.body(head)
    conn.sock.sendall(b"GET /api/symbols HTTP/1.1\r\nHost: x\r\nCookie: " + BIG + b"\r\n\r\n")
    assert too_large(conn.sock.recv(65536))["message"].startswith("request head over")
    conn.close()


def test_a_head_within_the_limit_is_served(watched: Watched) -> None:
    """The limit is on the head, not near it: a 15 KiB cookie is a browser's to send."""
    conn = RawConnection(watched.port)
    conn.request(b"/api/symbols", [("Cookie", b"d" * (MAX_HEADER_BYTES - 1024))])
    head = conn.head()
    assert head is not None and head.status == 200
    conn.close()


# -- the head timeout, on the guard alone ---------------------------------------------------

TIMEOUT_S = 0.5
#: Room for a busy two-core machine running other tests too.
SLACK_S = 3.0


class Hello(tornado.web.RequestHandler):
    def get(self) -> None:
        self.finish(b"hello")


SLOW_WRITES = 8


class Slow(tornado.web.RequestHandler):
    """A response that takes twice the head timeout, flushed as it goes."""

    async def get(self) -> None:
        for _ in range(SLOW_WRITES):
            self.write(b"tick")
            await self.flush()
            await tornado.gen.sleep(TIMEOUT_S / 4)
        self.finish()


class Echo(tornado.websocket.WebSocketHandler):
    def on_message(self, message: str | bytes) -> None:
        self.write_message(message)


@pytest.fixture
def guarded(io_loop: object) -> Iterator[tuple[int, list[str]]]:
    """A guarded server on a free port with a short head timeout, and what it refused."""
    refused: list[str] = []
    app = tornado.web.Application([(r"/", Hello), (r"/slow", Slow), (r"/echo", Echo)])
    server = HeadGuardedServer(app, max_header_size=4096, on_refused=refused.append,
                               head_timeout_s=TIMEOUT_S)
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(16)
    sock.setblocking(False)
    server.add_socket(sock)
    yield sock.getsockname()[1], refused
    server.stop()


async def drain(stream: tornado.iostream.IOStream) -> tuple[bytes, float]:
    """What came before the server closed, and how long that took."""
    started = time.monotonic()
    data = await stream.read_until_close()
    return data, time.monotonic() - started


async def connected(port: int) -> tornado.iostream.IOStream:
    stream = tornado.iostream.IOStream(socket.socket())
    await stream.connect(("127.0.0.1", port))
    return stream


@pytest.mark.gen_test(timeout=15)
async def test_a_head_that_never_ends_is_dropped_and_counted(
    guarded: tuple[int, list[str]],
) -> None:
    port, refused = guarded
    stream = await connected(port)
    started = time.monotonic()
    await stream.write(b"GET / HTTP/1.1\r\nHost: x\r\n")
    while not stream.closed() and time.monotonic() - started < TIMEOUT_S + SLACK_S:
        try:  # a slow loris: a byte of a header every 100 ms, never the blank line
            await stream.write(b"X")
        except tornado.iostream.StreamClosedError:
            break
        await tornado.gen.sleep(0.1)
    data, _ = await drain(stream)
    elapsed = time.monotonic() - started
    assert data == b"" and TIMEOUT_S <= elapsed < TIMEOUT_S + SLACK_S, (data, elapsed)
    assert refused == ["timeout"]


@pytest.mark.gen_test(timeout=15)
async def test_a_connection_that_never_sends_is_dropped_and_counted(
    guarded: tuple[int, list[str]],
) -> None:
    port, refused = guarded
    data, elapsed = await drain(await connected(port))
    assert data == b"" and elapsed < TIMEOUT_S + SLACK_S
    assert refused == ["timeout"]


@pytest.mark.gen_test(timeout=15)
async def test_an_idle_kept_alive_connection_is_closed_uncounted(
    guarded: tuple[int, list[str]],
) -> None:
    port, refused = guarded
    stream = await connected(port)
    await stream.write(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    data, elapsed = await drain(stream)
    assert data.startswith(b"HTTP/1.1 200 ") and data.endswith(b"hello"), data
    assert TIMEOUT_S <= elapsed < TIMEOUT_S + SLACK_S
    assert refused == []


@pytest.mark.gen_test(timeout=15)
async def test_a_slow_head_that_ends_in_time_is_served(guarded: tuple[int, list[str]]) -> None:
    port, refused = guarded
    stream = await connected(port)
    for part in (b"GET / HTTP/1.1\r\n", b"Host: x\r\n", b"\r\n"):
        await stream.write(part)
        await tornado.gen.sleep(TIMEOUT_S / 5)
    head = await stream.read_until(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 ")
    stream.close()
    assert refused == []


@pytest.mark.gen_test(timeout=15)
async def test_a_websocket_and_a_long_response_live_past_the_head_timeout(
    guarded: tuple[int, list[str]],
) -> None:
    """Once its head is in, a connection is the handler's: the head timeout never ends it."""
    port, refused = guarded
    ws = await tornado.websocket.websocket_connect(f"ws://127.0.0.1:{port}/echo")
    stream = await connected(port)
    await stream.write(b"GET /slow HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    await tornado.gen.sleep(3 * TIMEOUT_S)
    await ws.write_message("still here")
    assert await ws.read_message() == "still here"
    ws.close()
    data, _ = await drain(stream)
    assert data.endswith(b"0\r\n\r\n") and data.count(b"tick") == SLOW_WRITES, data
    assert refused == []
