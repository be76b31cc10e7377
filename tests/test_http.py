"""Plain HTTP endpoints: page, health, metrics and the JSON API."""

from __future__ import annotations

import orjson
import pytest
import tornado.httpclient

from tests.clients import WSClient, http_url, metric


async def get(server, path: str) -> tornado.httpclient.HTTPResponse:
    return await tornado.httpclient.AsyncHTTPClient().fetch(
        http_url(server, path), raise_error=False
    )


@pytest.mark.gen_test(timeout=20)
async def test_the_page_is_served_with_a_strict_content_security_policy(start_server):
    server = await start_server()
    page = await get(server, "/")
    assert page.code == 200 and b'<script type="module" src="app.js">' in page.body
    csp = page.headers["Content-Security-Policy"]
    script_src = next(d for d in csp.split(";") if d.strip().startswith("script-src"))
    assert script_src.split() == ["script-src", "'self'"]
    assert (await get(server, "/app.js")).code == 200
    missing = await get(server, "/nope.js")
    assert missing.code == 404 and orjson.loads(missing.body)["type"] == "error"


@pytest.mark.gen_test(timeout=20)
async def test_healthz_reports_the_feed_and_seq(start_server):
    server = await start_server()
    response = await get(server, "/healthz")
    body = orjson.loads(response.body)
    assert response.code == 200 and body["status"] == "ok" and body["feed"] == "sim"
    assert body["symbols"] == 20


@pytest.mark.gen_test(timeout=20)
async def test_symbols_snapshot_and_bars(start_server):
    server = await start_server(symbols=("AAPL", "MSFT", "BTC-USD"), tick_rate=3000)
    symbols = orjson.loads((await get(server, "/api/symbols")).body)
    assert symbols == {"symbols": ["AAPL", "MSFT", "BTC-USD"]}
    ws = await WSClient.connect(server)
    await ws.recv_type("snapshot")
    for _ in range(30):
        await ws.recv()
    snap = orjson.loads((await get(server, "/api/snapshot?symbols=AAPL,BTC-USD")).body)
    assert snap["type"] == "snapshot" and snap["reset"] is False
    assert snap["quotes"]["sym"] == ["AAPL", "BTC-USD"]
    for column in ("price", "bid", "ask", "ts", "open", "high", "low", "volume"):
        assert len(snap["quotes"][column]) == 2
    assert snap["quotes"]["low"][0] <= snap["quotes"]["price"][0] <= snap["quotes"]["high"][0]
    bars = orjson.loads((await get(server, "/api/bars?symbol=AAPL&interval=1s&limit=5")).body)
    assert bars["symbol"] == "AAPL" and bars["interval"] == "1s"
    assert 1 <= len(bars["t"]) <= 5
    assert bars["t"] == sorted(bars["t"])
    assert all(len(bars[k]) == len(bars["t"]) for k in "ohlcv")
    assert bars["h"][-1] >= max(bars["o"][-1], bars["c"][-1])
    minute = orjson.loads((await get(server, "/api/bars?symbol=MSFT&interval=1m")).body)
    assert minute["t"][-1] % 60 == 0


@pytest.mark.gen_test(timeout=20)
@pytest.mark.parametrize("path, code", [
    ("/api/snapshot?symbols=NOPE", "unknown_symbol"),
    ("/api/bars", "bad_request"),
    ("/api/bars?symbol=NOPE", "unknown_symbol"),
    ("/api/bars?symbol=AAPL&interval=5m", "bad_request"),
    ("/api/bars?symbol=AAPL&limit=0", "bad_request"),
    ("/api/bars?symbol=AAPL&limit=many", "bad_request"),
])
async def test_bad_api_requests_get_400_with_a_json_error(start_server, path, code):
    server = await start_server(symbols=("AAPL", "MSFT"))
    response = await get(server, path)
    assert response.code == 400
    body = orjson.loads(response.body)
    assert body["type"] == "error" and body["code"] == code and body["message"]


@pytest.mark.gen_test(timeout=20)
async def test_metrics_count_connections_frames_bytes_ticks_and_batches(start_server):
    server = await start_server()
    before = (await get(server, "/metrics")).body.decode()
    ws = await WSClient.connect(server, encoding="br")
    for _ in range(20):
        await ws.recv()
    await ws.conn.write_message("nonsense")
    await ws.recv_type("error")
    after = (await get(server, "/metrics")).body.decode()
    assert metric(after, "dashboard_connections", transport="ws") == 1
    assert metric(after, "dashboard_frames_sent_total", transport="ws") >= 21
    assert metric(after, "dashboard_bytes_sent_total", transport="ws") > 0
    assert metric(after, "dashboard_ticks_in_total") > metric(before, "dashboard_ticks_in_total")
    batches = metric(after, "dashboard_batches_total") - metric(before, "dashboard_batches_total")
    assert batches >= 19
    assert metric(after, "dashboard_client_errors_total", code="bad_request") == 1
    ws.close()
