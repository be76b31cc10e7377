"""The page's connection in Chromium when the server goes away and when a proxy passes no
upgrades: back on WebSocket after a restart, live over SSE behind such a proxy."""

from __future__ import annotations

import dataclasses
import shutil
import time

from dashboard.core import auth
from tests import test_page
from tests.conftest import require
from tests.proxies import NGINX, nginx
from tests.test_page import CONFIG, Page
from tests.threaded import ServerThread

#: Debian's Chromium, as in tests/test_page.py.
browser = test_page.browser


def test_after_a_restart_the_page_is_back_on_websocket_resumed_with_since(browser):
    server = ServerThread(CONFIG).start()
    try:
        page = Page(browser, server.url)
        sockets: list[str] = []
        page.page.on("websocket", lambda ws: sockets.append(ws.url))
        page.wait_state("live")
        page.wait_applied(10)
        assert page.view()["transport"] == "ws"
        server.stop()
        page.wait_state("reconnecting")
        # Several connects fail while nothing listens: what used to switch it to SSE for good.
        page.page.wait_for_function("() => window.__dashboard.view.attempt >= 3",
                                    timeout=15000)
        server.start()
        page.page.wait_for_function(
            "() => window.__dashboard.view.state === 'live' && window.__dashboard.view.resets > 0",
            timeout=20000)
        view = page.view()
        assert view["transport"] == "ws", view  # not stuck on the SSE fallback
        assert "since=" in sockets[-1], sockets
        page.close()
    finally:
        server.close()


def test_behind_a_proxy_that_passes_no_upgrade_the_page_is_live_over_sse(browser):
    require(shutil.which(NGINX) is not None, "Debian's nginx")
    server = ServerThread(CONFIG).start()
    proxy = nginx(server.port, upgrades=False)
    try:
        page = Page(browser, f"http://127.0.0.1:{proxy.port}/")
        page.wait_state("live", timeout_ms=20000)
        page.wait_applied(20)
        view = page.view()
        assert view["transport"] == "sse" and view["gaps"] == 0, view
        page.close()
    finally:
        proxy.stop()
        server.close()



def test_a_listed_sites_page_fetches_with_a_token_after_its_preflight(browser):
    """Chromium's own CORS: a page on another origin that sends ``Authorization`` asks first
    (OPTIONS), and without the answer its fetch fails; with it, the page reads /api and
    /stream, and reads a 401 and its challenge too."""
    page_site = ServerThread(CONFIG).start()  # any page on another origin: its /healthz
    origin = f"http://127.0.0.1:{page_site.port}"
    secret = b"a-secret-for-a-cross-site-page-" + b"x" * 8
    api = ServerThread(dataclasses.replace(
        CONFIG, allowed_origins=(origin,), auth_token_secret=secret)).start()
    token = auth.mint(secret, 3600, now=time.time())
    try:
        page = browser.new_page()
        page.goto(origin + "/healthz")
        got = page.evaluate("""async ([base, token]) => {
            const headers = {Authorization: `Bearer ${token}`};
            const symbols = await (await fetch(base + '/api/symbols', {headers})).json();
            const stream = await fetch(base + '/stream?symbols=AAPL', {headers});
            const reader = stream.body.getReader();
            const first = new TextDecoder().decode((await reader.read()).value);
            reader.cancel();
            const refused = await fetch(base + '/api/symbols');
            return {symbols: symbols.symbols.length, first: JSON.parse(first.split('\\n')[0]).type,
                    refused: refused.status,
                    challenge: refused.headers.get('WWW-Authenticate')};
        }""", [api.url.rstrip("/"), token])
        assert got == {"symbols": CONFIG.symbols, "first": "snapshot", "refused": 401,
                       "challenge": "Bearer"}, got
        page.close()
    finally:
        api.close()
        page_site.close()
