"""Flow control against a real server: stalled sockets that never read, throttled clients,
spam, oversize messages, connection caps and dead peers."""

from __future__ import annotations

import asyncio
import socket
import time

import orjson
import pytest
import tornado.httpclient

from tests.clients import StreamClient, WSClient, decode_frame, http_url, metric
from tests.rawws import RawWebSocket

#: A fast feed, so a socket that stops reading fills up within a second or two.
BUSY = {"symbols": 50, "tick_rate": 20_000.0, "batch_ms": 10.0, "max_bytes_per_s": 0.0}


async def metrics(server) -> str:
    response = await tornado.httpclient.AsyncHTTPClient().fetch(http_url(server, "/metrics"))
    return response.body.decode()


def handler_for(server, transport: str):
    found = [c for c in server.state.clients if c.transport == transport]
    assert len(found) == 1
    return found[0]


def stalled_socket(port: int, path: str) -> socket.socket:
    """A client that sends a request and then never reads (a tiny receive buffer)."""
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    s.connect(("127.0.0.1", port))
    s.sendall(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode())
    return s


async def watch_until_gone(server, client, timeout_s: float) -> tuple[float, float, int]:
    """Poll a stalled client until the server lets it go: when it got stuck and when it
    was gone (loop time), and the most bytes the server held for it meanwhile."""
    loop = asyncio.get_running_loop()
    stuck_at, most = None, 0
    deadline = loop.time() + timeout_s
    while client in server.state.clients:
        assert loop.time() < deadline, "the stalled client was never dropped"
        if stuck_at is None and client.outbox.stuck_since is not None:
            stuck_at = client.outbox.stuck_since
        most = max(most, client.outstanding_bytes)
        await asyncio.sleep(0.005)
    assert stuck_at is not None
    return stuck_at, loop.time(), most


@pytest.mark.gen_test(timeout=40)
async def test_a_stalled_websocket_is_dropped_while_healthy_clients_get_every_seq(start_server):
    timeout_s = 1.0
    server = await start_server(**BUSY, slow_client_timeout_s=timeout_s)
    healthy = [await WSClient.connect(server, encoding="br") for _ in range(2)]
    healthy.append(await WSClient.connect(server))  # json: the stalled client's frames
    loop = asyncio.get_running_loop()
    # Reads the handshake, then never reads again.
    stalled = await loop.run_in_executor(None, lambda: RawWebSocket(server.port, rcvbuf=4096))
    ws_handlers = [c for c in server.state.clients if c.transport == "ws"]
    assert len(ws_handlers) == 4

    largest = [0]

    async def read_healthy(ws: WSClient, stop: asyncio.Event) -> list[float]:
        snapshot = await ws.recv_type("snapshot")
        last, latencies = snapshot["seq"], []
        while not stop.is_set():
            frame = await asyncio.wait_for(ws.conn.read_message(), 5)
            assert frame is not None
            if ws.encoding == "json":
                largest[0] = max(largest[0], len(frame))
            msg = decode_frame(frame, ws.encoding)
            assert msg["type"] == "batch" and "first_seq" not in msg
            assert msg["seq"] == last + 1, "a healthy client gets every seq"
            last = msg["seq"]
            latencies.append(time.time() * 1000 - msg["ts"])
        return latencies

    stop = asyncio.Event()
    readers = [asyncio.ensure_future(read_healthy(ws, stop)) for ws in healthy]
    # The stalled one is the handler whose socket the kernel stopped taking.
    deadline = loop.time() + 15
    while not any(h.outbox.stuck_since is not None for h in ws_handlers):
        assert loop.time() < deadline, "the stalled socket never filled"
        await asyncio.sleep(0.005)
    (victim,) = [h for h in ws_handlers if h.outbox.stuck_since is not None]
    stuck_at, gone_at, most = await watch_until_gone(server, victim, 10)
    await asyncio.sleep(0.3)
    stop.set()
    latencies = [x for r in await asyncio.gather(*readers) for x in r]

    assert gone_at - stuck_at <= timeout_s + 1.0
    # What the server holds for a stuck client is bounded by one frame plus control frames
    # (a close, pings): batches after it are merged into one pending state, not queued.
    assert most <= largest[0] + 14 + 1024, (most, largest[0])
    latencies.sort()
    assert len(latencies) > 100
    assert latencies[len(latencies) // 2] <= 10 * BUSY["batch_ms"]
    text = await metrics(server)
    assert metric(text, "dashboard_slow_consumers_dropped_total", transport="ws") == 1
    assert metric(text, "dashboard_slow_client_steps_total", transport="ws", step="dropped") == 1
    assert metric(text, "dashboard_connections", transport="ws") == 3
    # The socket was aborted: reading what the kernel had buffered ends in EOF (a close
    # frame, if one made it, says 1013).
    frames = []
    with pytest.raises(ConnectionError):
        while True:
            frames.append(await loop.run_in_executor(None, stalled.frame))
    stalled.close()
    assert frames, "it had frames buffered"
    for opcode, payload in frames:
        if opcode == 0x8:
            assert payload[:2] == (1013).to_bytes(2, "big")


@pytest.mark.gen_test(timeout=40)
async def test_a_stalled_sse_stream_is_aborted_after_the_timeout(start_server):
    server = await start_server(**BUSY, slow_client_timeout_s=0.5)
    healthy = StreamClient(headers={"Accept-Encoding": "identity"})
    await healthy.open(http_url(server, "/sse"), "sse")
    stalled = stalled_socket(server.port, "/sse")
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 15
    while not any(c.outbox.stuck_since is not None for c in server.state.clients):
        assert loop.time() < deadline, "the stalled socket never filled"
        await asyncio.sleep(0.005)
    (victim,) = [c for c in server.state.clients if c.outbox.stuck_since is not None]
    stuck_at, gone_at, most = await watch_until_gone(server, victim, 20)
    assert gone_at - stuck_at <= 0.5 + 1.0
    largest = max(len(chunk) for chunk in healthy.chunks)
    assert most <= largest + 1024, (most, largest)
    text = await metrics(server)
    assert metric(text, "dashboard_slow_consumers_dropped_total", transport="sse") == 1
    assert metric(text, "dashboard_connections", transport="sse") == 1  # the healthy one
    stalled.close()


def apply(state: dict, msg: dict) -> None:
    """A client's view: latest quote per symbol and volume (snapshot + sizes)."""
    if msg["type"] == "snapshot":
        q = msg["quotes"]
        for i, sym in enumerate(q["sym"]):
            state[sym] = [q["price"][i], q["bid"][i], q["ask"][i], q["ts"][i], q["volume"][i]]
    elif msg["type"] == "batch":
        t = msg["ticks"]
        for i, sym in enumerate(t["sym"]):
            volume = state.get(sym, [0, 0, 0, 0, 0])[4] + t["size"][i]
            state[sym] = [t["price"][i], t["bid"][i], t["ask"][i], t["ts"][i], volume]


@pytest.mark.gen_test(timeout=40)
async def test_max_hz_limits_frames_and_ends_on_the_same_quotes(start_server):
    server = await start_server(symbols=10, tick_rate=2000.0, batch_ms=10.0)
    ws = await WSClient.connect(server, "symbols=AAPL,MSFT,SPY")
    slow = await WSClient.connect(server, "symbols=AAPL,MSFT,SPY&max_hz=2")
    full, throttled = {}, {}
    apply(full, await ws.recv_type("snapshot"))
    apply(throttled, await slow.recv_type("snapshot"))
    # Both joined at the same batch, so they start from the same snapshot seq.
    loop = asyncio.get_running_loop()
    start, frames, last_seq, merged = loop.time(), 0, None, 0
    while loop.time() - start < 2.5:
        msg = await slow.recv()
        frames += 1
        assert msg["type"] == "batch"
        assert last_seq is None or msg.get("first_seq", msg["seq"]) == last_seq + 1, "no gap"
        last_seq = msg["seq"]
        merged += msg.get("conflated", 0)
        apply(throttled, msg)
    elapsed = loop.time() - start
    assert frames <= 2 * elapsed + 1
    assert merged > 0
    await server.feed.stop()  # the market goes quiet: the last batch is the last one
    await asyncio.sleep(0.1)
    final = server.state.batcher.seq
    while last_seq < final:
        msg = await slow.recv(timeout=2)
        last_seq = msg["seq"]
        apply(throttled, msg)
    seq = None
    while seq != final:
        msg = await ws.recv(timeout=2)
        seq = msg["seq"]
        apply(full, msg)
    assert throttled == full


@pytest.mark.gen_test(timeout=20)
async def test_message_spam_is_closed_with_1008(start_server):
    server = await start_server(max_client_msgs_per_s=5.0)
    ws = await WSClient.connect(server)
    for i in range(30):
        await ws.send({"op": "ping", "id": i})
    code, reason = await ws.closed()
    assert code == 1008 and "rate limit" in reason
    text = await metrics(server)
    assert metric(text, "dashboard_rate_limit_rejections_total", reason="client_msgs") == 1


@pytest.mark.gen_test(timeout=20)
async def test_an_oversize_message_is_closed_with_1009(start_server):
    server = await start_server()
    ws = await WSClient.connect(server)
    await ws.recv_type("snapshot")
    await ws.conn.write_message(orjson.dumps({"op": "subscribe", "symbols": ["A" * 8000]}))
    code, _ = await ws.closed()
    assert code == 1009


@pytest.mark.gen_test(timeout=20)
@pytest.mark.parametrize("limit", ["max_connections", "max_connections_per_ip"])
async def test_connection_caps_refuse_websockets_with_1013_and_streams_with_503(
    start_server, limit
):
    server = await start_server(**{limit: 2})
    first = await WSClient.connect(server)
    second = StreamClient()
    await second.open(http_url(server, "/sse"), "sse")
    refused = await WSClient.connect(server)
    code, reason = await refused.closed()
    assert code == 1013 and limit in reason
    response = await tornado.httpclient.AsyncHTTPClient().fetch(
        http_url(server, "/stream"), raise_error=False
    )
    assert response.code == 503 and int(response.headers["Retry-After"]) > 0
    assert orjson.loads(response.body)["type"] == "error"
    text = await metrics(server)
    assert metric(text, "dashboard_rate_limit_rejections_total", reason=limit) == 2
    first.close()
    await first.conn.read_message()
    while len(server.state.clients) > 1:
        await asyncio.sleep(0.01)
    again = await WSClient.connect(server)  # a freed slot is usable again
    assert (await again.recv())["type"] == "snapshot"


@pytest.mark.gen_test(timeout=20)
async def test_a_peer_that_stops_answering_pings_is_aborted(start_server):
    interval, timeout = 0.3, 0.3
    server = await start_server(ping_interval_s=interval, ping_timeout_s=timeout, tick_rate=1.0)
    loop = asyncio.get_running_loop()
    started = loop.time()
    raw = await loop.run_in_executor(None, RawWebSocket, server.port)
    opcodes = []
    with pytest.raises(ConnectionError):
        while True:  # it reads everything but never answers a ping
            opcodes.append((await loop.run_in_executor(None, raw.frame))[0])
    assert 0x9 in opcodes
    assert loop.time() - started <= interval + timeout + 1.0 + 0.5
    text = await metrics(server)
    assert metric(text, "dashboard_dead_peers_total", transport="ws") == 1
    assert metric(text, "dashboard_connections", transport="ws") == 0
    raw.close()


@pytest.mark.gen_test(timeout=20)
async def test_a_peer_that_answers_pings_stays(start_server):
    server = await start_server(ping_interval_s=0.2, ping_timeout_s=0.2)
    ws = await WSClient.connect(server)  # Tornado's client answers pings while it reads
    loop = asyncio.get_running_loop()
    start = loop.time()
    while loop.time() - start < 1.5:
        await ws.recv()
    await ws.send({"op": "ping", "id": 1})
    assert (await ws.recv_type("pong"))["id"] == 1


@pytest.mark.gen_test(timeout=20)
async def test_a_throttled_client_that_subscribes_gets_everything_in_seq_order(start_server):
    server = await start_server(symbols=10)
    ws = await WSClient.connect(server, "symbols=AAPL&max_hz=2")
    last = (await ws.recv_type("snapshot"))["seq"]
    first_batch = await ws.recv()
    assert first_batch["type"] == "batch"
    last = first_batch["seq"]
    await asyncio.sleep(0.2)  # batches pile up behind the pace
    await ws.send({"op": "subscribe", "symbols": ["MSFT"]})
    kinds = []
    while "snapshot" not in kinds or len(kinds) < kinds.index("snapshot") + 3:
        msg = await ws.recv()
        kinds.append(msg["type"])
        if msg["type"] == "snapshot":
            assert msg["seq"] == last, "the snapshot reflects exactly what was already sent"
        else:
            assert msg.get("first_seq", msg["seq"]) == last + 1
            last = msg["seq"]
    assert kinds[0] == "batch", "what was owed went out before the snapshot"


@pytest.mark.gen_test(timeout=20)
async def test_a_throttled_client_that_unsubscribes_gets_none_of_that_symbol_after(
    start_server
):
    server = await start_server(symbols=10)
    ws = await WSClient.connect(server, "symbols=AAPL,MSFT,SPY&max_hz=1")
    await ws.recv_type("snapshot")
    await ws.recv_type("batch")
    await asyncio.sleep(0.3)  # AAPL ticks are held behind the pace
    await ws.send({"op": "unsubscribe", "symbols": ["AAPL"]})
    await ws.send({"op": "ping", "id": "done"})
    await ws.recv_type("pong")
    for _ in range(3):
        msg = await ws.recv_type("batch")
        assert "AAPL" not in msg["ticks"]["sym"]
        assert set(msg["ticks"]["sym"]) <= {"MSFT", "SPY"}


@pytest.mark.gen_test(timeout=20)
async def test_streams_ask_the_kernel_to_drop_a_vanished_peer_after_the_ping_timeout(
    start_server
):
    server = await start_server(ping_timeout_s=7.0)
    sse = StreamClient()
    await sse.open(http_url(server, "/sse"), "sse")
    (handler,) = server.state.clients
    sock = handler._iostream().socket
    assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT) == 7000


@pytest.mark.gen_test(timeout=20)
async def test_every_transport_sends_small_frames_without_waiting_for_an_ack(start_server):
    """TCP_NODELAY: with Nagle's algorithm a reply written right after another one waited
    for the client's delayed ack."""
    server = await start_server()
    ws = await WSClient.connect(server)
    sse, ndjson = StreamClient(), StreamClient()
    await sse.open(http_url(server, "/sse"), "sse")
    await ndjson.open(http_url(server, "/stream"), "ndjson")
    await ws.recv_type("snapshot")
    sockets = {
        "ws": handler_for(server, "ws")._stream.socket,
        "sse": handler_for(server, "sse")._iostream().socket,
        "stream": handler_for(server, "stream")._iostream().socket,
    }
    for transport, sock in sockets.items():
        assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY), transport


@pytest.mark.gen_test(timeout=20)
async def test_one_failing_client_does_not_stop_the_others_keepalives(start_server):
    server = await start_server(tick_rate=0.01, keepalive_s=0.2)

    class Broken:
        transport = "sse"
        outstanding_bytes = 0

        def keepalive(self, now: float) -> None:
            raise RuntimeError("boom")

    broken = Broken()
    server.state.clients[broken] = "127.0.0.1"
    sse = StreamClient()
    await sse.open(http_url(server, "/sse"), "sse")
    seen = 0
    while seen < 3:
        if await sse.recv(timeout=3) == {"": ["keepalive"]}:
            seen += 1
    del server.state.clients[broken]
