"""Scale-out as whole processes over a real ``redis-server``: ``--workers`` supervising a feed
and its edges on one port, a second feed on the same database, a wrong password, and an
edge started before Redis."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request

import orjson
import pytest
import tornado.httpclient
import tornado.websocket

from dashboard.core import auth
from tests.clients import follows
from tests.conftest import require
from tests.process import DashboardProcess


def test_workers_serve_clients_from_every_process_on_one_port(redis_server):
    proc = DashboardProcess("--broker", redis_server.url, "--workers", "2", "--symbols", "20",
                            "--batch-ms", "20")
    try:
        asyncio.run(_clients_on_both_workers(proc.port))
    finally:
        proc.proc.send_signal(signal.SIGTERM)
        code, _ = proc.wait(15)
        assert code == 0
        with pytest.raises(OSError):  # every worker is gone with the parent
            socket.create_connection(("127.0.0.1", proc.port), timeout=1).close()


def test_workers_restart_a_dead_edge_refuse_a_second_deployment_and_die_with_the_parent(
        redis_server):
    proc = DashboardProcess("--broker", redis_server.url, "--workers", "2", "--symbols", "20")
    try:
        pids = asyncio.run(_worker_pids(proc.port, 2))
        os.kill(pids[0], signal.SIGKILL)
        deadline = time.monotonic() + 20
        while True:  # the supervisor starts another edge on the same port
            now = asyncio.run(_worker_pids(proc.port, 2, attempts=20))
            if len(now) == 2 and pids[0] not in now:
                break
            assert time.monotonic() < deadline, now
            time.sleep(0.2)
        assert proc.proc.poll() is None
        second = subprocess.run(
            [sys.executable, "-m", "dashboard", "--port", str(proc.port), "--broker",
             redis_server.url.replace("/0", "/1"), "--workers", "2"],
            capture_output=True, text=True, timeout=20)
        assert second.returncode == 1
        assert second.stderr.strip().splitlines() == [
            f"market-dashboard: error: argument --port: cannot listen on "
            f"http://127.0.0.1:{proc.port}: Address already in use"]
    finally:
        proc.kill()  # SIGKILL: no chance to stop its workers, which go with it
    deadline = time.monotonic() + 10
    while True:
        try:
            socket.create_connection(("127.0.0.1", proc.port), timeout=1).close()
        except OSError:
            break
        assert time.monotonic() < deadline, "the workers outlived their parent"
        time.sleep(0.2)


async def _worker_pids(port: int, want: int, attempts: int = 60) -> list[int]:
    """Pids of the edges answering on ``port`` (each request is a new connection)."""
    client = tornado.httpclient.AsyncHTTPClient()
    pids: list[int] = []
    for _ in range(attempts):
        try:
            body = orjson.loads((await client.fetch(f"http://127.0.0.1:{port}/healthz",
                                                    raise_error=False)).body)
        except OSError:
            continue
        if body["pid"] not in pids:
            pids.append(body["pid"])
        if len(pids) == want:
            break
    return pids


def test_workers_take_the_auth_secret_from_the_environment_too(redis_server):
    secret = "workers-secret-" + "w" * 32
    proc = DashboardProcess("--broker", redis_server.url, "--workers", "2", "--symbols", "5",
                            env={auth.SECRET_ENV: secret})
    token = auth.mint(secret.encode(), 60, now=time.time())
    url = f"http://127.0.0.1:{proc.port}/api/symbols"

    def status(query: str) -> int:
        try:
            return urllib.request.urlopen(url + query, timeout=5).status
        except urllib.error.HTTPError as e:
            return e.code

    try:
        for _ in range(20):  # each a new connection, spread over both edges
            assert status("") == 401
            assert status(f"?token={token}") == 200
    finally:
        proc.proc.send_signal(signal.SIGTERM)
        assert proc.wait(15)[0] == 0


async def _clients_on_both_workers(port: int) -> None:
    conns = [await tornado.websocket.websocket_connect(f"ws://127.0.0.1:{port}/ws")
             for _ in range(24)]
    last: dict[int, int] = {}
    for i, conn in enumerate(conns):
        for _ in range(3):
            msg = orjson.loads(await asyncio.wait_for(conn.read_message(), 5))
            if msg["type"] == "batch":
                assert i not in last or follows(last[i], msg)
            last[i] = msg["seq"]
    assert max(last.values()) - min(last.values()) < 20  # one sequence for all of them
    by_pid: dict[int, int] = {}
    client = tornado.httpclient.AsyncHTTPClient()
    for _ in range(60):  # each request is a new connection, spread over the workers
        body = orjson.loads((await client.fetch(f"http://127.0.0.1:{port}/healthz")).body)
        by_pid[body["pid"]] = body["connections"]
        if len(by_pid) == 2:
            break
    assert len(by_pid) == 2, by_pid
    assert sum(by_pid.values()) == len(conns) and min(by_pid.values()) > 0, by_pid
    for conn in conns:
        conn.close()


def test_a_second_feed_on_the_same_database_stops_with_an_error(redis_server):
    first = DashboardProcess("--broker", redis_server.url, "--role", "feed")
    try:
        # It waits for the lock to expire, as a killed feed's would, then gives up.
        second = subprocess.run(
            [sys.executable, "-m", "dashboard", "--port", "0", "--role", "feed",
             "--broker", redis_server.url], capture_output=True, text=True, timeout=40)
        assert second.returncode == 1 and second.stdout == ""  # never said it listened
        assert "error: another feed process is publishing to redis" in second.stderr
        assert "Traceback" not in second.stderr
        assert first.proc.poll() is None
    finally:
        first.proc.send_signal(signal.SIGTERM)
        assert first.wait(10)[0] == 0


def test_wrong_redis_password_stops_feed_and_edge_with_one_line():
    from tests.redis_server import BINARY, RedisServer

    require(BINARY is not None, "redis-server (apt-get install redis-server)")
    server = RedisServer(password="right-one")
    server.start()
    try:
        for role in ("feed", "edge"):
            result = subprocess.run(
                [sys.executable, "-m", "dashboard", "--port", "0", "--role", role, "--broker",
                 f"redis://:wrong-one@127.0.0.1:{server.port}/0"],
                capture_output=True, text=True, timeout=20)
            assert result.returncode == 1 and result.stdout == "", (role, result)
            (line,) = result.stderr.strip().splitlines()
            assert line.startswith(
                f"market-dashboard: error: redis redis://***@127.0.0.1:{server.port}/0 refused "
                "this server"), line
            assert "wrong-one" not in result.stderr and "Traceback" not in result.stderr
    finally:
        server.stop()


def test_an_edge_started_before_redis_waits_for_it_then_serves(redis_server):
    redis_server.stop()
    feed: list[DashboardProcess] = []

    def redis_and_feed_later() -> None:
        time.sleep(2.0)
        redis_server.start()
        feed.append(DashboardProcess("--broker", redis_server.url, "--role", "feed"))

    later = threading.Thread(target=redis_and_feed_later)
    later.start()
    try:
        edge = DashboardProcess("--broker", redis_server.url, "--role", "edge")
        later.join()
        asyncio.run(_one_batch(edge.port))
        edge.proc.send_signal(signal.SIGTERM)
        assert edge.wait(10)[0] == 0
        assert edge.proc.stderr is not None
        assert "unreachable, retrying" in edge.proc.stderr.read()
    finally:
        later.join()
        for proc in feed:
            proc.proc.send_signal(signal.SIGTERM)
            proc.wait(10)


async def _one_batch(port: int) -> None:
    conn = await tornado.websocket.websocket_connect(f"ws://127.0.0.1:{port}/ws")
    types = [orjson.loads(await asyncio.wait_for(conn.read_message(), 5))["type"]
             for _ in range(2)]
    assert types == ["snapshot", "batch"]
    conn.close()
