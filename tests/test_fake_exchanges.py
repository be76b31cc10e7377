"""The fake exchanges behave as documented, seen through Tornado's own WebSocket client."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import pytest
import tornado.httpclient
from tornado.websocket import WebSocketClientConnection, websocket_connect

from tests.fake_exchanges import (
    COINBASE_GAP_TRADES,
    FakeBinance,
    FakeCoinbase,
    expected_binance_last,
    expected_coinbase_last,
    load_frames,
)

MARK = '{"mark":"end"}'


async def connect(url: str) -> WebSocketClientConnection:
    return await asyncio.wait_for(websocket_connect(url), 5)


async def read(conn: WebSocketClientConnection, timeout: float = 5.0) -> Any:
    """The next message, parsed; None once the connection is closed."""
    text = await asyncio.wait_for(conn.read_message(), timeout)
    return None if text is None else json.loads(text)


async def read_exactly(conn: WebSocketClientConnection, fake: Any, n: int) -> list[Any]:
    """The next ``n`` messages, then proof that nothing else came: a marker sent a little
    later is the very next message."""
    out = [await read(conn) for _ in range(n)]
    await asyncio.sleep(0.1)
    fake.send_raw(MARK)
    assert await read(conn) == json.loads(MARK)
    return out


# -- data files -----------------------------------------------------------------------------


def test_frame_files_end_with_the_distinctive_values_and_have_one_coinbase_gap() -> None:
    last = expected_binance_last()
    assert last["BTCUSDT"]["price"] == 97123.45
    assert last["ETHUSDT"]["price"] == 3412.34
    assert set(expected_coinbase_last()) == {"BTC-USD", "ETH-USD"}
    missing = 0
    previous: dict[str, int] = {}
    for m in load_frames("coinbase_frames.jsonl"):
        if m["type"] == "match":
            if m["product_id"] in previous:
                missing += m["trade_id"] - previous[m["product_id"]] - 1
            previous[m["product_id"]] = m["trade_id"]
    assert missing == COINBASE_GAP_TRADES


# -- Binance --------------------------------------------------------------------------------


@pytest.mark.gen_test(timeout=20)
async def test_binance_wraps_frames_and_replays_only_the_requested_streams(started) -> None:
    frames = load_frames("binance_frames.jsonl")
    fake = await started(FakeBinance(frames=frames, frame_interval_s=0.001))
    conn = await connect(f"{fake.url}/stream?streams=btcusdt@trade/ethusdt@bookTicker")
    wanted = [f for f in frames if f["stream"] in ("btcusdt@trade", "ethusdt@bookTicker")]
    assert await read_exactly(conn, fake, len(wanted)) == wanted
    assert fake.requests == [["btcusdt@trade", "ethusdt@bookTicker"]]
    assert fake.connections == 1
    conn.close()


@pytest.mark.gen_test(timeout=20)
async def test_binance_raw_stream_sends_unwrapped_data(started) -> None:
    frames = load_frames("binance_frames.jsonl")
    fake = await started(FakeBinance(frames=frames, frame_interval_s=0.001))
    conn = await connect(f"{fake.url}/ws/ethusdt@trade")
    wanted = [f["data"] for f in frames if f["stream"] == "ethusdt@trade"]
    assert await read_exactly(conn, fake, len(wanted)) == wanted
    assert fake.requests == [["ethusdt@trade"]]
    conn.close()


@pytest.mark.gen_test(timeout=20)
@pytest.mark.parametrize("streams", [
    "BTCUSDT@trade",
    "btcusdt@trade/btcusdt@depth",
    "/".join(f"s{i}usdt@trade" for i in range(1025)),
], ids=["uppercase", "depth", "1025-streams"])
async def test_binance_refuses_bad_stream_names_with_400(started, streams: str) -> None:
    fake = await started(FakeBinance(frames=[]))
    with pytest.raises(tornado.httpclient.HTTPClientError) as refused:
        await connect(f"{fake.url}/stream?streams={streams}")
    assert refused.value.code == 400
    assert fake.connections == 0
    assert fake.requests == []


@pytest.mark.gen_test(timeout=20)
async def test_binance_pings_and_records_the_echoed_pong(started) -> None:
    frames = load_frames("binance_frames.jsonl")
    fake = await started(FakeBinance(frames=frames, frame_interval_s=0.01, ping_interval_s=0.05))
    conn = await connect(f"{fake.url}/stream?streams=btcusdt@trade")
    deadline = time.monotonic() + 5
    while not fake.pongs:  # reading keeps the client's frame loop, which answers pings, going
        assert time.monotonic() < deadline, "no pong"
        try:
            await asyncio.wait_for(conn.read_message(), 0.05)
        except TimeoutError:
            pass
    assert fake.pongs[0] == fake.pings[0]
    assert abs(int(fake.pongs[0]) - time.time() * 1000) < 10_000
    conn.close()


@pytest.mark.gen_test(timeout=20)
async def test_binance_answers_a_live_subscribe(started) -> None:
    fake = await started(FakeBinance(frames=[]))
    conn = await connect(f"{fake.url}/stream?streams=btcusdt@trade")
    request = {"method": "SUBSCRIBE", "params": ["ethusdt@bookTicker"], "id": 7}
    await conn.write_message(json.dumps(request))
    assert await read(conn) == {"result": None, "id": 7}
    assert fake.subscribes == [request]
    await conn.write_message(json.dumps({"method": "LIST_SUBSCRIPTIONS", "id": 8}))
    assert await read(conn) == {"result": ["btcusdt@trade", "ethusdt@bookTicker"], "id": 8}
    conn.close()


@pytest.mark.gen_test(timeout=20)
async def test_binance_drop_closes_without_a_close_frame_and_the_client_can_come_back(
    started,
) -> None:
    frames = load_frames("binance_frames.jsonl")
    fake = await started(FakeBinance(frames=frames, frame_interval_s=0.05))
    url = f"{fake.url}/stream?streams=btcusdt@trade/btcusdt@bookTicker"
    conn = await connect(url)
    await fake.wait_connections(1)
    assert (await read(conn))["stream"].startswith("btcusdt@")
    fake.drop()
    while (message := await read(conn)) is not None:  # frames already in flight, then EOF
        assert "stream" in message
    assert conn.close_code is None  # no close frame
    conn.close()
    again = await connect(url)
    await fake.wait_connections(2, timeout=5)
    assert fake.connections == 2
    assert fake.requests[1] == fake.requests[0]
    again.close()


@pytest.mark.gen_test(timeout=20)
async def test_wait_connections_times_out(started) -> None:
    fake = await started(FakeBinance(frames=[]))
    with pytest.raises(TimeoutError):
        await fake.wait_connections(1, timeout=0.1)


@pytest.mark.gen_test(timeout=20)
async def test_binance_server_shutdown_sends_the_documented_frame_and_stays_open(
    started,
) -> None:
    fake = await started(FakeBinance(frames=[]))
    conn = await connect(f"{fake.url}/stream?streams=btcusdt@trade")
    await fake.wait_connections(1)
    before = int(time.time() * 1000)
    fake.server_shutdown()
    message = await read(conn)
    assert message["stream"] == "!serverShutdown"
    assert message["data"]["e"] == "serverShutdown"
    assert before <= message["data"]["E"] <= int(time.time() * 1000)
    fake.send_raw("{not json")
    assert await asyncio.wait_for(conn.read_message(), 5) == "{not json"  # still open
    conn.close()


# -- Coinbase -------------------------------------------------------------------------------


@pytest.mark.gen_test(timeout=20)
async def test_coinbase_closes_a_client_that_does_not_subscribe(started) -> None:
    fake = await started(FakeCoinbase(frames=load_frames("coinbase_frames.jsonl"),
                                      subscribe_timeout_s=0.3))
    opened = time.monotonic()
    conn = await connect(fake.url)
    assert await read(conn) == {"type": "error", "message": "Failed to subscribe"}
    assert await read(conn) is None
    assert time.monotonic() - opened >= 0.25
    assert fake.connections == 1
    assert fake.requests == []
    conn.close()


@pytest.mark.gen_test(timeout=20)
async def test_coinbase_answers_subscriptions_and_filters_by_product_and_channel(
    started,
) -> None:
    frames = load_frames("coinbase_frames.jsonl")
    fake = await started(FakeCoinbase(frames=frames, frame_interval_s=0.001,
                                      subscribe_timeout_s=0.3))
    conn = await connect(fake.url)
    subscribe = {
        "type": "subscribe", "product_ids": ["ETH-USD"],
        "channels": ["matches", {"name": "heartbeat", "product_ids": ["BTC-USD"]}],
    }
    await conn.write_message(json.dumps(subscribe))
    assert await read(conn) == {"type": "subscriptions", "channels": [
        {"name": "matches", "product_ids": ["ETH-USD"]},
        {"name": "heartbeat", "product_ids": ["BTC-USD"]},
    ]}
    wanted = [
        f for f in frames
        if (f["type"] == "match" and f["product_id"] == "ETH-USD")
        or (f["type"] == "heartbeat" and f["product_id"] == "BTC-USD")
    ]
    assert await read_exactly(conn, fake, len(wanted)) == wanted
    await asyncio.sleep(0.3)  # past subscribe_timeout_s: a subscribed client stays connected
    fake.send_raw(MARK)
    assert await read(conn) == json.loads(MARK)
    assert fake.requests == [subscribe]
    conn.close()


@pytest.mark.gen_test(timeout=20)
async def test_coinbase_drop_aborts_the_connection(started) -> None:
    fake = await started(FakeCoinbase(frames=load_frames("coinbase_frames.jsonl")))
    conn = await connect(fake.url)
    await conn.write_message(json.dumps(
        {"type": "subscribe", "product_ids": ["BTC-USD"], "channels": ["ticker"]}))
    assert (await read(conn))["type"] == "subscriptions"
    fake.drop()
    while (message := await read(conn)) is not None:
        assert message["type"] == "ticker"
    assert conn.close_code is None
    conn.close()
