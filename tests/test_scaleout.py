"""Scale-out over a real ``redis-server``: one feed process, edges that serve clients from
the broker's stream with the feed's own seq, resume across edges, and Redis restarts."""

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
from typing import Any

import orjson
import pytest
import tornado.httpclient
import tornado.websocket

from dashboard.core import auth
from dashboard.server import Server
from tests.clients import WSClient, http_url, metric
from tests.conftest import require
from tests.process import DashboardProcess


async def edge_and_feed(start_server: Any, url: str, edges: int = 1) -> list[Server]:
    feed = await start_server(broker=url, role="feed")
    return [feed] + [await start_server(broker=url, role="edge") for _ in range(edges)]


async def raw_frames(server: Server, query: str, count: int) -> list[str]:
    """The first ``count`` frames a new JSON client gets, as the exact text sent."""
    conn = await tornado.websocket.websocket_connect(
        f"ws://127.0.0.1:{server.port}/ws?{query}")
    frames = []
    while len(frames) < count:
        frame = await asyncio.wait_for(conn.read_message(), 5)
        assert isinstance(frame, str), f"closed: {conn.close_code} {conn.close_reason}"
        frames.append(frame)
    conn.close()
    return frames


def follows(last: int, msg: dict[str, Any]) -> bool:
    return msg.get("first_seq", msg["seq"]) == last + 1


async def health(server: Server) -> tuple[int, dict[str, Any]]:
    response = await tornado.httpclient.AsyncHTTPClient().fetch(
        http_url(server, "/healthz"), raise_error=False)
    return response.code, orjson.loads(response.body)


@pytest.mark.gen_test(timeout=30)
async def test_two_edges_send_byte_identical_batches_with_the_feeds_seq(redis_server, start_server):
    feed, one, two = await edge_and_feed(start_server, redis_server.url, edges=2)
    query = "symbols=SPY,AAPL,MSFT"
    a, b = await asyncio.gather(raw_frames(one, query, 60), raw_frames(two, query, 60))
    batches_a = {m["seq"]: f for f in a if (m := orjson.loads(f))["type"] == "batch"}
    batches_b = {m["seq"]: f for f in b if (m := orjson.loads(f))["type"] == "batch"}
    common = sorted(batches_a.keys() & batches_b.keys())
    assert len(common) >= 30
    assert all(batches_a[s] == batches_b[s] for s in common)
    seqs = sorted(batches_a)
    assert seqs == list(range(seqs[0], seqs[0] + len(seqs)))  # no gap
    assert abs(seqs[-1] - feed.state.batcher.seq) < 50  # the feed's numbering, not the edge's
    ticks = [orjson.loads(batches_a[s])["ticks"] for s in common]
    assert sum(len(t["sym"]) for t in ticks) > 0
    assert {s for t in ticks for s in t["sym"]} <= {"SPY", "AAPL", "MSFT"}


@pytest.mark.gen_test(timeout=30)
async def test_a_client_resumes_on_the_other_edge_with_exactly_the_missed_batches(
        redis_server, start_server):
    _, one, two = await edge_and_feed(start_server, redis_server.url, edges=2)
    client = await WSClient.connect(one)
    assert (await client.recv())["type"] == "snapshot"
    last = 0
    for _ in range(10):
        last = (await client.recv_type("batch"))["seq"]
    client.close()
    await asyncio.sleep(0.5)  # ~50 batches go by while it is away
    client = await WSClient.connect(two, f"since={last}")
    got = [await client.recv() for _ in range(80)]
    assert got[0]["type"] == "batch" and got[0]["seq"] == last + 1, got[0]
    for msg in got:
        assert msg["type"] == "batch" and follows(last, msg), (last, msg)
        last = msg["seq"]
    client.close()


@pytest.mark.gen_test(timeout=30)
async def test_an_edge_restart_loses_nothing_for_a_client_that_resumes(redis_server,
                                                                       start_server):
    _, edge = await edge_and_feed(start_server, redis_server.url)
    client = await WSClient.connect(edge)
    assert (await client.recv())["type"] == "snapshot"
    last = 0
    for _ in range(5):
        last = (await client.recv_type("batch"))["seq"]
    await edge.stop()  # the client is closed with 1001 and comes back to a new edge
    assert (await client.closed())[0] == 1001
    again = await start_server(broker=redis_server.url, role="edge")
    client = await WSClient.connect(again, f"since={last}")
    for _ in range(40):
        msg = await client.recv()
        assert msg["type"] == "batch" and follows(last, msg), (last, msg)
        last = msg["seq"]
    client.close()


@pytest.mark.gen_test(timeout=60)
async def test_redis_restart_degrades_the_edge_then_clients_carry_on_without_a_gap(
        redis_server, start_server):
    _, edge = await edge_and_feed(start_server, redis_server.url)
    client = await WSClient.connect(edge)
    assert (await client.recv())["type"] == "snapshot"
    last = (await client.recv_type("batch"))["seq"]

    redis_server.stop()
    deadline = time.monotonic() + 10
    while (await health(edge))[0] != 503:
        assert time.monotonic() < deadline, "the edge never said it was degraded"
        await asyncio.sleep(0.1)
    _, body = await health(edge)
    assert body["status"] == "degraded" and body["broker"]["state"] == "degraded"
    while True:  # drain what was sent before Redis went, then nothing more comes
        try:
            msg = await client.recv(timeout=0.5)
        except TimeoutError:
            break
        assert follows(last, msg), (last, msg)
        last = msg["seq"]
    assert client.conn.close_code is None  # still connected

    await asyncio.sleep(1.0)  # batches pile up in the feed while Redis is away
    redis_server.start()
    seen_reset = False
    deadline = time.monotonic() + 15
    while (await health(edge))[0] != 200:
        assert time.monotonic() < deadline, "the edge never recovered"
        await asyncio.sleep(0.1)
    for _ in range(150):  # what piled up, then live batches again
        msg = await client.recv(timeout=5)
        seen_reset |= msg["type"] == "snapshot"
        assert msg["type"] == "batch" and follows(last, msg), (last, msg)
        last = msg["seq"]
    assert not seen_reset
    _, body = await health(edge)
    assert body["broker"]["reconnects"] >= 1 and body["broker"]["resets"] == 0
    text = (await tornado.httpclient.AsyncHTTPClient().fetch(http_url(edge, "/metrics"))).body
    assert metric(text.decode(), "dashboard_broker_connected") == 1.0
    assert metric(text.decode(), "dashboard_broker_reconnects_total") >= 1.0
    client.close()


@pytest.mark.gen_test(timeout=40)
async def test_unreadable_data_while_an_edge_reloads_degrades_it_until_the_data_is_good(
        redis_server, start_server):
    """A broker fault like a lost connection: degraded and retried, never a dead edge."""
    import redis

    from dashboard.scaleout.connection import INFO_KEY, STREAM_KEY

    feed, edge = await edge_and_feed(start_server, redis_server.url)
    client = await WSClient.connect(edge, "symbols=SPY")
    assert (await client.recv())["type"] == "snapshot"
    await feed.stop()
    r = redis.Redis.from_url(redis_server.url)
    info = r.get(INFO_KEY)
    r.set(INFO_KEY, b"{not a feed description")
    top = int(r.xrevrange(STREAM_KEY, count=1)[0][0].split(b"-")[0])
    r.xadd(STREAM_KEY, {"junk": "1"}, id=f"{top + 1000}-0")  # the edge must reload
    deadline = time.monotonic() + 10
    while (await health(edge))[0] != 503:
        assert time.monotonic() < deadline, "the edge never said it was degraded"
        await asyncio.sleep(0.1)
    _, body = await health(edge)
    assert body["broker"]["state"] == "degraded"
    assert "description is unusable" in body["broker"]["error"]
    assert not edge.failed.is_set()
    r.set(INFO_KEY, info)
    while (await health(edge))[0] != 200:
        assert time.monotonic() < deadline + 10, "the edge never recovered"
        await asyncio.sleep(0.1)
    assert (await client.recv_type("snapshot", timeout=10))["reset"] is True
    assert not edge.failed.is_set() and client.conn.close_code is None
    r.close()
    client.close()


@pytest.mark.gen_test(timeout=30)
async def test_a_restarted_feed_sends_every_client_a_reset_snapshot(redis_server, start_server):
    feed, edge = await edge_and_feed(start_server, redis_server.url)
    client = await WSClient.connect(edge, "symbols=SPY")
    assert (await client.recv())["type"] == "snapshot"
    old = (await client.recv_type("batch"))["seq"]
    await feed.stop()
    deadline = time.monotonic() + 10
    while (await health(edge))[1]["feeds"][0]["state"] != "stale":
        assert time.monotonic() < deadline, "the edge never noticed its feed went quiet"
        await asyncio.sleep(0.2)
    await start_server(broker=redis_server.url, role="feed")
    msg = await client.recv_type("snapshot", timeout=10)
    assert msg["reset"] is True and msg["seq"] > old + 1
    assert msg["quotes"]["sym"] == ["SPY"]
    nxt = await client.recv_type("batch")
    assert nxt["seq"] == msg["seq"] + 1
    client.close()


@pytest.mark.gen_test(timeout=30)
async def test_a_late_edge_starts_from_the_feeds_state_and_held_batches(redis_server, start_server):
    feed = await start_server(broker=redis_server.url, role="feed")
    await asyncio.sleep(2.5)  # past the first state save and a few hundred batches
    edge = await start_server(broker=redis_server.url, role="edge")
    since = edge.state.batcher.history[0].seq
    client = await WSClient.connect(edge, f"since={since}")
    first = await client.recv()
    assert first["type"] == "batch" and follows(since, first), first  # a merged catch-up
    client.close()
    await assert_same_state(feed, edge)


async def assert_same_state(feed: Server, edge: Server) -> None:
    """The edge's 1 s bars and session opens are the feed's, compared at the same seq."""
    fetch = tornado.httpclient.AsyncHTTPClient().fetch
    for _ in range(50):
        f_bars, e_bars = await asyncio.gather(
            fetch(http_url(feed, "/api/bars?symbol=SPY&interval=1s&limit=900")),
            fetch(http_url(edge, "/api/bars?symbol=SPY&interval=1s&limit=900")))
        if feed.state.batcher.seq == edge.state.batcher.seq:
            break
    f_bars, e_bars = orjson.loads(f_bars.body), orjson.loads(e_bars.body)
    assert len(f_bars["t"]) >= 2
    assert e_bars["t"][:-1] == f_bars["t"][:-1] and e_bars["v"][:-1] == f_bars["v"][:-1]
    f_snap = feed.state.hub.snapshot(None, 0).message["quotes"]
    e_snap = edge.state.hub.snapshot(None, 0).message["quotes"]
    assert e_snap["sym"] == f_snap["sym"]
    assert e_snap["open"].tolist() == f_snap["open"].tolist()


@pytest.mark.gen_test(timeout=30)
async def test_after_a_feed_restart_an_edge_holds_the_new_runs_quotes_and_bars_only(
        redis_server, start_server):
    feed, edge = await edge_and_feed(start_server, redis_server.url)
    client = await WSClient.connect(edge, "symbols=SPY")
    assert (await client.recv())["type"] == "snapshot"
    await asyncio.sleep(2.5)  # bars and a saved state of the first run
    await feed.stop()
    await asyncio.sleep(1.2)  # the next run's bars start in another second
    feed = await start_server(broker=redis_server.url, role="feed", seed=8)
    assert (await client.recv_type("snapshot", timeout=10))["reset"] is True
    await asyncio.sleep(1.5)
    await assert_same_state(feed, edge)
    client.close()


@pytest.mark.gen_test(timeout=30)
async def test_a_client_from_an_edge_further_ahead_waits_for_its_since(redis_server,
                                                                       start_server):
    _, edge = await edge_and_feed(start_server, redis_server.url)
    since = edge.state.batcher.seq + 5  # what a client leaving a faster edge brings
    client = await WSClient.connect(edge, f"symbols=SPY&since={since}")
    first = await client.recv()
    assert first["type"] == "batch" and follows(since, first), first
    client.close()


@pytest.mark.gen_test(timeout=30)
async def test_a_feed_process_serves_health_and_metrics_but_no_streams(redis_server, start_server):
    feed = await start_server(broker=redis_server.url, role="feed")
    code, body = await health(feed)
    assert code == 200 and body["role"] == "feed"
    response = await tornado.httpclient.AsyncHTTPClient().fetch(
        http_url(feed, "/ws"), raise_error=False)
    assert response.code == 404


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
