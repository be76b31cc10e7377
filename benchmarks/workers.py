"""Delivered ticks/s from one edge process vs ``--workers 2`` on this machine.

Both setups run the same feed (100 symbols, 2,000 ticks/s, 50 ms batches) through a real
``redis-server`` (a fresh one per run) and are loaded by the bundled load test with the
same clients. (a) one feed process and one edge process; (b) ``--workers 2``: one feed
process and two edges sharing the port. Nothing is pinned: the point of workers is to use
every core, and the load generator needs cores too — so on a 2-core machine the figures
show where one edge tops out and how much of the second core a second edge turns into
delivered ticks, with the generator competing for the same cores.

    python -m benchmarks.workers --clients 3000 --duration-s 10 --repeat 3
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
from pathlib import Path
from typing import Any

from benchmarks.server import ServerProcess, loadtest
from tests.redis_server import BINARY, RedisServer

FEED = ("--symbols", "100", "--tick-rate", "2000", "--batch-ms", "50")
#: Every client comes from 127.0.0.1: lift the per-address cap (500 by default).
EDGE = ("--max-connections-per-ip", "0")


def cpu_seconds(root: int) -> float:
    """CPU time of ``root`` and every process under it (the workers)."""
    parents: dict[int, int] = {}
    cpu: dict[int, float] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            fields = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        parents[int(entry)] = int(fields[1])
        cpu[int(entry)] = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    tree, grew = {root}, True
    while grew:
        more = {pid for pid, ppid in parents.items() if ppid in tree} - tree
        tree |= more
        grew = bool(more)
    return sum(cpu.get(pid, 0.0) for pid in tree)


def run_once(setup: str, clients: int, duration_s: float, processes: int) -> dict[str, Any]:
    redis = RedisServer()
    redis.start()
    broker = ("--broker", redis.url)
    servers = []
    try:
        if setup == "1 edge":
            servers.append(ServerProcess(*broker, "--role", "feed", *FEED))
            servers.append(ServerProcess(*broker, "--role", "edge", *EDGE))
        else:
            servers.append(ServerProcess(*broker, "--workers", "2", *FEED, *EDGE))
        before = sum(cpu_seconds(s.pid) for s in servers)
        report = loadtest(servers[-1].port, "--clients", str(clients), "--ramp-s", "3",
                          "--duration-s", str(duration_s), "--processes", str(processes))
        cpu = sum(cpu_seconds(s.pid) for s in servers) - before
    finally:
        for server in servers:
            server.stop()
        redis.stop()
    return {
        "setup": setup, "clients": clients, "connected": report["clients"]["connected"],
        "closed": sum(report["clients"]["closed"].values()),
        "ticks_per_s": report["ticks_per_s"], "server_cpu_s": cpu,
        "p50_ms": report["latency_ms"]["p50"], "p99_ms": report["latency_ms"]["p99"],
        "gaps": report["gaps_total"],
        "generator_saturated_s": len(report["load_generator_saturated_at"]),
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--clients", type=int, default=3000)
    p.add_argument("--duration-s", type=float, default=10.0)
    p.add_argument("--processes", type=int, default=2, help="load-test client processes")
    p.add_argument("--repeat", type=int, default=1, help="runs of each; medians reported")
    p.add_argument("--json", help="write the figures here")
    args = p.parse_args()
    if BINARY is None:
        raise SystemExit("benchmarks.workers: needs redis-server (apt-get install redis-server)")
    runs = [run_once(setup, args.clients, args.duration_s, args.processes)
            for _ in range(args.repeat) for setup in ("1 edge", "2 workers")]
    rows = {}
    for setup in ("1 edge", "2 workers"):
        mine = [r for r in runs if r["setup"] == setup]
        rows[setup] = {k: statistics.median(r[k] for r in mine)
                       for k in mine[0] if k != "setup"}
    print(f"{'setup':10} {'clients':>7} {'closed':>6} {'ticks/s':>12} {'cpu s':>7} "
          f"{'p50 ms':>7} {'p99 ms':>7} {'gaps':>5} {'gen sat s':>9}")
    for setup, r in rows.items():
        print(f"{setup:10} {r['connected']:7.0f} {r['closed']:6.0f} {r['ticks_per_s']:12,.0f} "
              f"{r['server_cpu_s']:7.1f} {r['p50_ms']:7.0f} {r['p99_ms']:7.0f} "
              f"{r['gaps']:5.0f} {r['generator_saturated_s']:9.0f}")
    ratio = rows["2 workers"]["ticks_per_s"] / rows["1 edge"]["ticks_per_s"]
    print(f"2 workers / 1 edge delivered ticks/s: {ratio:.2f}x (median of {args.repeat})")
    if args.json:
        Path(args.json).write_text(json.dumps({"runs": runs, "medians": rows,
                                               "ratio": ratio}, indent=2))


if __name__ == "__main__":
    main()
