"""Do stalled clients hurt healthy ones? 500 healthy WebSocket clients alone, then 500
healthy next to 50 that stop reading, each against a fresh server (100 symbols, 2,000
ticks/s, 50 ms batches). Prints the healthy clients' latency p50/p99 (tick ts to receipt)
and delivered ticks/s for both runs, their ratios, and the server's RSS.

Target (issue 3): the stalled clients change the healthy p99 by less than 10% and the
server's RSS by less than 20 MB.

    python -m benchmarks.slow_clients [--healthy 500] [--stalled 50] [--duration-s 15]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import statistics
import time
from typing import Any

import numpy as np
import orjson

from benchmarks.server import ServerProcess
from dashboard.loadclient import OP_CLOSE, WebSocket

SERVER_ARGS = ("--symbols", "100", "--tick-rate", "2000", "--batch-ms", "50",
               "--max-connections", "0", "--max-connections-per-ip", "0")


async def _healthy(port: int, stop_at: float, measure_from: float, out: dict[str, Any]) -> None:
    ws = await WebSocket.connect("127.0.0.1", port, "/ws")
    lat: list[np.ndarray] = []
    ticks = gaps = 0
    last = None
    while time.time() < stop_at:
        opcode, payload = await ws.frame()
        if opcode == OP_CLOSE:
            out["closed"] = out.get("closed", 0) + 1
            break
        now = time.time() * 1000
        msg = orjson.loads(payload)
        if msg["type"] != "batch":
            last = msg.get("seq", last)
            continue
        first = msg.get("first_seq", msg["seq"])
        if last is not None and first > last + 1:
            gaps += 1
        last = msg["seq"]
        if now >= measure_from * 1000:
            ts = msg["ticks"]["ts"]
            ticks += len(ts)
            if ts:
                lat.append(now - np.asarray(ts))
    ws.close()
    out.setdefault("latencies", []).extend(lat)
    out["ticks"] = out.get("ticks", 0) + ticks
    out["gaps"] = out.get("gaps", 0) + gaps


async def _stalled(port: int, hold: list[WebSocket]) -> None:
    hold.append(await WebSocket.connect("127.0.0.1", port, "/ws", rcvbuf=4096))


def _worker(port: int, healthy: int, stalled: int, start_at: float, measure_from: float,
            stop_at: float, results: Any) -> None:
    async def run() -> dict[str, Any]:
        out: dict[str, Any] = {}
        hold: list[WebSocket] = []
        await asyncio.sleep(max(0.0, start_at - time.time()))
        tasks = [asyncio.ensure_future(_healthy(port, stop_at, measure_from, out))
                 for _ in range(healthy)]
        for _ in range(stalled):  # they connect and then never read
            await _stalled(port, hold)
        await asyncio.gather(*tasks)
        lat = np.concatenate(out.pop("latencies")) if out.get("latencies") else np.empty(0)
        return {**out, "lat": lat.tolist()}

    results.put(asyncio.run(run()))


def run_once(healthy: int, stalled: int, duration_s: float, processes: int) -> dict[str, Any]:
    server = ServerProcess(*SERVER_ARGS, cpu=0)
    try:
        ctx = multiprocessing.get_context("spawn")
        results = ctx.Queue()
        start_at = time.time() + 1.0
        measure_from = start_at + 3.0  # after everyone has connected
        stop_at = measure_from + duration_s
        workers = [
            ctx.Process(target=_worker, args=(
                server.port, healthy // processes + (i < healthy % processes),
                stalled // processes + (i < stalled % processes),
                start_at, measure_from, stop_at, results,
            ))
            for i in range(processes)
        ]
        for w in workers:
            w.start()
        cpu0 = server.cpu_seconds()
        outs = [results.get(timeout=duration_s + 60) for _ in workers]
        cpu = server.cpu_seconds() - cpu0
        rss = server.rss_bytes()
        for w in workers:
            w.join()
    finally:
        server.stop()
    lat = np.array([x for o in outs for x in o["lat"]])
    return {
        "healthy": healthy, "stalled": stalled,
        "p50_ms": float(np.percentile(lat, 50)), "p99_ms": float(np.percentile(lat, 99)),
        "ticks_per_s": sum(o["ticks"] for o in outs) / duration_s,
        "gaps": sum(o["gaps"] for o in outs),
        "closed": sum(o.get("closed", 0) for o in outs),
        "rss_mb": rss / 2**20, "server_cpu_s": cpu,
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--healthy", type=int, default=500)
    p.add_argument("--stalled", type=int, default=50)
    p.add_argument("--duration-s", type=float, default=15.0)
    p.add_argument("--processes", type=int, default=2)
    p.add_argument("--repeat", type=int, default=1, help="runs of each; medians reported")
    p.add_argument("--json", help="write the figures here")
    a = p.parse_args()
    runs: dict[str, list[dict[str, Any]]] = {"alone": [], "with_stalled": []}
    for _ in range(a.repeat):
        runs["alone"].append(run_once(a.healthy, 0, a.duration_s, a.processes))
        runs["with_stalled"].append(run_once(a.healthy, a.stalled, a.duration_s, a.processes))
    med = {k: {f: statistics.median(r[f] for r in v) for f in v[0]} for k, v in runs.items()}
    base, test = med["alone"], med["with_stalled"]
    print(f"{'run':<28}{'p50 ms':>9}{'p99 ms':>9}{'ticks/s':>11}{'gaps':>6}{'RSS MB':>9}"
          f"{'CPU s':>8}")
    for name, r in (("healthy alone", base), (f"healthy + {a.stalled} stalled", test)):
        print(f"{name:<28}{r['p50_ms']:>9.1f}{r['p99_ms']:>9.1f}{r['ticks_per_s']:>11.0f}"
              f"{r['gaps']:>6.0f}{r['rss_mb']:>9.1f}{r['server_cpu_s']:>8.2f}")
    print(f"ratio p99 {test['p99_ms'] / base['p99_ms']:.3f}, "
          f"ticks/s {test['ticks_per_s'] / base['ticks_per_s']:.3f}, "
          f"RSS +{test['rss_mb'] - base['rss_mb']:.1f} MB  "
          f"(target: p99 ratio < 1.10, RSS < +20 MB)")
    if a.json:
        with open(a.json, "w") as f:
            json.dump({"runs": runs, "median": med}, f, indent=2)


if __name__ == "__main__":
    main()
