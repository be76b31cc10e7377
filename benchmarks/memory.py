"""Does memory follow ``--history-s``? The server's RSS over ``--duration-s`` (60) for a
100-symbol feed at 10,000 and 50,000 ticks/s with 50 ms batches, a history of 2 s and of
60 s, one healthy WebSocket client, and 0 or 100 clients that stall (connect with a 4 KiB
receive buffer and never read; the slow-client timeout is lifted so they stay all run).

Printed per run: the idle RSS (started, no client), the steady RSS above it (median of the
last third of the samples), the history's own bytes (ticks held times 44 bytes of columns) and
their ratio, and what the stalled clients add. A run with no history comes first at each rate:
what a served client costs whatever the window (measured, not broken down); the last column
is the ratio above that.

Targets (issue 16): steady state within about twice the history's own bytes above the idle
baseline; 100 stalled clients add less than 20 MB.

    python -m benchmarks.memory [--duration-s 60]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from typing import Any

from benchmarks.server import ServerProcess
from dashboard.loadtest.loadclient import WebSocket

TICK_BYTES = 4 + 5 * 8  # sym int32, price size bid ask ts float64
SAMPLE_S = 5.0


async def clients(port: int, stalled: int, duration_s: float, server: ServerProcess,
                  ) -> list[float]:
    healthy = await WebSocket.connect("127.0.0.1", port, "/ws")

    async def read() -> None:
        while True:
            await healthy.frame()

    reading = asyncio.create_task(read())
    stuck = [await WebSocket.connect("127.0.0.1", port, "/ws", rcvbuf=4096)
             for _ in range(stalled)]
    samples = []
    deadline = time.monotonic() + duration_s
    while time.monotonic() < deadline:
        await asyncio.sleep(SAMPLE_S)
        samples.append(server.rss_bytes() / 2**20)
    reading.cancel()
    for ws in (healthy, *stuck):
        ws.close()
    return samples


def run(tick_rate: float, history_s: float, stalled: int, duration_s: float) -> dict[str, Any]:
    server = ServerProcess(
        "--symbols", "100", "--tick-rate", f"{tick_rate:g}", "--batch-ms", "50",
        "--history-s", f"{history_s:g}", "--max-connections-per-ip", "0",
        "--slow-client-timeout", "3600", cpu=0)
    try:
        time.sleep(1.0)
        idle = server.rss_bytes() / 2**20
        samples = asyncio.run(clients(server.port, stalled, duration_s, server))
    finally:
        server.stop()
    steady = statistics.median(samples[-max(1, len(samples) // 3):]) - idle
    history = tick_rate * history_s * TICK_BYTES / 2**20
    return {"rate": tick_rate, "history_s": history_s, "stalled": stalled, "idle": idle,
            "steady": steady, "history": history, "samples": samples}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--duration-s", type=float, default=60.0)
    a = p.parse_args()
    print(f"{'ticks/s':>8}{'hist s':>7}{'stalled':>8}{'idle MB':>9}{'steady+MB':>10}"
          f"{'hist MB':>8}{'ratio':>7}{'stalled+MB':>11}{'ratio-fixed':>12}"
          f"  RSS every {SAMPLE_S:g} s")
    for rate in (10_000.0, 50_000.0):
        fixed = run(rate, 0.0, 0, a.duration_s)["steady"]
        print(f"{rate:>8.0f}{0:>7}{0:>8}{'':>9}{fixed:>10.1f}  (fixed cost)", flush=True)
        for history_s in (2.0, 60.0):
            base = None
            for stalled in (0, 100):
                r = run(rate, history_s, stalled, a.duration_s)
                base = r["steady"] if base is None else base
                ratio = r["steady"] / r["history"]
                extra = f"{r['steady'] - base:.1f}" if stalled else "-"
                above = "-" if stalled else f"{(r['steady'] - fixed) / r['history']:.2f}"
                series = " ".join(f"{s:.0f}" for s in r["samples"])
                print(f"{rate:>8.0f}{history_s:>7.0f}{stalled:>8}{r['idle']:>9.1f}"
                      f"{r['steady']:>10.1f}{r['history']:>8.1f}{ratio:>7.2f}{extra:>11}"
                      f"{above:>12}  {series}", flush=True)


if __name__ == "__main__":
    main()
