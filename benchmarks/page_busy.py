"""How busy is the page's main thread at 200 symbols and 5,000 ticks/s?

Starts the server and opens the page in headless Chromium (Debian's), lets it run, and
prints the median share of each second the page's own code (message handling and drawing)
kept the main thread busy, with the tick-to-screen latency p50/p99 the page measured, for
each transport.

    python -m benchmarks.page_busy [--seconds 20]
"""

from __future__ import annotations

import argparse
import statistics
import time

from playwright.sync_api import sync_playwright

from benchmarks.server import ServerProcess

ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--seconds", type=float, default=20.0)
    p.add_argument("--symbols", default="200")
    p.add_argument("--tick-rate", default="5000")
    a = p.parse_args()
    server = ServerProcess("--symbols", a.symbols, "--tick-rate", a.tick_rate)
    try:
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path="/usr/bin/chromium", args=ARGS)
            print(f"{a.symbols} symbols, {a.tick_rate} ticks/s, {a.seconds:g} s per transport")
            print(f"{'transport':<22}{'busy median':>12}{'busy max':>10}{'p50 ms':>8}"
                  f"{'p99 ms':>8}{'ticks/s':>9}")
            for query in ("", "?transport=sse", "?transport=stream"):
                page = browser.new_page(viewport={"width": 1400, "height": 800})
                page.goto(f"http://127.0.0.1:{server.port}/{query}")
                page.wait_for_selector('#status[data-state="live"]', timeout=15000)
                time.sleep(3)  # warm up
                busy, p50, p99, ticks = [], [], [], []
                end = time.monotonic() + a.seconds
                while time.monotonic() < end:
                    time.sleep(1.0)
                    d = page.evaluate("() => ({b: window.__dashboard.busy, "
                                      "l: window.__dashboard.latency, "
                                      "t: document.getElementById('ticks-rate').textContent})")
                    busy.append(d["b"])
                    if d["l"] and d["l"]["p50"] is not None:
                        p50.append(d["l"]["p50"])
                        p99.append(d["l"]["p99"])
                    ticks.append(float(d["t"]))
                name = page.evaluate("() => { const v = window.__dashboard.view; "
                                     "return `${v.transport} ${v.encoding}`; }")
                print(f"{name:<22}{statistics.median(busy):>11.1%}{max(busy):>10.1%}"
                      f"{statistics.median(p50):>8.0f}{statistics.median(p99):>8.0f}"
                      f"{statistics.median(ticks):>9.0f}")
                page.close()
            browser.close()
    finally:
        server.stop()


if __name__ == "__main__":
    main()
