"""The dashboard page in a real headless Chromium (Debian's, driven by Playwright)."""

from __future__ import annotations

import dataclasses
import importlib.util
import itertools
import os
import re
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from dashboard.core import auth
from feeds.base import FeedState
from feeds.simulator import SimulatorFeed
from tests.conftest import TEST_CONFIG, require
from tests.threaded import ServerThread

CHROMIUM = "/usr/bin/chromium"
ARTIFACTS = Path(os.environ.get("DASHBOARD_TEST_ARTIFACTS", "test-artifacts"))
CONFIG = dataclasses.replace(TEST_CONFIG, batch_ms=50.0, symbols=30, tick_rate=1500.0)
HOSTILE = "<img src=x onerror=alert(1)>"


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    require(shutil.which(CHROMIUM) is not None, "Debian's chromium (/usr/bin/chromium)")
    require(importlib.util.find_spec("playwright") is not None, "Playwright's Python package")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=[
            "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
            "--disable-background-networking", "--disable-component-update", "--disable-sync",
        ])
        yield browser
        browser.close()


class Page:
    """A page with its console errors and alerts collected."""

    def __init__(self, browser, url: str) -> None:
        self.page = browser.new_page(viewport={"width": 1400, "height": 800})
        self.errors: list[str] = []
        self.dialogs: list[str] = []
        self.page.on("console", lambda m: m.type == "error" and self.errors.append(m.text))
        self.page.on("pageerror", lambda e: self.errors.append(str(e)))
        self.page.on("dialog", lambda d: (self.dialogs.append(d.message), d.dismiss()))
        self.page.goto(url)

    def view(self) -> dict:
        return self.page.evaluate(
            "() => { const v = window.__dashboard.view; return {state: v.state, "
            "transport: v.transport, encoding: v.encoding, seq: v.lastSeq, gaps: v.gaps, "
            "duplicates: v.duplicates, applied: v.applied, resets: v.resets, "
            "attempt: v.attempt}; }"
        )

    def wait_state(self, state: str, timeout_ms: float = 15000) -> None:
        self.page.wait_for_selector(f'#status[data-state="{state}"]', timeout=timeout_ms)

    def wait_applied(self, more_than: int, timeout_ms: float = 15000) -> None:
        self.page.wait_for_function(
            f"() => window.__dashboard.view.applied > {more_than}", timeout=timeout_ms
        )

    def close(self) -> None:
        self.page.close()


@pytest.fixture
def server() -> Iterator[ServerThread]:
    s = ServerThread(CONFIG).start()
    yield s
    s.close()


def test_the_page_goes_live_over_websocket_and_draws_watchlist_and_chart(browser, server):
    page = Page(browser, server.url)
    page.wait_state("live")
    page.wait_applied(20)
    view = page.view()
    assert view["transport"] == "ws" and view["encoding"] in ("br", "deflate")
    transport = page.page.inner_text("#transport")
    assert transport == f"ws · {view['encoding']}"
    rows = page.page.locator("#watchlist tbody tr")
    assert rows.count() == 30
    aapl = page.page.locator('#watchlist tr[data-sym="AAPL"] td')
    first = aapl.nth(1).inner_text()
    page.page.wait_for_function(
        "(p) => document.querySelector('#watchlist tr[data-sym=\"AAPL\"]').cells[1]"
        ".textContent !== p", arg=first, timeout=15000,
    )
    assert re.fullmatch(r"\d+\.\d{2}", aapl.nth(4).inner_text())  # bid
    assert page.page.locator("#chart canvas").count() > 0
    # The chart's newest bar moves with the ticks of the selected symbol.
    bar = page.page.evaluate("() => window.__dashboard.chart.lastBar()")
    assert bar is not None and bar["low"] <= bar["close"] <= bar["high"]
    page.page.wait_for_function(
        "(b) => { const n = window.__dashboard.chart.lastBar(); return n.time > b.time "
        "|| n.volume > b.volume; }", arg=bar, timeout=15000,
    )
    status = page.page.inner_text("#statusbar")
    assert "msg/s" in status and "ticks/s" in status and "p50" in status
    assert view["gaps"] == 0 and view["duplicates"] == 0
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.page.screenshot(path=str(ARTIFACTS / "dashboard.png"))
    assert page.errors == []
    page.close()


def test_filter_select_and_interval(browser, server):
    page = Page(browser, server.url)
    page.wait_state("live")
    page.wait_applied(5)
    page.page.fill("#filter", "ms")
    visible = page.page.locator("#watchlist tbody tr:visible")
    page.page.wait_for_function(
        "() => [...document.querySelectorAll('#watchlist tbody tr')]"
        ".filter(r => !r.hidden).length === 1"
    )
    assert visible.first.get_attribute("data-sym") == "MSFT"
    visible.first.click()
    page.page.wait_for_function("() => document.querySelector('#chart-symbol').textContent "
                                "=== 'MSFT'")
    assert visible.first.get_attribute("aria-selected") == "true"
    with page.page.expect_response(lambda r: "interval=1m" in r.url and r.status == 200):
        page.page.click('#intervals button[data-interval="1m"]')
    assert page.page.get_attribute('#intervals button[data-interval="1m"]',
                                   "aria-pressed") == "true"
    assert page.errors == []
    page.close()


@pytest.mark.parametrize("transport", ["sse", "stream"])
def test_sse_and_http_streaming_transports(browser, server, transport):
    page = Page(browser, server.url + f"?transport={transport}")
    page.wait_state("live")
    page.wait_applied(20)
    view = page.view()
    assert view["transport"] == transport and view["encoding"] == "json"
    assert view["gaps"] == 0 and view["duplicates"] == 0
    assert page.errors == []
    page.close()


@pytest.mark.parametrize("transport", ["ws", "sse"])
def test_a_server_restart_shows_reconnecting_then_live_and_resumes(browser, server, transport):
    page = Page(browser, server.url + f"?transport={transport}")
    page.wait_state("live")
    page.wait_applied(10)
    before = page.view()
    server.stop()
    page.page.wait_for_function(
        "() => /^reconnecting \\(attempt \\d+\\)$/.test("
        "document.querySelector('#status').textContent)", timeout=15000,
    )
    server.start()  # same port
    page.wait_state("live", timeout_ms=30000)
    page.wait_applied(before["applied"] + 10, timeout_ms=30000)
    after = page.view()
    assert after["transport"] == transport
    assert after["seq"] > before["seq"]
    # A restarted server cannot replay the old one's batches: the page reseeds from a
    # reset snapshot, shows nothing twice, and does not count the restart as a gap.
    assert after["resets"] >= 1
    assert after["duplicates"] == 0 and after["gaps"] == 0
    errors = [e for e in page.errors if "ERR_CONNECTION_REFUSED" not in e
              and "Failed to load resource" not in e and "WebSocket connection" not in e]
    assert errors == []
    page.close()


@pytest.mark.parametrize("transport", ["ws", "sse", "stream"])
def test_a_page_opened_with_a_token_streams_from_a_server_with_auth_on(browser, transport):
    secret = b"page-test-secret-" + b"p" * 32
    server = ServerThread(dataclasses.replace(CONFIG, auth_token_secret=secret)).start()
    token = auth.mint(secret, 60, now=time.time(), symbols=["AAPL", "MSFT"])
    try:
        page = Page(browser, server.url + f"?transport={transport}&token={token}")
        page.wait_state("live")
        page.wait_applied(10)
        assert page.view()["transport"] == transport
        assert page.page.locator("#watchlist tbody tr").count() == 2  # the token's symbols
        page.page.wait_for_function("() => window.__dashboard.chart.lastBar() !== null")
        assert page.errors == []  # /api/bars was let in too
        page.close()
    finally:
        server.close()


def test_a_hostile_symbol_name_is_shown_as_text(browser):
    def feed() -> SimulatorFeed:
        return SimulatorFeed.from_symbols(["AAPL", HOSTILE], 200.0, seed=1)

    server = ServerThread(CONFIG, feed=feed).start()
    try:
        page = Page(browser, server.url + f"?symbol={HOSTILE}")
        page.wait_state("live")
        page.wait_applied(5)
        page.page.wait_for_function("(s) => window.__dashboard.quotes.has(s)", arg=HOSTILE)
        cell = page.page.locator("#watchlist tbody tr td:first-child", has_text="onerror")
        assert cell.inner_text() == HOSTILE
        assert page.page.locator("#watchlist img, #chart-head img").count() == 0
        assert page.dialogs == []
        assert page.errors == []
        page.close()
    finally:
        server.close()


def test_the_status_bar_shows_a_feed_that_is_not_live(browser):
    quiet = ServerThread(dataclasses.replace(CONFIG, tick_rate=0.01)).start()
    try:
        page = Page(browser, quiet.url)
        page.wait_state("live")
        assert quiet.server is not None
        quiet.server.feed.health.state = FeedState.STALE  # as a watchdog would
        page.page.wait_for_selector('#feed[data-state="stale"]', state="visible",
                                    timeout=10000)
        assert page.page.inner_text("#feed") == "feed sim stale"
        page.close()
    finally:
        quiet.close()


def test_an_edge_cut_off_from_redis_shows_degraded_then_recovers_without_a_gap(
        browser, redis_server):
    # History outlasts the outage (the page polls /healthz every 5 s), so nothing is lost.
    held = dataclasses.replace(CONFIG, broker=redis_server.url, history_s=60.0)
    feed = ServerThread(dataclasses.replace(held, role="feed"))
    edge = ServerThread(dataclasses.replace(held, role="edge"))
    try:
        feed.start()
        edge.start()
        page = Page(browser, edge.url)
        page.wait_state("live")
        page.wait_applied(5)
        redis_server.stop()
        page.page.wait_for_selector('#feed[data-state="degraded"]', state="visible",
                                    timeout=15000)
        assert "broker degraded" in page.page.inner_text("#feed")
        redis_server.start()
        page.page.wait_for_selector("#feed", state="hidden", timeout=15000)
        applied = page.view()["applied"]
        page.wait_applied(applied + 20)
        view = page.view()
        assert view["gaps"] == 0 and view["resets"] == 0 and view["state"] == "live"
        # Chromium logs the degraded /healthz answer (503) itself; nothing else may fail.
        assert [e for e in page.errors if "status of 503" not in e] == []
        page.close()
    finally:
        edge.close()
        feed.close()


@pytest.mark.parametrize("transport", ["ws", "sse", "stream"])
def test_another_page_can_import_the_connection_module_and_resume(browser, server, transport):
    """As the README shows: connect() from /connection.js, messages in seq order, and a
    stop and a new connect that resumes from the last seq with exactly the missed batches."""
    page = Page(browser, server.url)
    page.wait_state("live")
    seqs = page.page.evaluate("""async (transport) => {
        const { connect } = await import("/connection.js");
        const take = (since, n) => new Promise((done) => {
            const got = [];
            const conn = connect({
                query: { symbols: "AAPL,MSFT" }, transport, since: () => since,
                onMessage: (msg) => {
                    got.push([msg.type, msg.first_seq ?? msg.seq, msg.seq]);
                    if (got.length === n) { conn.stop(); done(got); }
                },
            });
        });
        const first = await take(null, 5);
        await new Promise((r) => setTimeout(r, 300));
        return [first, await take(first[first.length - 1][2], 5)];
    }""", transport)
    first, resumed = seqs
    assert first[0][0] == "snapshot" and all(kind == "batch" for kind, _, _ in first[1:])
    assert all(b[1] == a[2] + 1 for a, b in itertools.pairwise(first))
    assert resumed[0][0] == "batch" and resumed[0][1] == first[-1][2] + 1  # resumed, no gap
    assert not page.errors
    page.close()


@pytest.mark.parametrize("coding", [None, "zstd", "deflate", "gzip", "br"])
def test_chromium_decodes_every_coding_through_eventsource_and_fetch(browser, server, coding):
    """None: Chromium's own Accept-Encoding (gzip, deflate, br, zstd), which gets zstd; the
    others are forced by overriding the header, and the server must answer in each."""
    context = browser.new_context(
        extra_http_headers={"Accept-Encoding": coding} if coding else {})
    try:
        for transport in ("sse", "stream"):
            page = context.new_page()
            codings: list[str | None] = []
            page.on("response", lambda r, t=transport, seen=codings: r.url.split("?")[0]
                    .endswith("/" + t) and seen.append(r.headers.get("content-encoding")))
            page.goto(server.url + f"?transport={transport}")
            page.wait_for_function("() => window.__dashboard.view.applied > 10", timeout=15000)
            view = page.evaluate("() => window.__dashboard.view")
            assert view["transport"] == transport and view["gaps"] == 0
            assert codings == [coding or "zstd"], codings
            page.close()
    finally:
        context.close()
