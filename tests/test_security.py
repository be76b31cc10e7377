"""Hostile and cross-site requests: origins, TLS, request limits."""

from __future__ import annotations

import asyncio
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
@pytest.mark.parametrize("path", ["/sse", "/stream", "/api/symbols", "/api/snapshot",
                                  "/api/bars?symbol=AAPL"])
async def test_a_listed_sites_preflight_is_answered_so_fetch_may_send_a_token(
    start_server, path,
):
    """What Chromium sends before a ``fetch`` with ``Authorization`` from another site, and
    the answer it needs; then the request itself carries CORS, its 401 included."""
    server = await start_server(allowed_origins=(ALLOWED,), auth_token_secret=b"s" * 32)
    preflight = tornado.httpclient.HTTPRequest(
        http_url(server, path), method="OPTIONS", headers={
            "Origin": ALLOWED, "Access-Control-Request-Method": "GET",
            "Access-Control-Request-Headers": "authorization"})
    answer = await tornado.httpclient.AsyncHTTPClient().fetch(preflight, raise_error=False)
    assert answer.code == 204, answer.body
    assert answer.headers["Access-Control-Allow-Origin"] == ALLOWED
    assert "GET" in answer.headers["Access-Control-Allow-Methods"]
    assert "authorization" in answer.headers["Access-Control-Allow-Headers"].lower()
    refused = await fetch(http_url(server, path), Origin=ALLOWED)
    assert refused.code == 401
    assert refused.headers["Access-Control-Allow-Origin"] == ALLOWED
    assert "WWW-Authenticate" in refused.headers["Access-Control-Expose-Headers"]


@pytest.mark.gen_test(timeout=20)
@pytest.mark.parametrize("path", ["/sse", "/api/symbols"])
async def test_another_sites_preflight_is_refused(start_server, path):
    server = await start_server(allowed_origins=(ALLOWED,))
    preflight = tornado.httpclient.HTTPRequest(
        http_url(server, path), method="OPTIONS", headers={
            "Origin": "https://evil.example", "Access-Control-Request-Method": "GET",
            "Access-Control-Request-Headers": "authorization"})
    answer = await tornado.httpclient.AsyncHTTPClient().fetch(preflight, raise_error=False)
    assert answer.code == 403
    assert "Access-Control-Allow-Origin" not in answer.headers
    assert orjson.loads(answer.body)["code"] == "forbidden"


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
