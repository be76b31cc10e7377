"""Auth on a real server: tokens on every transport and the API, refusals, logs, metrics."""

from __future__ import annotations

import base64
import json
import logging
import time

import orjson
import pytest
import tornado.httpclient
import tornado.websocket

from dashboard.core import auth
from dashboard.transports import http_api
from tests.clients import StreamClient, WSClient, http_url, metric, ws_url

SECRET = b"test-secret-" + b"x" * 32
SYMBOLS = ("AAPL", "MSFT", "NVDA", "TSLA")


def token(ttl_s: float = 60, secret: bytes = SECRET, now: float | None = None,
          symbols: list[str] | None = None) -> str:
    return auth.mint(secret, ttl_s, now=time.time() if now is None else now, symbols=symbols)


def tampered() -> str:
    """A token for AAPL whose payload was changed to ask for every symbol."""
    header, _, signature = token(symbols=["AAPL"]).split(".")
    claims = json.dumps({"exp": int(time.time()) + 60}).encode()
    return f"{header}.{base64.urlsafe_b64encode(claims).rstrip(b'=').decode()}.{signature}"


#: What each bad token is refused as.
BAD_TOKENS = {
    "missing": lambda: None,
    "expired": lambda: token(now=time.time() - 3600),
    "tampered": tampered,
    "wrong secret": lambda: token(secret=b"another-secret-" + b"y" * 32),
}
REASONS = {"missing": "missing", "expired": "expired", "tampered": "invalid",
           "wrong secret": "invalid"}


async def start(start_server):
    return await start_server(auth_token_secret=SECRET, symbols=SYMBOLS)


def with_token(query: str, tok: str | None) -> str:
    return "&".join(p for p in (query, f"token={tok}" if tok else "") if p)


async def fetch(server, path: str, **headers: str) -> tornado.httpclient.HTTPResponse:
    return await tornado.httpclient.AsyncHTTPClient().fetch(
        http_url(server, path), headers=headers, raise_error=False)


async def ws_connect(server, query: str = "", **headers: str) -> WSClient:
    conn = await tornado.websocket.websocket_connect(
        tornado.httpclient.HTTPRequest(ws_url(server, query), headers=headers))
    return WSClient(conn, "json")


def assert_no_secret(*texts: str | bytes | None) -> None:
    for text in texts:
        raw = text.encode() if isinstance(text, str) else text or b""
        assert SECRET not in raw and b"x" * 16 not in raw


# -- WebSocket ------------------------------------------------------------------------------


@pytest.mark.gen_test(timeout=20)
@pytest.mark.parametrize("bad", BAD_TOKENS)
async def test_a_websocket_without_a_valid_token_is_closed_with_1008_and_why(start_server, bad):
    server = await start(start_server)
    ws = await ws_connect(server, with_token("", BAD_TOKENS[bad]()))
    assert await ws.conn.read_message() is None  # not one message before the close
    reason = REASONS[bad]
    assert (ws.conn.close_code, ws.conn.close_reason) == (1008, f"unauthorized: {reason} token")
    assert_no_secret(ws.conn.close_reason)
    text = (await fetch(server, "/metrics")).body.decode()
    assert metric(text, "dashboard_auth_rejections_total", reason=reason) == 1


@pytest.mark.gen_test(timeout=20)
async def test_a_websocket_asking_for_a_symbol_its_token_does_not_allow_is_closed_1008(
        start_server):
    server = await start(start_server)
    ws = await ws_connect(server, with_token("symbols=AAPL,MSFT", token(symbols=["AAPL"])))
    assert await ws.conn.read_message() is None
    assert ws.conn.close_code == 1008
    assert ws.conn.close_reason == "forbidden: symbol not allowed: 'MSFT'"


@pytest.mark.gen_test(timeout=20)
async def test_a_long_close_reason_is_cut_to_fit_a_control_frame(start_server):
    names = tuple(f"{c * 30}.{i}" for i, c in enumerate("ABCDEF"))
    server = await start_server(auth_token_secret=SECRET, symbols=names)
    ws = await ws_connect(server, with_token(f"symbols={','.join(names)}", token(symbols=[])))
    assert await ws.conn.read_message() is None
    assert ws.conn.close_code == 1008
    reason = ws.conn.close_reason or ""
    assert reason.startswith("forbidden: symbol not allowed: 'AAAA")
    assert len(reason.encode()) == 123


@pytest.mark.gen_test(timeout=20)
async def test_a_bad_origin_and_a_tokens_bad_query_are_refused_before_the_upgrade(start_server):
    server = await start(start_server)
    for query, headers, status in (("", {"Origin": "https://evil.example"}, 403),
                                   (with_token("encoding=zip", token()), {}, 400),
                                   (with_token("symbols=NOPE", token()), {}, 400)):
        with pytest.raises(tornado.httpclient.HTTPClientError) as e:
            await ws_connect(server, query, **headers)
        assert e.value.code == status


@pytest.mark.gen_test(timeout=20)
@pytest.mark.parametrize("query", ["symbols=NOPE", "encoding=zip", "since=x", "max_hz=-1"])
async def test_without_a_valid_token_the_query_is_never_judged(start_server, query):
    """A stranger learns nothing from a 400, such as which symbols exist: /ws upgrades and
    closes with 1008 as for a good query, and HTTP is a 401."""
    server = await start(start_server)
    ws = await ws_connect(server, query)
    assert await ws.conn.read_message() is None
    assert (ws.conn.close_code, ws.conn.close_reason) == (1008, "unauthorized: missing token")
    for path in ("/sse", "/stream", "/api/snapshot"):
        response = await fetch(server, f"{path}?{query}")
        assert response.code == 401, (path, response.body)
    for path in ("/api/bars?symbol=NOPE", "/ws?symbols=NOPE"):  # /ws without an upgrade
        assert (await fetch(server, path)).code == 401, path
        assert (await fetch(server, path, Authorization=f"Bearer {token()}")).code == 400


@pytest.mark.gen_test(timeout=20)
@pytest.mark.parametrize("where", ["query", "header"])
async def test_a_good_token_in_the_query_or_a_bearer_header_streams(start_server, where):
    server = await start(start_server)
    tok = token()
    ws = await (ws_connect(server, with_token("", tok)) if where == "query"
                else ws_connect(server, Authorization=f"Bearer {tok}"))
    snapshot = await ws.recv()
    assert snapshot["type"] == "snapshot"
    assert (await ws.recv())["type"] == "batch"
    ws.close()


@pytest.mark.gen_test(timeout=20)
async def test_the_bearer_header_wins_over_the_query(start_server):
    server = await start(start_server)
    ws = await ws_connect(server, with_token("", token()), Authorization="Bearer nonsense")
    assert await ws.conn.read_message() is None
    assert ws.conn.close_reason == "unauthorized: invalid token"


@pytest.mark.gen_test(timeout=20)
async def test_a_token_with_symbols_and_no_symbols_query_subscribes_to_the_tokens(start_server):
    server = await start(start_server)
    ws = await ws_connect(server, with_token("", token(symbols=["MSFT", "NVDA", "OTHER"])))
    seen = set((await ws.recv_type("snapshot"))["quotes"]["sym"])
    for _ in range(40):
        seen.update((await ws.recv_type("batch"))["ticks"]["sym"])
    assert seen == {"MSFT", "NVDA"}
    ws.close()


@pytest.mark.gen_test(timeout=20)
async def test_subscribing_to_a_symbol_the_token_does_not_allow_is_an_error_and_goes_on(
        start_server):
    server = await start(start_server)
    ws = await ws_connect(server, with_token("symbols=AAPL", token(symbols=["AAPL", "MSFT"])))
    other = await ws_connect(server, with_token("", token()))
    await ws.recv_type("snapshot")
    await ws.send({"op": "subscribe", "symbols": ["NVDA"]})
    error = await ws.recv_type("error")
    assert error == {"type": "error", "code": "forbidden",
                     "message": "symbol not allowed: 'NVDA'"}
    await ws.send({"op": "subscribe", "symbols": ["MSFT"]})  # the connection goes on
    seen: set[str] = set()
    while "MSFT" not in seen:
        msg = await ws.recv()
        seen.update(msg.get("ticks", msg.get("quotes", {})).get("sym", []))
    assert seen <= {"AAPL", "MSFT"}
    assert (await other.recv_type("batch"))["ticks"]["sym"]  # others never noticed
    text = (await fetch(server, "/metrics")).body.decode()
    assert metric(text, "dashboard_auth_rejections_total", reason="forbidden") == 1
    ws.close()
    other.close()


# -- SSE, /stream and the API ---------------------------------------------------------------


def assert_refusal(response: tornado.httpclient.HTTPResponse, status: int, code: str,
                   challenge: str) -> dict[str, str]:
    assert response.code == status
    body = orjson.loads(response.body)
    assert body["type"] == "error" and body["code"] == code
    assert response.headers["WWW-Authenticate"] == challenge
    assert_no_secret(response.body, str(response.headers))
    return body


@pytest.mark.gen_test(timeout=30)
@pytest.mark.parametrize("path", ["/sse", "/stream", "/api/snapshot", "/api/symbols",
                                  "/api/bars?symbol=AAPL"])
async def test_http_without_a_valid_token_is_401_with_a_bearer_challenge(start_server, path):
    server = await start(start_server)
    sep = "&" if "?" in path else "?"
    for bad, make in BAD_TOKENS.items():
        tok = make()
        response = await fetch(server, path + (f"{sep}token={tok}" if tok else ""))
        reason = REASONS[bad]
        challenge = "Bearer" if reason == "missing" else (
            f'Bearer error="invalid_token", error_description="{reason} token"')
        body = assert_refusal(response, 401, "unauthorized", challenge)
        assert body["message"] == f"{reason} token"


@pytest.mark.gen_test(timeout=20)
async def test_a_query_token_that_is_not_utf8_is_invalid_and_never_logged(start_server, caplog):
    """Tornado's reading of it made a 400 even beside a good bearer header, and logged the
    token's first 40 bytes."""
    server = await start(start_server)
    tok = token()
    caplog.set_level(logging.DEBUG)
    response = await fetch(server, f"/api/symbols?token={tok}%FF")
    assert_refusal(response, 401, "unauthorized",
                   'Bearer error="invalid_token", error_description="invalid token"')
    beside = await fetch(server, "/api/symbols?token=%80", Authorization=f"Bearer {tok}")
    assert beside.code == 200
    assert tok[:20] not in caplog.text and "Invalid unicode" not in caplog.text


@pytest.mark.gen_test(timeout=20)
@pytest.mark.parametrize("path", ["/sse?symbols=MSFT", "/stream?symbols=AAPL,MSFT",
                                  "/api/snapshot?symbols=MSFT", "/api/bars?symbol=MSFT"])
async def test_http_asking_for_a_symbol_the_token_does_not_allow_is_403(start_server, path):
    server = await start(start_server)
    response = await fetch(server, path, Authorization=f"Bearer {token(symbols=['AAPL'])}")
    body = assert_refusal(response, 403, "forbidden", 'Bearer error="insufficient_scope"')
    assert body["message"] == "symbol not allowed: 'MSFT'"


@pytest.mark.gen_test(timeout=20)
async def test_sse_and_stream_with_a_good_token_stream_the_tokens_symbols(start_server):
    server = await start(start_server)
    tok = token(symbols=["NVDA"])
    sse = StreamClient()
    await sse.open(http_url(server, f"/sse?token={tok}"), "sse")
    _, event, data = await sse.recv_event()
    assert event == "snapshot" and set(data["quotes"]["sym"]) <= {"NVDA"}
    stream = StreamClient(headers={"Authorization": f"Bearer {tok}"})
    await stream.open(http_url(server, "/stream"), "ndjson")
    assert (await stream.recv())["type"] == "snapshot"
    batch = await stream.recv()
    assert batch["type"] == "batch" and set(batch["ticks"]["sym"]) <= {"NVDA"}


@pytest.mark.gen_test(timeout=20)
async def test_the_api_answers_within_the_tokens_symbols(start_server):
    server = await start(start_server)
    bearer = {"Authorization": f"Bearer {token(symbols=['MSFT', 'AAPL'])}"}
    ws = await ws_connect(server, with_token("", token()))
    for _ in range(20):  # every symbol has ticked
        await ws.recv()
    ws.close()
    symbols = orjson.loads((await fetch(server, "/api/symbols", **bearer)).body)
    assert symbols == {"symbols": ["AAPL", "MSFT"]}
    snapshot = orjson.loads((await fetch(server, "/api/snapshot", **bearer)).body)
    assert snapshot["quotes"]["sym"] == ["AAPL", "MSFT"]
    bars = await fetch(server, "/api/bars?symbol=MSFT", **bearer)
    assert bars.code == 200 and orjson.loads(bars.body)["symbol"] == "MSFT"


@pytest.mark.gen_test(timeout=20)
@pytest.mark.parametrize("path", ["/", "/app.js", "/healthz", "/metrics"])
async def test_the_page_and_the_operators_probes_need_no_token(start_server, path):
    server = await start(start_server)
    response = await fetch(server, path)
    assert response.code == 200
    assert_no_secret(response.body)


@pytest.mark.gen_test(timeout=20)
async def test_with_auth_off_no_token_is_needed(start_server):
    server = await start_server(symbols=SYMBOLS)
    assert (await fetch(server, "/api/symbols")).code == 200
    ws = await ws_connect(server)
    assert (await ws.recv())["type"] == "snapshot"
    ws.close()


# -- logs -----------------------------------------------------------------------------------


@pytest.mark.gen_test(timeout=20)
async def test_tokens_are_redacted_from_the_access_log(start_server, caplog):
    server = await start(start_server)
    tok = token()
    caplog.set_level(logging.INFO, logger="tornado.access")
    for path in (f"/?token={tok}", f"/api/symbols?token={tok}&x=1",
                 f"/api/snapshot?%74oken={tok}", "/api/symbols?token=expired.not.valid"):
        await fetch(server, path)
    ws = await ws_connect(server, with_token("symbols=AAPL", tok))
    await ws.recv()
    ws.close()
    lines = [r.getMessage() for r in caplog.records if r.name == "tornado.access"]
    assert len(lines) == 5, lines
    assert all("[redacted]" in line for line in lines), lines
    assert tok not in caplog.text and "expired.not.valid" not in caplog.text
    assert "GET /api/symbols?token=[redacted]&x=1 (127.0.0.1)" in caplog.text


@pytest.mark.gen_test(timeout=20)
async def test_an_uncaught_exception_logs_no_token(start_server, caplog, monkeypatch):
    def broken(self) -> None:
        raise RuntimeError("boom")

    monkeypatch.setattr(http_api.SymbolsHandler, "get", broken)
    server = await start(start_server)
    tok = token()
    response = await fetch(server, f"/api/symbols?token={tok}")
    assert response.code == 500
    assert "Uncaught exception GET /api/symbols?token=[redacted]" in caplog.text
    assert "RuntimeError: boom" in caplog.text and tok not in caplog.text
