"""An overloaded server degrades visibly and boundedly: the check itself, then a real server
whose fan-outs outlast its batches."""

from __future__ import annotations

import asyncio
import time

import orjson
import pytest
import tornado.httpclient

from dashboard.core import overload
from dashboard.core.overload import Overload
from tests.clients import WSClient, http_url, metric


def test_overloaded_after_fan_outs_outlast_the_interval_and_back_after_quick_ones():
    o = Overload(interval_s=0.05)
    for _ in range(overload.TRIP - 1):
        o.fanned_out(0.08)
    o.fanned_out(0.01)  # not in a row
    assert not o.overloaded and o.wait_s() == 0.05
    for _ in range(overload.TRIP):
        o.fanned_out(0.08)
    assert o.overloaded and o.trips == 1
    assert not o.conflating  # bigger batches keep up: every tick still goes out
    assert o.wait_s() == pytest.approx(overload.STRETCH * 0.08)
    for _ in range(overload.CLEAR - 1):
        o.fanned_out(0.01)
    assert o.wait_s() == 0.05  # never under the interval
    o.fanned_out(0.03)  # over half the interval: not yet clear
    assert o.overloaded
    for _ in range(overload.CLEAR):
        o.fanned_out(0.01)
    assert not o.overloaded and o.wait_s() == 0.05


def test_fan_outs_too_long_for_the_longest_stretch_conflate_until_they_fit_well_again():
    o = Overload(interval_s=0.05)
    longest = overload.MAX_STRETCH * 0.05
    too_long = longest / overload.STRETCH  # the loop would not keep its fifth
    for _ in range(overload.TRIP):
        o.fanned_out(too_long * 0.9)
    assert o.overloaded and not o.conflating
    assert o.wait_s() == pytest.approx(overload.STRETCH * too_long * 0.9)
    o.fanned_out(too_long * 1.5)
    assert o.conflating
    assert o.wait_s() == pytest.approx(3 * too_long)  # twice the last fan-out
    for _ in range(overload.CLEAR - 1):
        o.fanned_out(too_long * 0.4)
    assert o.conflating
    o.fanned_out(too_long * 0.4)  # fits well: a cost per client, the stretch alone will do
    assert o.overloaded and not o.conflating
    o.fanned_out(too_long * 1.5)
    for _ in range(overload.CLEAR):
        o.fanned_out(0.01)
    assert not o.overloaded and not o.conflating
    o.fanned_out(too_long * 1.5)  # one such fan-out is enough: the next would be longer still
    assert o.overloaded and o.conflating and o.trips == 2


def test_a_clock_that_does_not_stretch_conflates_as_soon_as_it_is_overloaded():
    o = Overload(interval_s=0.05, stretches=False)  # an edge, publishing as batches come
    for _ in range(overload.TRIP):
        o.fanned_out(0.08)
    assert o.overloaded and o.conflating


def test_the_best_compression_gets_what_quick_fan_outs_leave_of_a_fifth_of_the_interval():
    o = Overload(interval_s=0.05)
    assert o.best_compression_s() == pytest.approx(overload.BEST_SHARE * 0.05)  # idle
    o.fanned_out(0.004)
    assert o.best_compression_s() == pytest.approx(overload.BEST_SHARE * 0.05 - 0.004)
    o.fanned_out(0.008, best_s=0.004)  # its own best compression is not held against it
    assert o.best_compression_s() == pytest.approx(overload.BEST_SHARE * 0.05 - 0.004)
    o.fanned_out(0.02)  # 1,000 clients take this: their CPU is worth more than the bytes
    assert o.best_compression_s() == 0.0
    for _ in range(overload.TRIP):
        o.fanned_out(0.08)
    o.last_s = 0.0
    assert o.overloaded and o.best_compression_s() == 0.0


async def drain(port: int, stop: asyncio.Event) -> None:
    """A per-connection brotli SSE client that reads (and throws away) all it gets."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"GET /sse HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept-Encoding: br\r\n\r\n")
    while not stop.is_set():
        try:
            if not await asyncio.wait_for(reader.read(1 << 16), 0.5):
                break
        except TimeoutError:
            continue
    writer.close()


@pytest.mark.gen_test(timeout=60)
async def test_an_overloaded_server_refuses_new_streams_and_conflates_until_it_keeps_up(
    start_server,
):
    # The watcher reads on the loop the server saturates: it is slow, and must not be dropped.
    server = await start_server(symbols=100, tick_rate=50_000.0, batch_ms=2.0,
                                max_connections_per_ip=0, slow_client_timeout_s=60.0)
    watcher = await WSClient.connect(server, encoding="json")
    stop = asyncio.Event()
    readers = [asyncio.ensure_future(drain(server.port, stop)) for _ in range(60)]
    deadline = time.monotonic() + 20
    while not server.state.overload.overloaded:
        assert time.monotonic() < deadline, "60 br streams at 2 ms batches never overloaded"
        await asyncio.sleep(0.05)
    fetch = tornado.httpclient.AsyncHTTPClient().fetch
    refused = await fetch(http_url(server, "/sse"), raise_error=False, decompress_response=False)
    assert refused.code == 503 and refused.headers["Retry-After"] == "5"
    assert orjson.loads(refused.body)["message"] == "server overloaded"
    late = await WSClient.connect(server)
    await late.closed(timeout=5)
    assert (late.conn.close_code, late.conn.close_reason) == (1013, "server overloaded")
    # Per-connection compression costs per tick: even the longest stretch is outlasted, and
    # batches go on, each merged to one tick per symbol and saying so (the watcher, slow on
    # this loop, may merge several of them again: one tick per symbol still).
    while not server.state.overload.conflating:
        assert time.monotonic() < deadline, "fan-outs never outlasted the longest stretch"
        await asyncio.sleep(0.05)
    conflated = None
    while conflated is None:
        msg = await watcher.recv(timeout=10)
        if msg["type"] == "batch" and msg.get("conflated"):
            conflated = msg
    names = conflated["ticks"]["sym"]
    assert len(names) == len(set(names))
    text = (await fetch(http_url(server, "/metrics"))).body.decode()
    assert metric(text, "dashboard_overloaded") == 1.0
    assert metric(text, "dashboard_overload_conflating") == 1.0
    assert metric(text, "dashboard_overload_trips_total") >= 1
    assert metric(text, "dashboard_overload_conflated_ticks_total") > 0
    assert metric(text, "dashboard_rate_limit_rejections_total", reason="overloaded") >= 2
    health = orjson.loads((await fetch(http_url(server, "/healthz"))).body)
    assert health["overloaded"] is True
    stop.set()
    await asyncio.gather(*readers)
    while server.state.overload.overloaded:  # the load is gone: it keeps up again
        assert time.monotonic() < deadline + 20, "never recovered"
        await asyncio.sleep(0.05)
    again = await WSClient.connect(server)
    assert (await again.recv())["type"] == "snapshot"
    again.close()
    watcher.close()
