"""The garbage collector out of the fan-out's way: start-up frozen out of its walks, and
every collection's pause in /metrics."""

from __future__ import annotations

import gc
import urllib.request

import pytest
import tornado.httpclient

from tests.clients import http_url, metric
from tests.process import DashboardProcess


def test_the_command_freezes_what_it_loaded_out_of_the_collectors_walks():
    server = DashboardProcess("--symbols", "5")
    try:
        url = f"http://127.0.0.1:{server.port}/metrics"
        text = urllib.request.urlopen(url, timeout=10).read().decode()
    finally:
        server.kill()
    # Modules, Tornado, numpy: tens of thousands of objects, none walked again.
    assert metric(text, "dashboard_gc_frozen_objects") > 10_000


@pytest.mark.gen_test(timeout=20)
async def test_each_collection_is_timed_by_generation(start_server):
    server = await start_server()
    fetch = tornado.httpclient.AsyncHTTPClient().fetch

    async def full_collections() -> float:
        text = (await fetch(http_url(server, "/metrics"))).body.decode()
        return metric(text, "dashboard_gc_pause_seconds_count", generation="2")

    def stopped_count() -> float:
        return metric(server.state.metrics.exposition().decode(),
                      "dashboard_gc_pause_seconds_count", generation="2")

    before = await full_collections()
    gc.collect()
    gc.collect()
    assert await full_collections() >= before + 2
    await server.stop()
    after_stop = stopped_count()
    gc.collect()  # a stopped server times nothing more
    assert stopped_count() == after_stop
