"""Behind Debian's HAProxy and nginx, configured as the deployment guide says: with
``--trusted-proxies`` the caps, logs and metrics see each client's own address, from the
forwarding headers or from HAProxy's PROXY protocol (v1 and v2, with ``--proxy-protocol``);
forged forwarding headers change nothing."""

from __future__ import annotations

import dataclasses
import os
import shutil
import time
import urllib.request
from collections.abc import Iterator

import pytest

from dashboard.core.client_address import networks
from tests.clients import metric
from tests.conftest import TEST_CONFIG, require
from tests.logs import LogRecorder
from tests.proxies import HAPROXY, NGINX, haproxy, nginx
from tests.rawhttp import RawConnection
from tests.threaded import ServerThread

#: Clients from these loopback addresses, three streams each.
SOURCES = [f"127.0.0.{i}" for i in range(2, 7)]
PER_IP = 2


@dataclasses.dataclass
class Behind:
    server: ServerThread
    port: int
    def metric(self, name: str, **labels: str) -> float:
        """From /metrics through the proxy: with the PROXY protocol, the proxy's
        connections carry a header that a plain client from its address cannot send."""
        url = f"http://127.0.0.1:{self.port}/metrics"
        with urllib.request.urlopen(url, timeout=5) as r:
            return metric(r.read().decode(), name, **labels)


@pytest.fixture(params=["haproxy", "nginx", "haproxy-send-proxy", "haproxy-send-proxy-v2"])
def behind_proxy(request: pytest.FixtureRequest) -> Iterator[Behind]:
    name, _, send_proxy = request.param.partition("-")
    binary = HAPROXY if name == "haproxy" else NGINX
    require(shutil.which(binary) is not None or os.path.exists(binary), f"Debian's {name}")
    config = dataclasses.replace(
        TEST_CONFIG, max_connections_per_ip=PER_IP, trusted_proxies=networks("127.0.0.1/32"),
        proxy_protocol=bool(send_proxy))
    server = ServerThread(config).start()
    proxy = haproxy(server.port, send_proxy) if name == "haproxy" else nginx(server.port)
    yield Behind(server, proxy.port)
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
    port = behind_proxy.port
    with LogRecorder() as logs:
        for source in SOURCES:
            assert open_streams(port, source, PER_IP + 1) == [200] * PER_IP + [503]

        def refused() -> list[str]:  # logged on the server's thread, once it has answered
            return [r.getMessage() for r in logs.records
                    if r.name == "tornado.access" and r.getMessage().startswith("503")]

        deadline = time.monotonic() + 5
        while len(refused()) < len(SOURCES) and time.monotonic() < deadline:
            time.sleep(0.02)
    assert behind_proxy.metric("dashboard_connections", transport="sse") == (
        PER_IP * len(SOURCES))
    assert sorted(line.split("(")[1].split(")")[0] for line in refused()) == SOURCES


def test_a_forged_forwarding_header_is_not_believed(behind_proxy):
    server, port = behind_proxy.server, behind_proxy.port
    forged = ("X-Forwarded-For", b"6.6.6.6")
    # Through the proxy: the proxy appends the real address (or names it in its PROXY
    # header), which is the one taken.
    assert open_streams(port, "127.0.0.2", PER_IP + 1, forged) == [200] * PER_IP + [503]
    # Straight to the server from an address it does not trust: ignored altogether.
    assert open_streams(server.port, "127.0.0.9", PER_IP + 1, forged,
                        ("Forwarded", b"for=7.7.7.7")) == [200] * PER_IP + [503]
    assert behind_proxy.metric("dashboard_connections", transport="sse") == 2 * PER_IP
