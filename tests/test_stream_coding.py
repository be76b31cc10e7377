"""Every content coding of /sse and /stream against a real server, read by real decoders:
snapshots, batches, resume, merged frames and keepalives through the same path, and a
stream ended by SIGTERM that decodes whole, trailer and checksum included."""

from __future__ import annotations

import itertools
import signal

import orjson
import pytest
import tornado.httpclient

from dashboard.loadtest.decoders import whole
from tests.clients import StreamClient, follows, http_url
from tests.process import DashboardProcess
from tests.rawhttp import RawConnection

CODINGS = ["zstd", "deflate", "gzip", "br", "identity"]
STREAMS = [("/sse", "sse"), ("/stream", "ndjson")]


async def open_stream(server, path: str, kind: str, coding: str) -> StreamClient:
    client = StreamClient(headers={"Accept-Encoding": coding})
    await client.open(http_url(server, path), kind)
    expected = None if coding == "identity" else coding
    assert client.response_headers.get("content-encoding") == expected
    return client


async def recv(client: StreamClient, kind: str) -> dict:
    """The next message (SSE: the next event's data), skipping retry and comments."""
    if kind == "sse":
        return (await client.recv_event())[2]
    return await client.recv()


@pytest.mark.gen_test(timeout=30)
@pytest.mark.parametrize("coding", CODINGS)
@pytest.mark.parametrize("path, kind", STREAMS)
async def test_every_coding_carries_snapshots_batches_resume_and_merged_frames(
    start_server, path, kind, coding
):
    server = await start_server(symbols=10, tick_rate=1000.0, batch_ms=20.0)
    live = await open_stream(server, path + "?symbols=AAPL,MSFT", kind, coding)
    assert (await recv(live, kind))["type"] == "snapshot"
    last = (await recv(live, kind))["seq"]
    for _ in range(20):
        msg = await recv(live, kind)
        assert msg["type"] == "batch" and follows(last, msg), (last, msg)
        last = msg["seq"]
    end = b"\n\n" if kind == "sse" else b"\n"
    assert all(c.endswith(end) for c in live.chunks if c)  # each chunk decoded whole
    since = "last_event_id" if kind == "sse" else "since"
    again = await open_stream(server, f"{path}?symbols=AAPL,MSFT&{since}={last}", kind, coding)
    assert follows(last, await recv(again, kind))  # resumed: the next batch, no snapshot
    slow = await open_stream(server, f"{path}?max_hz=4", kind, coding)
    assert (await recv(slow, kind))["type"] == "snapshot"
    paced = [await recv(slow, kind) for _ in range(3)]  # 4 a second of 50 batches
    assert any(m.get("first_seq", m["seq"]) < m["seq"] for m in paced), paced


@pytest.mark.gen_test(timeout=20)
@pytest.mark.parametrize("coding", CODINGS)
@pytest.mark.parametrize("path, kind", STREAMS)
async def test_an_idle_stream_keeps_alive_in_its_coding(start_server, path, kind, coding):
    server = await start_server(tick_rate=0.01, keepalive_s=0.2)
    idle = await open_stream(server, path, kind, coding)
    seen = [await idle.recv(timeout=3) for _ in range(3)]
    if kind == "sse":
        assert {"": ["keepalive"]} in seen
    else:
        assert any(m["type"] == "heartbeat" for m in seen)


@pytest.mark.gen_test(timeout=20)
@pytest.mark.parametrize("header", ["identity;q=0", "*;q=0", "zstd;q=0, identity;q=0"])
async def test_a_client_that_accepts_no_offered_coding_gets_406_with_a_json_error(
    start_server, header
):
    server = await start_server()
    response = await tornado.httpclient.AsyncHTTPClient().fetch(
        http_url(server, "/sse"), headers={"Accept-Encoding": header}, raise_error=False,
        decompress_response=False)  # else Tornado sends its own Accept-Encoding
    assert response.code == 406
    body = orjson.loads(response.body)
    assert body["type"] == "error" and "zstd, deflate, gzip, br, identity" in body["message"]
    assert server.state.clients == {}


def dechunk(raw: bytes) -> bytes:
    """An HTTP/1.1 chunked body, which must end with its last chunk."""
    body, rest = b"", raw
    while True:
        size_line, _, rest = rest.partition(b"\r\n")
        size = int(size_line, 16)
        if size == 0:
            assert rest == b"\r\n", rest[:50]
            return body
        body, rest = body + rest[:size], rest[size + 2:]


@pytest.mark.parametrize("coding", CODINGS)
@pytest.mark.parametrize("path, kind", STREAMS)
def test_a_stream_ended_by_sigterm_decodes_whole(path, kind, coding):
    proc = DashboardProcess("--symbols", "5", "--batch-ms", "20", "--log-level", "warning")
    conn = RawConnection(proc.port, timeout_s=10)
    try:
        conn.request(path.encode(), [("Accept-Encoding", coding.encode())])
        head = conn.head()
        assert head is not None and head.status == 200
        assert head.headers.get("transfer-encoding") == "chunked"
        raw = conn.rest()
        while raw.count(b"\r\n") < 60:  # the opening, a snapshot and a couple of dozen batches
            raw += conn.sock.recv(65536)
        proc.proc.send_signal(signal.SIGTERM)
        while chunk := conn.sock.recv(65536):
            raw += chunk
        assert proc.wait(15)[0] == 0
    except TimeoutError:
        raise AssertionError("the stream did not end after SIGTERM") from None
    finally:
        conn.close()
        proc.kill()
    text = whole(coding, dechunk(raw))
    if kind == "sse":
        assert text.startswith(b"retry: ")
        datas = [line[6:] for line in text.split(b"\n") if line.startswith(b"data: ")]
    else:
        datas = text.splitlines()
    messages = [orjson.loads(d) for d in datas]
    assert messages[0]["type"] == "snapshot" and len(messages) > 10
    for a, b in itertools.pairwise(messages[1:]):
        assert follows(a["seq"], b)
