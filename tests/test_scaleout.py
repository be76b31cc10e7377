"""Scale-out over a real ``redis-server``: one feed process, edges that serve clients from
the broker's stream with the feed's own seq, resume across edges, and Redis restarts."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import orjson
import pytest
import tornado.httpclient
import tornado.websocket

from dashboard.server import Server
from tests.clients import WSClient, follows, http_url, metric


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
