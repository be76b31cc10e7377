"""The exchange adapters against local fake exchanges that speak the documented formats."""

from __future__ import annotations

import asyncio

import orjson
import pytest
import tornado.httpclient

from feeds.base import FeedSpec, FeedState
from feeds.binance import BinanceFeed
from tests.clients import http_url
from tests.fake_exchanges import (
    COINBASE_GAP_TRADES,
    FakeBinance,
    FakeCoinbase,
    expected_binance_last,
    expected_coinbase_last,
    load_frames,
)

FAST = (("initial_backoff_s", "0.05"), ("max_backoff_s", "0.2"))


async def snapshot(server) -> dict[str, dict[str, float]]:
    body = (await tornado.httpclient.AsyncHTTPClient().fetch(
        http_url(server, "/api/snapshot"))).body
    q = orjson.loads(body)["quotes"]
    return {
        sym: {"price": q["price"][i], "bid": q["bid"][i], "ask": q["ask"][i],
              "volume": q["volume"][i]}
        for i, sym in enumerate(q["sym"])
    }


async def until(condition, timeout: float = 10.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not condition():
        assert loop.time() < deadline, "timed out"
        await asyncio.sleep(0.01)


def matches(actual: dict, expected: dict) -> bool:
    """Prices exactly as the exchange sent them; volume (a sum of sizes) to rounding."""
    return (all(actual[k] == expected[k] for k in ("price", "bid", "ask"))
            and actual["volume"] == pytest.approx(expected["volume"], rel=1e-12))


async def replayed_everything(server, expected: dict) -> dict:
    """The snapshot once it shows the last replayed trade of every symbol."""
    for _ in range(500):
        snap = await snapshot(server)
        if set(snap) == set(expected) and all(
            matches(snap[s], expected[s]) for s in expected
        ):
            return snap
        await asyncio.sleep(0.02)
    return await snapshot(server)


# -- Binance ------------------------------------------------------------------------------


@pytest.fixture
def binance_frames():
    return load_frames("binance_frames.jsonl")


@pytest.mark.gen_test(timeout=30)
async def test_binance_snapshot_shows_exactly_the_replayed_prices(
    start_server, started, binance_frames
):
    fake = await started(FakeBinance(frames=binance_frames, frame_interval_s=0.002,
                                     ping_interval_s=0.1))
    server = await start_server(feed="binance", symbols=("BTCUSDT", "ETHUSDT"),
                                feed_url=fake.url, feed_options=FAST)
    expected = expected_binance_last()
    snap = await replayed_everything(server, expected)
    assert all(matches(snap[s], v) for s, v in expected.items()), snap
    assert fake.requests[0] == ["btcusdt@trade", "btcusdt@bookTicker",
                                "ethusdt@trade", "ethusdt@bookTicker"]
    await until(lambda: fake.pongs)  # the server's pings were answered
    assert server.feed.health.state is FeedState.LIVE
    assert server.feed.health.parse_errors == 0


@pytest.mark.gen_test(timeout=30)
async def test_binance_reconnects_and_resubscribes_after_a_drop_and_server_shutdown(
    start_server, started, binance_frames
):
    fake = await started(FakeBinance(frames=binance_frames, frame_interval_s=0.01))
    server = await start_server(feed="binance", symbols=("BTCUSDT", "ETHUSDT"),
                                feed_url=fake.url, feed_options=FAST)
    await fake.wait_connections(1)
    await until(lambda: server.feed.health.messages > 0)
    fake.drop()
    await fake.wait_connections(2)
    fake.server_shutdown()
    await fake.wait_connections(3)
    assert fake.requests[1] == fake.requests[0] == fake.requests[2]
    await until(lambda: server.feed.health.state is FeedState.LIVE)
    assert server.feed.health.reconnects >= 2
    text = (await tornado.httpclient.AsyncHTTPClient().fetch(
        http_url(server, "/metrics"))).body.decode()
    assert 'dashboard_feed_reconnects_total{feed="binance"}' in text


@pytest.mark.gen_test(timeout=30)
async def test_a_malformed_frame_is_counted_and_skipped(
    start_server, started, binance_frames
):
    fake = await started(FakeBinance(frames=binance_frames, frame_interval_s=0.01))
    server = await start_server(feed="binance", symbols=("BTCUSDT", "ETHUSDT"),
                                feed_url=fake.url, feed_options=FAST)
    await until(lambda: server.feed.health.messages > 0)
    for bad in ("{not json", '{"stream":"btcusdt@trade","data":{"e":"trade","s":"BTCUSDT"}}',
                '{"stream":"x","data":{"e":"trade","s":"NOPE","p":"1","q":"1","T":1}}', "[]"):
        fake.send_raw(bad)
    await until(lambda: server.feed.health.parse_errors == 4)
    snap = await replayed_everything(server, expected_binance_last())
    assert all(matches(snap[s], v) for s, v in expected_binance_last().items()), snap
    assert fake.connections == 1


@pytest.mark.gen_test(timeout=30)
async def test_a_silent_exchange_is_marked_stale_then_reconnected(start_server, started):
    fake = await started(FakeBinance(frames=[]))
    server = await start_server(
        feed="binance", symbols=("BTCUSDT",), feed_url=fake.url,
        feed_options=(*FAST, ("stale_s", "0.2"), ("watchdog_s", "0.6")),
    )
    states = set()
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 10
    while fake.connections < 2:
        states.add(server.feed.health.state)
        assert loop.time() < deadline
        await asyncio.sleep(0.01)
    assert FeedState.STALE in states
    health = orjson.loads((await tornado.httpclient.AsyncHTTPClient().fetch(
        http_url(server, "/healthz"))).body)
    assert health["feeds"][0]["name"] == "binance"


def test_binance_splits_symbols_so_no_connection_has_more_than_1024_streams():
    names = tuple(f"S{i:04d}USDT" for i in range(1300))
    feed = BinanceFeed.create(FeedSpec(symbols=names, url="ws://127.0.0.1:1"))
    shards = feed.shards()
    counts = [len(url.split("streams=", 1)[1].split("/")) for url in shards]
    assert counts == [1024, 1024, 552]
    assert all(url.startswith("ws://127.0.0.1:1/stream?streams=s") for url in shards)


# -- Coinbase -----------------------------------------------------------------------------


@pytest.mark.gen_test(timeout=30)
async def test_coinbase_subscribes_streams_matches_and_counts_the_gap(start_server, started):
    fake = await started(FakeCoinbase(frames=load_frames("coinbase_frames.jsonl"),
                                      frame_interval_s=0.002))
    server = await start_server(feed="coinbase", symbols=("BTC-USD", "ETH-USD"),
                                feed_url=fake.url, feed_options=FAST)
    expected = expected_coinbase_last()
    snap = await replayed_everything(server, expected)
    assert all(matches(snap[s], v) for s, v in expected.items()), snap
    subscribe = fake.requests[0]
    assert subscribe["type"] == "subscribe"
    assert subscribe["product_ids"] == ["BTC-USD", "ETH-USD"]
    assert set(subscribe["channels"]) == {"matches", "ticker", "heartbeat"}
    assert server.feed.health.gaps == COINBASE_GAP_TRADES
    assert server.feed.health.parse_errors == 0


@pytest.mark.gen_test(timeout=30)
async def test_coinbase_resubscribes_after_a_drop(start_server, started):
    fake = await started(FakeCoinbase(frames=load_frames("coinbase_frames.jsonl"),
                                      frame_interval_s=0.01))
    server = await start_server(feed="coinbase", symbols=("BTC-USD", "ETH-USD"),
                                feed_url=fake.url, feed_options=FAST)
    await until(lambda: server.feed.health.messages > 2)
    fake.drop()
    await fake.wait_connections(2)
    await until(lambda: len(fake.requests) == 2)
    assert fake.requests[1] == fake.requests[0]
    assert server.feed.health.reconnects == 1


@pytest.mark.gen_test(timeout=30)
async def test_a_connection_is_renewed_when_its_lifetime_is_reached(
    start_server, started, binance_frames
):
    # Binance ends a connection after 24 h; the adapter renews it first (23.5 h by default).
    fake = await started(FakeBinance(frames=binance_frames, frame_interval_s=0.05))
    await start_server(feed="binance", symbols=("BTCUSDT", "ETHUSDT"), feed_url=fake.url,
                       feed_options=(*FAST, ("max_connection_s", "0.3")))
    await fake.wait_connections(3)
    assert fake.requests[0] == fake.requests[1] == fake.requests[2]
