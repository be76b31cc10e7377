"""A feed that fails is not healthy, and comes back: against a real server."""

from __future__ import annotations

import asyncio
import logging
import time

import orjson
import pytest
import tornado.httpclient

from tests.clients import WSClient, follows, http_url, metric
from tests.crashing_feed import CrashingFeed
from tests.logs import LogRecorder


async def health(server) -> tuple[int, dict]:
    response = await tornado.httpclient.AsyncHTTPClient().fetch(
        http_url(server, "/healthz"), raise_error=False)
    return response.code, orjson.loads(response.body)


async def until(condition, what: str, timeout_s: float = 10) -> None:
    deadline = time.monotonic() + timeout_s
    while not await condition():
        assert time.monotonic() < deadline, what
        await asyncio.sleep(0.05)


@pytest.mark.gen_test(timeout=30)
async def test_a_feed_that_raises_is_failed_in_health_and_metrics_then_restarted(start_server):
    CrashingFeed.made, CrashingFeed.crashes = 0, 1
    with LogRecorder() as logs:
        server = await start_server(feed="tests.crashing_feed:CrashingFeed", symbols=2)
        client = await WSClient.connect(server)
        assert (await client.recv())["type"] == "snapshot"

        async def failed() -> bool:
            code, body = await health(server)
            return code == 503 and body["feeds"][0]["state"] == "failed"

        await until(failed, "/healthz never said the feed failed")
        _, body = await health(server)
        assert body["status"] == "degraded"
        text = (await tornado.httpclient.AsyncHTTPClient().fetch(
            http_url(server, "/metrics"))).body.decode()
        assert metric(text, "dashboard_feed_state", feed="crashing", state="failed") == 1.0
        assert metric(text, "dashboard_feed_state", feed="crashing", state="live") == 0.0

        async def live_again() -> bool:
            code, body = await health(server)
            return code == 200 and body["feeds"][0]["state"] == "live"

        await until(live_again, "the feed never came back")
    assert CrashingFeed.made == 2  # a fresh instance, built from the command line
    tracebacks = [r for r in logs.records if r.exc_info and r.levelno >= logging.ERROR]
    assert len(tracebacks) == 1 and "restarting" in tracebacks[0].getMessage()
    last = None
    for _ in range(5):  # batches again, in seq order
        msg = await client.recv_type("batch")
        assert last is None or follows(last, msg)
        last = msg["seq"]
    client.close()
