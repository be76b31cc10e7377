"""Do stalled clients hurt healthy ones? 500 healthy WebSocket clients alone, then 500
healthy next to 50 that stop reading, each against a fresh server (100 symbols, 2,000
ticks/s, 50 ms batches), both measured by the bundled load test. Prints the healthy
clients' latency p50/p99 (tick ts to receipt) and delivered ticks/s for both runs, their
ratios, and the server's RSS.

Target (issue 3): the stalled clients change the healthy p99 by less than 10% and the
server's RSS by less than 20 MB.

    python -m benchmarks.slow_clients [--healthy 500] [--stalled 50] [--duration-s 15]
"""

from __future__ import annotations

import argparse
import json
import statistics
from typing import Any

from benchmarks.server import ServerProcess, loadtest

SERVER_ARGS = ("--symbols", "100", "--tick-rate", "2000", "--batch-ms", "50",
               "--max-connections", "0", "--max-connections-per-ip", "0")


def run_once(healthy: int, stalled: int, duration_s: float, processes: int) -> dict[str, Any]:
    server = ServerProcess(*SERVER_ARGS, cpu=0)
    try:
        cpu0 = server.cpu_seconds()
        report = loadtest(
            server.port, "--clients", str(healthy), "--slow-fraction", f"{stalled / healthy:g}",
            "--ramp-s", "3", "--duration-s", f"{duration_s:g}", "--processes", str(processes),
            "--sample", "0.1", timeout_s=duration_s + 120,
        )
        cpu = server.cpu_seconds() - cpu0
        rss = server.rss_bytes()
    finally:
        server.stop()
    return {
        "healthy": healthy, "stalled": report["clients"]["slow"],
        "p50_ms": report["latency_ms"]["p50"], "p99_ms": report["latency_ms"]["p99"],
        "ticks_per_s": report["ticks_per_s"], "gaps": report["gaps_total"],
        "closed": sum(report["clients"]["closed"].values()),
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
