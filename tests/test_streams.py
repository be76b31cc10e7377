"""Server-Sent Events and NDJSON streaming against a real server."""

from __future__ import annotations

import asyncio

import orjson
import pytest
import tornado.httpclient

from tests.clients import StreamClient, http_url, metric


async def open_stream(server, path: str, kind: str = "sse", **headers: str) -> StreamClient:
    client = StreamClient(headers=headers)
    await client.open(http_url(server, path), kind)
    return client


@pytest.mark.gen_test(timeout=20)
async def test_sse_starts_with_retry_then_a_snapshot_then_every_batch(start_server):
    server = await start_server()
    sse = await open_stream(server, "/sse", **{"Accept-Encoding": "identity"})
    assert sse.response_headers["content-type"].startswith("text/event-stream")
    assert sse.response_headers["cache-control"] == "no-store"
    assert sse.response_headers["x-accel-buffering"] == "no"
    assert "content-encoding" not in sse.response_headers
    assert await sse.recv() == {"retry": ["2000"]}
    id_, event, snapshot = await sse.recv_event()
    assert event == "snapshot" and id_ == str(snapshot["seq"])
    last = snapshot["seq"]
    for _ in range(100):
        id_, event, batch = await sse.recv_event()
        assert event == "batch" and batch["type"] == "batch"
        assert int(id_) == batch["seq"] == last + 1
        last = batch["seq"]


@pytest.mark.gen_test(timeout=20)
async def test_brotli_sse_decodes_event_by_event_as_each_arrives(start_server):
    server = await start_server()
    sse = await open_stream(server, "/sse?symbols=AAPL", **{"Accept-Encoding": "br"})
    assert sse.response_headers["content-encoding"] == "br"
    assert sse.response_headers["vary"] == "Accept-Encoding"
    await sse.recv_event()
    last = None
    for _ in range(50):
        _, _, batch = await sse.recv_event()
        assert last is None or batch["seq"] == last + 1
        last = batch["seq"]
    # Every non-empty decoded chunk ended on an event boundary: nothing waited in the
    # compressor for more data.
    assert all(c.endswith(b"\n\n") for c in sse.chunks if c)
    assert sum(1 for c in sse.chunks if c) >= 50


@pytest.mark.gen_test(timeout=20)
async def test_gzip_when_only_gzip_is_accepted(start_server):
    server = await start_server()
    sse = await open_stream(server, "/sse", **{"Accept-Encoding": "gzip"})
    assert sse.response_headers["content-encoding"] == "gzip"
    _, event, _ = await sse.recv_event()
    assert event == "snapshot"
    for _ in range(10):
        assert (await sse.recv_event())[1] == "batch"
    assert all(c.endswith(b"\n\n") for c in sse.chunks if c)


@pytest.mark.gen_test(timeout=20)
@pytest.mark.parametrize("how", ["header", "query"])
async def test_sse_resumes_from_last_event_id(start_server, how):
    server = await start_server()
    sse = await open_stream(server, "/sse")
    await sse.recv_event()
    since = int((await sse.recv_event())[0])
    while server.state.batcher.seq < since + 10:
        await asyncio.sleep(0.01)
    if how == "header":
        again = await open_stream(server, "/sse", **{"Last-Event-ID": str(since)})
    else:
        again = await open_stream(server, f"/sse?last_event_id={since}")
    ids = [int((await again.recv_event())[0]) for _ in range(20)]
    assert ids == list(range(since + 1, since + 21))


@pytest.mark.gen_test(timeout=20)
async def test_sse_sends_keepalive_comments_when_idle(start_server):
    server = await start_server(tick_rate=0.01, keepalive_s=0.2)
    sse = await open_stream(server, "/sse")
    seen = []
    while {"": ["keepalive"]} not in seen:
        seen.append(await sse.recv(timeout=3))


@pytest.mark.gen_test(timeout=20)
@pytest.mark.parametrize("path, kind", [("/sse", "sse"), ("/stream", "ndjson")])
async def test_every_write_of_a_stream_counts_as_a_frame_and_its_bytes(start_server, path, kind):
    """Batches, snapshots, keepalives and the retry line alike: what the client read."""
    server = await start_server(tick_rate=0.01, keepalive_s=0.2)
    stream = await open_stream(server, path, kind, **{"Accept-Encoding": "identity"})
    messages = [await stream.recv(timeout=3) for _ in range(4)]
    transport = path.strip("/")
    read = sum(len(chunk) for chunk in stream.chunks)
    sent = server.state.metrics.sent[transport]
    if kind == "sse":
        assert messages[0] == {"retry": ["2000"]} and messages[-1] == {"": ["keepalive"]}
    else:
        assert messages[-1]["type"] == "heartbeat"
    assert sent.frames >= len(messages) and sent.bytes >= read > 0
    text = (await tornado.httpclient.AsyncHTTPClient().fetch(http_url(server, "/metrics"))).body
    assert metric(text.decode(), "dashboard_frames_sent_total", transport=transport) >= 4


@pytest.mark.gen_test(timeout=20)
async def test_ndjson_stream_is_one_message_per_line_with_since_and_heartbeats(start_server):
    server = await start_server()
    stream = await open_stream(server, "/stream?symbols=SPY", kind="ndjson")
    assert stream.response_headers["content-type"] == "application/x-ndjson"
    snapshot = await stream.recv()
    assert snapshot["type"] == "snapshot"
    since = (await stream.recv())["seq"]
    while server.state.batcher.seq < since + 10:
        await asyncio.sleep(0.01)
    again = await open_stream(server, f"/stream?symbols=SPY&since={since}", kind="ndjson")
    assert [(await again.recv())["seq"] for _ in range(10)] == list(range(since + 1, since + 11))
    idle_server = await start_server(tick_rate=0.01, keepalive_s=0.2)
    idle = await open_stream(idle_server, "/stream", kind="ndjson")
    assert (await idle.recv())["type"] == "snapshot"
    heartbeat = await idle.recv(timeout=3)
    assert heartbeat["type"] == "heartbeat" and heartbeat["ts"] > 0


@pytest.mark.gen_test(timeout=20)
@pytest.mark.parametrize("path", ["/sse?symbols=NOPE", "/sse?max_hz=x", "/stream?since=-3",
                                  "/sse?last_event_id=abc"])
async def test_bad_stream_requests_get_400_with_a_json_body(start_server, path):
    server = await start_server()
    response = await tornado.httpclient.AsyncHTTPClient().fetch(
        http_url(server, path), raise_error=False
    )
    assert response.code == 400
    assert response.headers["Content-Type"] == "application/json"
    assert orjson.loads(response.body)["type"] == "error"
