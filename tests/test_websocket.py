"""The WebSocket transport against a real server on a loopback port."""

from __future__ import annotations

import asyncio

import orjson
import pytest
import tornado.httpclient

from dashboard.core.hub import MAX_EXACT_REPLAY
from tests.clients import WSClient, http_url
from tests.rawws import RawWebSocket


def assert_batch_columns(msg: dict) -> None:
    cols = msg["ticks"]
    assert set(cols) == {"sym", "price", "size", "bid", "ask", "ts"}
    assert len({len(v) for v in cols.values()}) == 1


@pytest.mark.gen_test(timeout=20)
async def test_a_client_gets_a_snapshot_then_every_batch_in_seq_order(start_server):
    server = await start_server(batch_ms=5)
    ws = await WSClient.connect(server)
    snapshot = await ws.recv()
    assert snapshot["type"] == "snapshot" and snapshot["reset"] is False
    last = snapshot["seq"]
    for _ in range(300):
        msg = await ws.recv()
        assert msg["type"] == "batch"
        assert msg["seq"] == last + 1, "no gap, no repeat"
        assert "first_seq" not in msg
        assert_batch_columns(msg)
        last = msg["seq"]
    ws.close()


@pytest.mark.gen_test(timeout=20)
async def test_json_br_and_deflate_carry_the_same_messages(start_server):
    server = await start_server()
    encodings = ("json", "br", "deflate")
    clients = {enc: await WSClient.connect(server, encoding=enc) for enc in encodings}
    seen: dict[str, dict[int, dict]] = {enc: {} for enc in clients}
    for enc, ws in clients.items():
        while len(seen[enc]) < 30:
            msg = await ws.recv()
            if msg["type"] == "batch":
                seen[enc][msg["seq"]] = msg
    common = set(seen["json"]) & set(seen["br"]) & set(seen["deflate"])
    assert len(common) >= 20
    for seq in common:
        assert seen["json"][seq] == seen["br"][seq] == seen["deflate"][seq]


@pytest.mark.gen_test(timeout=20)
async def test_the_symbol_filter_sends_only_those_symbols_and_every_batch(start_server):
    server = await start_server()
    ws = await WSClient.connect(server, "symbols=AAPL,MSFT")
    snapshot = await ws.recv()
    assert set(snapshot["quotes"]["sym"]) <= {"AAPL", "MSFT"}
    last, syms, empty = snapshot["seq"], set(), 0
    for _ in range(100):
        msg = await ws.recv()
        assert msg["seq"] == last + 1
        last = msg["seq"]
        syms |= set(msg["ticks"]["sym"])
        empty += not msg["ticks"]["sym"]
        assert_batch_columns(msg)
    assert syms == {"AAPL", "MSFT"}
    assert empty > 0, "batches with none of the symbols still arrive, with empty columns"


@pytest.mark.gen_test(timeout=20)
async def test_subscribe_unsubscribe_and_ping(start_server):
    server = await start_server()
    ws = await WSClient.connect(server, "symbols=AAPL")
    await ws.recv_type("snapshot")
    for _ in range(20):  # every symbol has ticked by now
        await ws.recv_type("batch")
    await ws.send({"op": "subscribe", "symbols": ["MSFT", "SPY"]})
    added = await ws.recv_type("snapshot")
    assert sorted(added["quotes"]["sym"]) == ["MSFT", "SPY"], "a snapshot of what was added"
    seen = set()
    while seen != {"AAPL", "MSFT", "SPY"}:
        msg = await ws.recv()
        seen |= set(msg["ticks"]["sym"])
        assert set(msg["ticks"]["sym"]) <= {"AAPL", "MSFT", "SPY"}
    await ws.send({"op": "unsubscribe", "symbols": ["AAPL", "SPY"]})
    await ws.send({"op": "ping", "id": "after-unsub"})
    pong = await ws.recv_type("pong")
    assert pong["id"] == "after-unsub" and pong["ts"] > 0
    for _ in range(30):
        msg = await ws.recv()
        assert set(msg["ticks"]["sym"]) <= {"MSFT"}
    ws.close()


@pytest.mark.gen_test(timeout=20)
@pytest.mark.parametrize("encoding", ["json", "br"])
async def test_bad_client_messages_get_an_error_and_the_stream_goes_on(start_server, encoding):
    server = await start_server()
    ws = await WSClient.connect(server, encoding=encoding)
    await ws.recv_type("snapshot")
    deep = '{"op":"ping","id":' + "[" * 300 + "]" * 300 + "}"
    for text, code in [
        ("{not json", "bad_request"),
        (deep, "bad_request"),
        (b'{"op":"ping","id":1}', "bad_request"),  # a binary frame
        ('{"op":"dance"}', "unknown_op"),
        ('{"op":"subscribe","symbols":["NOPE"]}', "unknown_symbol"),
    ]:
        await ws.conn.write_message(text, binary=isinstance(text, bytes))
        error = await ws.recv_type("error")
        assert error["code"] == code and error["message"]
    last = (await ws.recv_type("batch"))["seq"]
    for _ in range(10):
        msg = await ws.recv()
        assert msg["seq"] == last + 1
        last = msg["seq"]


@pytest.mark.gen_test(timeout=20)
async def test_resume_replays_exactly_the_missed_batches(start_server):
    server = await start_server()
    ws = await WSClient.connect(server)
    await ws.recv_type("snapshot")
    got = [await ws.recv() for _ in range(5)]
    ws.close()
    since = got[-1]["seq"]
    while server.state.batcher.seq < since + 20:
        await asyncio.sleep(0.01)
    again = await WSClient.connect(server, f"since={since}")
    seqs = [(await again.recv())["seq"] for _ in range(40)]
    assert seqs == list(range(since + 1, since + 41)), "replay in order, then live, no gap"


@pytest.mark.gen_test(timeout=20)
async def test_a_resume_point_no_longer_held_gets_a_reset_snapshot(start_server):
    server = await start_server(history_s=0.1)
    ws = await WSClient.connect(server)
    first = await ws.recv_type("snapshot")
    ws.close()
    while server.state.batcher.seq < first["seq"] + 30:
        await asyncio.sleep(0.01)
    again = await WSClient.connect(server, f"since={first['seq']}")
    reset = await again.recv()
    assert reset["type"] == "snapshot" and reset["reset"] is True
    assert len(reset["quotes"]["sym"]) == 20
    assert (await again.recv())["seq"] == reset["seq"] + 1


@pytest.mark.gen_test(timeout=20)
@pytest.mark.parametrize("query, code", [
    ("encoding=zstd", "bad_request"),
    ("since=yesterday", "bad_request"),
    ("symbols=AAPL,NOPE", "unknown_symbol"),
    ("max_hz=-1", "bad_request"),
])
async def test_a_bad_query_is_refused_with_400_and_json_before_the_upgrade(
    start_server, query, code
):
    server = await start_server()
    with pytest.raises(tornado.httpclient.HTTPClientError) as e:
        await WSClient.connect(server, query)
    assert e.value.code == 400
    response = await tornado.httpclient.AsyncHTTPClient().fetch(
        http_url(server, f"/ws?{query}"), raise_error=False,
        headers={"Upgrade": "websocket", "Connection": "Upgrade"},
    )
    assert response.code == 400
    body = orjson.loads(response.body)
    assert body["type"] == "error" and body["code"] == code and body["message"]


@pytest.mark.gen_test(timeout=20)
async def test_the_server_sends_protocol_pings(start_server):
    server = await start_server(ping_interval_s=0.2, ping_timeout_s=0.2, tick_rate=0.01)
    loop = asyncio.get_running_loop()
    raw = await loop.run_in_executor(None, RawWebSocket, server.port)
    assert raw.status == 101
    opcodes = []
    while 0x9 not in opcodes:
        opcode, _ = await loop.run_in_executor(None, raw.frame)
        opcodes.append(opcode)
    assert opcodes[0] == 0x1, "the snapshot (a text frame) comes first"
    raw.close()


@pytest.mark.gen_test(timeout=30)
async def test_a_resume_from_far_back_gets_one_catch_up_message(start_server):
    server = await start_server(batch_ms=5, history_s=30)
    ws = await WSClient.connect(server)
    since = (await ws.recv_type("snapshot"))["seq"]
    ws.close()
    while server.state.batcher.seq < since + MAX_EXACT_REPLAY + 50:
        await asyncio.sleep(0.05)
    again = await WSClient.connect(server, f"since={since}")
    caught_up = await again.recv()
    assert caught_up["type"] == "batch"
    assert caught_up["first_seq"] == since + 1
    assert caught_up["seq"] >= since + MAX_EXACT_REPLAY + 50
    assert caught_up["conflated"] > 0
    assert len(set(caught_up["ticks"]["sym"])) == len(caught_up["ticks"]["sym"])
    assert (await again.recv())["seq"] == caught_up["seq"] + 1


@pytest.mark.gen_test(timeout=20)
@pytest.mark.parametrize("headers, status", [
    ({}, 400),  # a plain GET
    ({"Upgrade": "websocket"}, 400),  # no Connection: Upgrade
    ({"Upgrade": "websocket", "Connection": "Upgrade", "Sec-WebSocket-Key": "x"}, 426),
    ({"Upgrade": "websocket", "Connection": "keep-alive, Upgrade",
      "Sec-WebSocket-Version": "99", "Sec-WebSocket-Key": "x"}, 426),
    ({"Upgrade": "websocket", "Connection": "Upgrade", "Sec-WebSocket-Version": "13"}, 400),
])
async def test_a_request_that_is_no_handshake_is_refused_with_json(start_server, headers, status):
    server = await start_server()
    response = await tornado.httpclient.AsyncHTTPClient().fetch(
        http_url(server, "/ws?symbols=AAPL"), raise_error=False, headers=headers
    )
    assert response.code == status
    assert response.headers["Content-Type"] == "application/json"
    body = orjson.loads(response.body)
    assert body["type"] == "error" and body["code"] == "bad_request" and body["message"]
    if status == 426:  # RFC 6455 §4.2.2: and the versions it speaks
        assert "13" in response.headers["Sec-WebSocket-Version"]
