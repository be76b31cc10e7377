"""Behind Debian's HAProxy and nginx, configured as the deployment guide says: with
``--trusted-proxies`` the caps, logs and metrics see each client's own address; forged
forwarding headers change nothing."""

from __future__ import annotations

import dataclasses
import os
import shutil
import time
from collections.abc import Iterator

import pytest

from dashboard.core.client_address import networks
from tests.conftest import TEST_CONFIG, require
from tests.logs import LogRecorder
from tests.proxies import HAPROXY, NGINX, haproxy, nginx
from tests.rawhttp import RawConnection
from tests.threaded import ServerThread

#: Clients from these loopback addresses, three streams each.
SOURCES = [f"127.0.0.{i}" for i in range(2, 7)]
PER_IP = 2


@pytest.fixture(params=["haproxy", "nginx"])
def behind_proxy(request: pytest.FixtureRequest) -> Iterator[tuple[ServerThread, int]]:
    binary = HAPROXY if request.param == "haproxy" else NGINX
    require(shutil.which(binary) is not None or os.path.exists(binary),
            f"Debian's {request.param}")
    config = dataclasses.replace(
        TEST_CONFIG, max_connections_per_ip=PER_IP, trusted_proxies=networks("127.0.0.1/32"))
    server = ServerThread(config).start()
    proxy = (haproxy if request.param == "haproxy" else nginx)(server.port)
    yield server, proxy.port
    for conn in OPEN:
        conn.close()
    OPEN.clear()
    proxy.stop()
    server.close()


#: The streams opened by a test, held open until it ends.
OPEN: list[RawConnection] = []


def open_streams(port: int, source: str, n: int, *headers: tuple[str, bytes]) -> list[int]:
    """``n`` SSE requests from ``source``; their statuses (the streams stay open)."""
    statuses = []
    for _ in range(n):
        conn = RawConnection(port, source=source)
        OPEN.append(conn)
        conn.request(b"/sse", [("Accept-Encoding", b"identity"), *headers])
        head = conn.head()
        statuses.append(head.status if head else 0)
    return statuses


def test_caps_and_logs_count_each_client_behind_the_proxy(behind_proxy):
    server, port = behind_proxy
    with LogRecorder() as logs:
        for source in SOURCES:
            assert open_streams(port, source, PER_IP + 1) == [200] * PER_IP + [503]

        def refused() -> list[str]:  # logged on the server's thread, once it has answered
            return [r.getMessage() for r in logs.records
                    if r.name == "tornado.access" and r.getMessage().startswith("503")]

        deadline = time.monotonic() + 5
        while len(refused()) < len(SOURCES) and time.monotonic() < deadline:
            time.sleep(0.02)
    assert server.metric("dashboard_connections", transport="sse") == PER_IP * len(SOURCES)
    assert sorted(line.split("(")[1].split(")")[0] for line in refused()) == SOURCES


def test_a_forged_forwarding_header_is_not_believed(behind_proxy):
    server, port = behind_proxy
    forged = ("X-Forwarded-For", b"6.6.6.6")
    # Through the proxy: the proxy appends the real address, which is the one taken.
    assert open_streams(port, "127.0.0.2", PER_IP + 1, forged) == [200] * PER_IP + [503]
    # Straight to the server from an address it does not trust: ignored altogether.
    assert open_streams(server.port, "127.0.0.9", PER_IP + 1, forged,
                        ("Forwarded", b"for=7.7.7.7")) == [200] * PER_IP + [503]
    assert server.metric("dashboard_connections", transport="sse") == 2 * PER_IP
