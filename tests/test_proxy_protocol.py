"""The PROXY protocol (v1 and v2) as HAProxy's spec writes it: the parser on its own, then
a server with ``--proxy-protocol`` on real sockets, where only a trusted proxy's header is
read, and a trusted connection without a valid one is closed and counted."""

from __future__ import annotations

import dataclasses
import ipaddress
import socket
from collections.abc import Iterator

import pytest

from dashboard.core.client_address import networks
from dashboard.wire import proxy_protocol as pp
from tests.clients import metric
from tests.conftest import TEST_CONFIG
from tests.rawhttp import RawConnection
from tests.threaded import ServerThread, wait_until


def v2(command: int, family: int, addresses: bytes) -> tuple[bytes, bytes]:
    fixed = pp.V2_SIGNATURE + bytes([0x20 | command, family]) + len(addresses).to_bytes(2, "big")
    return fixed, addresses


def tcp4(src: str, sport: int) -> bytes:
    return (ipaddress.ip_address(src).packed + bytes([127, 0, 0, 1])
            + sport.to_bytes(2, "big") + (80).to_bytes(2, "big"))


@pytest.mark.parametrize("line, source", [
    (b"PROXY TCP4 203.0.113.7 127.0.0.1 56324 443\r\n", ("203.0.113.7", 56324)),
    (b"PROXY TCP6 2001:db8::1 ::1 1 65535\r\n", ("2001:db8::1", 1)),
    (b"PROXY UNKNOWN\r\n", None),
    (b"PROXY UNKNOWN ffff::1 ::1 1 2\r\n", None),
])
def test_v1_names_the_client(line: bytes, source: pp.Source | None) -> None:
    assert pp.is_v1(line[:pp.PREFIX])
    assert pp.source_v1(line) == source


@pytest.mark.parametrize("line", [
    b"PROXY TCP4 203.0.113.7 127.0.0.1 56324 443",  # not ended
    b"PROXY TCP4 203.0.113.7 127.0.0.1 56324\r\n",
    b"PROXY TCP4 2001:db8::1 127.0.0.1 1 2\r\n",  # the family's address
    b"PROXY TCP4 203.0.113.7 127.0.0.1 65536 80\r\n",
    b"PROXY TCP4 203.0.113.7 127.0.0.1 +1 80\r\n",
    b"PROXY TCP4 203.0.113.x 127.0.0.1 1 80\r\n",
    b"PROXY UDP4 203.0.113.7 127.0.0.1 1 80\r\n",
    b"PROXY TCP4 203.0.113.7 127.0.0.1 1 80 " + b"x" * 100 + b"\r\n",
])
def test_a_bad_v1_line_is_refused(line: bytes) -> None:
    with pytest.raises(ValueError, match="PROXY v1"):
        pp.source_v1(line)


def test_v2_names_the_client_or_none() -> None:
    fixed, rest = v2(1, 0x11, tcp4("198.51.100.9", 4711))
    assert pp.v2_length(fixed) == 12 and pp.source_v2(fixed, rest) == ("198.51.100.9", 4711)
    six = ipaddress.ip_address("2001:db8::2").packed + bytes(16) + b"\x00\x07\x00\x50"
    fixed, rest = v2(1, 0x21, six + b"\x04\x00\x01X")  # a TLV after the addresses
    assert pp.source_v2(fixed, rest) == ("2001:db8::2", 7)
    assert pp.source_v2(*v2(0, 0x00, b"")) is None  # LOCAL: a health check
    assert pp.source_v2(*v2(1, 0x31, bytes(216))) is None  # AF_UNIX
    with pytest.raises(ValueError, match="too short"):
        pp.source_v2(*v2(1, 0x11, bytes(8)))
    for bad in (b"\r\n\r\n\x00\r\nQUIx\n\x21\x11\x00\x0c", pp.V2_SIGNATURE + b"\x31\x11\x00\x0c",
                pp.V2_SIGNATURE + b"\x2f\x11\x00\x0c"):
        with pytest.raises(ValueError, match="PROXY v2"):
            pp.v2_length(bad)
    with pytest.raises(ValueError, match="no PROXY"):
        pp.is_v1(b"GET /")


PER_IP = 1


@pytest.fixture(scope="module")
def server() -> Iterator[ServerThread]:
    """Trusts 127.0.0.1 only, and lets one stream per client address."""
    config = dataclasses.replace(TEST_CONFIG, trusted_proxies=networks("127.0.0.1/32"),
                                 proxy_protocol=True, max_connections_per_ip=PER_IP)
    thread = ServerThread(config).start()
    yield thread
    thread.close()


def stream_status(port: int, header: bytes, source: str = "127.0.0.1",
                  held: list[RawConnection] | None = None) -> int:
    """The status of an SSE request sent after ``header``; 0: closed without an answer."""
    conn = RawConnection(port, source=source)
    conn.sock.sendall(header)
    conn.request(b"/sse", [("Accept-Encoding", b"identity")])
    head = conn.head()
    if held is not None:
        held.append(conn)
    else:
        conn.close()
    return head.status if head else 0


def exchange(port: int, data: bytes, source: str = "127.0.0.1") -> bytes:
    """What the server answers to ``data`` (an HTTP/1.0 request), until it closes."""
    with socket.create_connection(("127.0.0.1", port), timeout=5,
                                  source_address=(source, 0)) as s:
        s.sendall(data)
        return b"".join(iter(lambda: s.recv(65536), b""))


def refused(server: ServerThread) -> float:
    """From /metrics, asked as the proxy asks (its own connection: ``UNKNOWN``)."""
    answer = exchange(server.port, b"PROXY UNKNOWN\r\nGET /metrics HTTP/1.0\r\n\r\n")
    text = answer.partition(b"\r\n\r\n")[2].decode()
    return metric(text, "dashboard_http_heads_refused_total", reason="proxy_protocol")


def test_each_client_a_header_names_is_capped_as_itself(server: ServerThread) -> None:
    held: list[RawConnection] = []
    try:
        v1 = b"PROXY TCP4 203.0.113.1 127.0.0.1 1000 80\r\n"
        fixed, rest = v2(1, 0x11, tcp4("203.0.113.2", 1001))
        assert stream_status(server.port, v1, held=held) == 200
        assert stream_status(server.port, fixed + rest, held=held) == 200
        assert stream_status(server.port, v1.replace(b"1000", b"2000"), held=held) == 503
        assert stream_status(server.port, fixed + rest, held=held) == 503
    finally:
        for conn in held:
            conn.close()


@pytest.mark.parametrize("header", [
    pytest.param(b"", id="none"),
    pytest.param(b"PROXY TCP4 203.0.113.1 127.0.0.1\r\n", id="bad-v1"),
    pytest.param(b"PROXY TCP4 " + b"1" * 200, id="unended-v1"),
    pytest.param(pp.V2_SIGNATURE + b"\x21\x11\x00\x02ab", id="short-v2"),
])
def test_a_trusted_connection_without_a_valid_header_is_closed_and_counted(
    server: ServerThread, header: bytes,
) -> None:
    before = refused(server)
    assert stream_status(server.port, header) == 0
    wait_until(lambda: refused(server) == before + 1, 5, "the refusal counted")


def test_an_untrusted_peers_header_is_not_believed(server: ServerThread) -> None:
    """From outside --trusted-proxies a connection is plain HTTP: a monitor scrapes
    /metrics directly, and a PROXY line it sends is a bad request, never an address."""
    plain = exchange(server.port, b"GET /healthz HTTP/1.0\r\n\r\n", source="127.0.0.9")
    assert plain.startswith(b"HTTP/1.1 200 "), plain[:100]
    forged = exchange(server.port, b"PROXY TCP4 203.0.113.5 127.0.0.1 1 80\r\n"
                      b"GET /healthz HTTP/1.0\r\n\r\n", source="127.0.0.9")
    assert forged.startswith(b"HTTP/1.1 400 "), forged[:100]
