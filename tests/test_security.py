"""Hostile and cross-site requests: origins, TLS, request limits."""

from __future__ import annotations

import asyncio
import socket
import ssl
import subprocess
from pathlib import Path

import orjson
import pytest
import tornado.httpclient
import tornado.websocket

from tests.clients import StreamClient, WSClient, http_url

ALLOWED = "https://app.example"


async def fetch(url: str, **headers: str) -> tornado.httpclient.HTTPResponse:
    return await tornado.httpclient.AsyncHTTPClient().fetch(
        url, headers=headers, raise_error=False
    )


@pytest.mark.gen_test(timeout=20)
async def test_a_cross_site_websocket_is_refused_with_403_before_the_upgrade(start_server):
    server = await start_server(allowed_origins=(ALLOWED,))
    for headers in ({"Origin": "https://evil.example"},
                    {"Origin": "https://evil.example", "Sec-Fetch-Site": "cross-site"}):
        with pytest.raises(tornado.httpclient.HTTPClientError) as e:
            await tornado.websocket.websocket_connect(tornado.httpclient.HTTPRequest(
                f"ws://127.0.0.1:{server.port}/ws", headers=headers))
        assert e.value.code == 403
    response = await fetch(http_url(server, "/ws"), Origin="https://evil.example",
                           Upgrade="websocket", Connection="Upgrade")
    assert response.code == 403
    assert orjson.loads(response.body)["code"] == "forbidden"


@pytest.mark.gen_test(timeout=20)
@pytest.mark.parametrize("origin", [ALLOWED, "http://127.0.0.1:{port}", None])
async def test_listed_same_and_no_origin_websockets_are_accepted(start_server, origin):
    server = await start_server(allowed_origins=(ALLOWED,))
    headers = {"Origin": origin.format(port=server.port)} if origin else {}
    conn = await tornado.websocket.websocket_connect(tornado.httpclient.HTTPRequest(
        f"ws://127.0.0.1:{server.port}/ws", headers=headers))
    frame = await asyncio.wait_for(conn.read_message(), 5)
    assert frame is not None and orjson.loads(frame)["type"] == "snapshot"
    conn.close()


@pytest.mark.gen_test(timeout=20)
async def test_a_cross_site_event_source_is_refused_and_a_listed_one_gets_cors(start_server):
    server = await start_server(allowed_origins=(ALLOWED,))
    for path in ("/sse", "/stream"):
        refused = await fetch(http_url(server, path), Origin="https://evil.example")
        assert refused.code == 403
        assert orjson.loads(refused.body)["type"] == "error"
    allowed = StreamClient(headers={"Origin": ALLOWED})
    await allowed.open(http_url(server, "/sse"), "sse")
    assert allowed.response_headers["access-control-allow-origin"] == ALLOWED
    assert (await allowed.recv_event())[1] == "snapshot"


@pytest.mark.gen_test(timeout=20)
async def test_api_responses_carry_security_headers(start_server):
    server = await start_server()
    for path in ("/api/symbols", "/healthz", "/api/bars?symbol=NOPE"):
        response = await fetch(http_url(server, path))
        assert response.headers["X-Content-Type-Options"] == "nosniff"
        assert response.headers["Referrer-Policy"] == "no-referrer"
        assert b"Traceback" not in response.body and b"/work/" not in response.body


@pytest.mark.gen_test(timeout=20)
async def test_an_oversized_request_header_gets_no_service(start_server):
    server = await start_server()
    loop = asyncio.get_running_loop()

    def send() -> bytes:
        with socket.create_connection(("127.0.0.1", server.port), timeout=5) as s:
            s.sendall(b"GET /api/symbols HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 40_000
                      + b"\r\n\r\n")
            return s.recv(65536)

    answer = await loop.run_in_executor(None, send)
    assert not answer.startswith(b"HTTP/1.1 200")
    assert (await fetch(http_url(server, "/healthz"))).code == 200  # and the server goes on


def self_signed(tmp: Path) -> tuple[str, str]:
    cert, key = tmp / "cert.pem", tmp / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
         "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True,
    )
    return str(cert), str(key)


@pytest.mark.gen_test(timeout=30)
async def test_https_and_wss_with_a_self_signed_certificate(start_server, tmp_path):
    cert, key = self_signed(tmp_path)
    server = await start_server(certfile=cert, keyfile=key)
    assert server.url.startswith("https://")
    context = ssl.create_default_context(cafile=cert)
    response = await tornado.httpclient.AsyncHTTPClient().fetch(
        f"https://127.0.0.1:{server.port}/healthz", ssl_options=context)
    assert orjson.loads(response.body)["status"] == "ok"
    conn = await tornado.websocket.websocket_connect(tornado.httpclient.HTTPRequest(
        f"wss://127.0.0.1:{server.port}/ws?encoding=br", ssl_options=context))
    ws = WSClient(conn, "br")
    assert (await ws.recv())["type"] == "snapshot"
    assert (await ws.recv())["type"] == "batch"
    ws.close()
    with pytest.raises((OSError, tornado.httpclient.HTTPClientError)):
        await tornado.httpclient.AsyncHTTPClient().fetch(http_url(server, "/healthz"))
