"""Clients that misbehave at the socket, against a real server on loopback while a healthy
WebSocket client keeps reading: one that goes silent after the handshake, one that stops
reading a stream, one that sends garbage instead of frames or of a request, one that drops
a stream in the middle of an event, and one that tries to forge log lines. Each is gone
from ``/metrics`` within the timeouts, nothing is logged as an error or with a traceback,
and the healthy client gets every seq.
"""

from __future__ import annotations

import dataclasses
import socket
import time
from collections.abc import Callable, Iterator

import orjson
import pytest

from dashboard.server import HOUSEKEEPING_S
from tests.conftest import TEST_CONFIG
from tests.healthy import Watched
from tests.rawhttp import RawConnection
from tests.rawws import OP_CLOSE, OP_TEXT, RawWebSocket, encode_frame
from tests.threaded import wait_until

PING_INTERVAL_S, PING_TIMEOUT_S = 0.5, 1.0
#: A dead peer is aborted this long after its last pong, at the latest.
DEAD_PEER_S = PING_INTERVAL_S + PING_TIMEOUT_S + HOUSEKEEPING_S
#: Room for a busy two-core machine running other tests too.
SLACK_S = 5.0
#: Pings decide here: the slow-client timeout is far away.
PINGING = dataclasses.replace(
    TEST_CONFIG, ping_interval_s=PING_INTERVAL_S, ping_timeout_s=PING_TIMEOUT_S,
    slow_client_timeout_s=60.0,
)
#: A fast feed and a short slow-client timeout: a socket that stops reading fills in a
#: second or two and is dropped half a second later.
BUSY = dataclasses.replace(
    TEST_CONFIG, symbols=50, tick_rate=20_000.0, slow_client_timeout_s=0.5,
)


@pytest.fixture(scope="module")
def pinging_server() -> Iterator[Watched]:
    with Watched.serving(PINGING) as watched:
        yield watched


@pytest.fixture(scope="module")
def busy_server() -> Iterator[Watched]:
    with Watched.serving(BUSY, healthy_query="symbols=AAPL") as watched:
        yield watched


@pytest.fixture
def pinging(pinging_server: Watched) -> Watched:
    pinging_server.logs.records.clear()  # each test answers for its own records
    return pinging_server


@pytest.fixture
def busy(busy_server: Watched) -> Watched:
    busy_server.logs.records.clear()
    return busy_server


def read_until_closed(conn: RawConnection, timeout_s: float) -> bytes:
    """Everything the server sends until it closes the connection (EOF or reset)."""
    received = b""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            data = conn.sock.recv(65536)
        except ConnectionResetError:
            return received
        except TimeoutError:
            continue
        if not data:
            return received
        received += data
    raise AssertionError(f"still open after {timeout_s} s")


# -- half-open -----------------------------------------------------------------------------


def test_a_websocket_that_goes_silent_after_the_handshake_is_gone_within_the_ping_timeout(
    pinging: Watched,
) -> None:
    """Never reads, never answers a ping, never sends a FIN."""
    def dead_peers() -> float:
        return pinging.server.metric("dashboard_dead_peers_total", transport="ws")

    before = dead_peers()
    silent = RawWebSocket(pinging.port, "/ws", rcvbuf=4096)
    assert silent.status == 101
    wait_until(lambda: dead_peers() == before + 1, DEAD_PEER_S + SLACK_S, "aborted as dead")
    pinging.assert_unharmed()  # and so gone from the connections gauge
    silent.close()


@pytest.mark.parametrize("path, transport", [("/sse", "sse"), ("/stream", "stream")])
def test_a_stream_that_stops_reading_is_dropped_once_its_buffer_fills(
    busy: Watched, path: str, transport: str,
) -> None:
    """Asks, then never reads again and never closes: a small window fills, the server's
    writes stop being taken, and the slow-client timeout drops it."""
    dropped_before = busy.server.metric("dashboard_slow_consumers_dropped_total",
                                        transport=transport)
    stalled = RawConnection(busy.port, rcvbuf=4096)
    stalled.request(path.encode(), [("Accept-Encoding", b"identity")])
    wait_until(
        lambda: busy.server.metric("dashboard_slow_consumers_dropped_total",
                                   transport=transport) == dropped_before + 1,
        15, "the stalled stream dropped",
    )
    busy.assert_unharmed()
    stalled.close()


# -- garbage -------------------------------------------------------------------------------

MASK = b"\x0f\x1e\x2d\x3c"


@pytest.mark.parametrize("garbage", [
    pytest.param(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + bytes(range(64)), id="tls"),
    pytest.param(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", id="http"),
    pytest.param(encode_frame(OP_TEXT, b"{}", rsv=4, mask=MASK), id="reserved-bits"),
    pytest.param(encode_frame(0x3, b"x", mask=MASK), id="unknown-opcode"),
    pytest.param(encode_frame(OP_TEXT, b"\xff\xfe", mask=MASK), id="text-not-utf8"),
    pytest.param(encode_frame(OP_CLOSE, b"\x03\xe8\xff", mask=MASK), id="close-reason-not-utf8"),
    pytest.param(encode_frame(OP_TEXT, b"", length=2**63, mask=MASK), id="length-2**63"),
    pytest.param(encode_frame(0x0, b"more", mask=MASK), id="continuation-of-nothing"),
    pytest.param(b"\x81", id="half-a-header-then-silence"),
])
def test_garbage_instead_of_a_frame_is_closed(pinging: Watched, garbage: bytes) -> None:
    """The server fails the connection (RFC 6455 §7.1.7): an abort, or a close frame whose
    code says why; one that waits for the rest of a frame is a dead peer at the next ping."""
    ws = RawWebSocket(pinging.port, "/ws?symbols=AAPL")
    assert ws.status == 101
    ws.sock.sendall(garbage)
    received = read_until_closed(ws, DEAD_PEER_S + SLACK_S)
    closes = [p for p in frames(received) if p[0] == OP_CLOSE]
    for _, payload in closes:
        assert int.from_bytes(payload[:2], "big") in (1002, 1007, 1009), payload
    pinging.assert_unharmed()
    ws.close()


def frames(data: bytes) -> Iterator[tuple[int, bytes]]:
    """The whole server frames in ``data`` (a frame cut off by the close is left out)."""
    while len(data) >= 2:
        n, at = data[1] & 0x7F, 2
        if n == 126:
            n, at = int.from_bytes(data[2:4], "big"), 4
        elif n == 127:
            n, at = int.from_bytes(data[2:10], "big"), 10
        if len(data) < at + n:
            return
        yield data[0] & 0x0F, data[at:at + n]
        data = data[at + n:]


@pytest.mark.parametrize("garbage", [
    pytest.param(b"\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03" + bytes(range(32)) + b"\r\n\r\n",
                 id="tls"),
    pytest.param(b"\x00" * 64 + b"\r\n\r\n", id="nul"),
    pytest.param(b"GET /ws HTTP/9.9\r\nHost: x\r\n\r\n", id="http-9.9"),
    pytest.param(b"GET /ws\r\n\r\n", id="http-0.9"),
    pytest.param(b"\xff\xfe\xfd\r\nX: \x85\r\n\r\n", id="bytes"),
])
def test_garbage_instead_of_a_request_gets_a_400_or_is_closed(
    pinging: Watched, garbage: bytes,
) -> None:
    conn = RawConnection(pinging.port)
    conn.sock.sendall(garbage)
    answer = read_until_closed(conn, SLACK_S)
    assert answer == b"" or answer.startswith(b"HTTP/1.1 400 "), answer[:200]
    assert orjson.loads(pinging.server.get("/healthz"))["status"] == "ok"
    pinging.assert_unharmed()
    conn.close()


# -- gone mid-event ------------------------------------------------------------------------


def shut_write(conn: RawConnection) -> None:
    """A FIN, with the socket left open and unread."""
    conn.sock.shutdown(socket.SHUT_WR)


@pytest.mark.parametrize("path, first", [
    ("/sse", b'data: {"type":"snapshot"'), ("/stream", b'{"type":"snapshot"'),
])
@pytest.mark.parametrize("leave", [
    pytest.param(lambda c: c.close(reset=True), id="reset"),
    pytest.param(RawConnection.close, id="close"),  # unread data: the kernel resets too
    pytest.param(shut_write, id="fin"),
])
def test_a_stream_dropped_in_the_middle_of_an_event_is_cleaned_up(
    busy: Watched, path: str, first: bytes, leave: Callable[[RawConnection], None],
) -> None:
    conn = RawConnection(busy.port)
    conn.request(path.encode(), [("Accept-Encoding", b"identity")])
    head = conn.head()
    assert head is not None and head.status == 200
    conn.read_until(first)  # part of the first event, not its end
    leave(conn)
    busy.assert_unharmed()
    conn.close()


# -- forged log lines ----------------------------------------------------------------------


def test_client_text_cannot_forge_a_log_line(pinging: Watched) -> None:
    """Line breaks and terminal controls a client sends reach the logs escaped: every
    record is one line of printable text."""
    requests: list[tuple[bytes, list[tuple[str, bytes]]]] = [
        (b"/..%2f..%2f%0d%0aINJECTED", []),  # a static path, URL-decoded into a warning
        (b"/a\xc2\x85b?x=\x1b[31m\xc2\x9b", []),  # NEL and terminal escapes, raw
        (b"/api/symbols?x=%0d%0aFAKE", []),
        (b"/api/bars?symbol=%ff%0a", []),  # not UTF-8: Tornado's own warning
        (b"/api/symbols", [("User-Agent", b"evil\xc2\x85agent")]),
        (b"/api/symbols", [("Content-Length", b"\xc2\x851")]),
        (b"/api/symbols", [("X-Evil\x85", b"1")]),
    ]
    for target, headers in requests:
        conn = RawConnection(pinging.port)
        conn.request(target, headers)
        assert conn.head() is not None
        conn.close()
    ws = RawWebSocket(pinging.port, "/ws?symbols=AAPL")
    ws.send(OP_TEXT, orjson.dumps({"op": "subscribe", "symbols": ["A\r\nFAKE 200"]}))
    deadline = time.monotonic() + SLACK_S
    while b'"type":"error"' not in ws.frame()[1]:  # the answer: an error, not a log line
        assert time.monotonic() < deadline, "no error for an unknown symbol"
    ws.close()
    messages = [r.getMessage() for r in pinging.logs.records]
    assert any("\\r\\nINJECTED" in m for m in messages), "the traversal warning, escaped"
    assert any("\\x85" in m for m in messages), "the raw request line, escaped"
    pinging.assert_unharmed()  # which finds any record that is not one printable line
