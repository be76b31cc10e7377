"""The fan-out benchmark: delivered ticks per server CPU-second, latency, bytes and memory,
for this server and two baselines at the same feed and client counts, in one run.

Feed: 100 symbols, 2,000 ticks/s, 50 ms batches, the same ticks for every server: the
simulator seeded with ``SEED`` (the Node baseline replays its schedule from a file). The
server runs on core 0 and the load generator (``market-dashboard-loadtest``) on core 1
(``taskset``). Baselines:

- naive: a Tornado server sending each tick as its own JSON message to every client
  (``benchmarks/naive_server.py``);
- node: the same 50 ms batching done with Node's ``ws`` library, JSON encoded once per
  batch and brotli (quality 5, as a real-time server configures it) once per batch for
  ``encoding=br`` (``benchmarks/node_baseline``; run only when ``node`` and ``npm`` are
  installed); node-q11: the same at Node's default quality, 11, for br only.

Each configuration runs ``--repeat`` times (in rounds, so the machine's noise spreads over
every server), and the table shows medians, with our ratios to Node's at quality 5: ticks
per CPU-second (higher is better), p99 and bytes per tick (lower is better).

Server CPU and delivered ticks are counted over the whole load-test run, ramp included.
Also measured: RSS per idle connection with 10,000 open WebSockets.

    python -m benchmarks.fanout [--clients 100,1000,4000] [--duration-s 15] [--repeat 3]
        [--servers ours,node] [--encodings json,br] [--json FILE]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import orjson

from benchmarks.server import ServerProcess, loadtest
from dashboard.loadtest.loadclient import WebSocket
from feeds.simulator import SimulatorFeed

HERE = Path(__file__).resolve().parent
SYMBOLS, TICK_RATE, SEED = 100, 2000.0, 1
FEED = ["--symbols", str(SYMBOLS), "--tick-rate", f"{TICK_RATE:g}"]
OURS = [sys.executable, "-m", "dashboard", "--port", "0", "--log-level", "warning", *FEED,
        "--seed", str(SEED), "--batch-ms", "50", "--max-connections", "0",
        "--max-connections-per-ip", "0", "--max-bytes-per-s", "0"]
NAIVE = [sys.executable, "-m", "benchmarks.naive_server", "--port", "0", *FEED,
         "--seed", str(SEED)]


#: Each server the benchmark can run, and the encodings it is measured in.
SERVERS = {"ours": ("json", "br"), "naive": ("json",), "node": ("json", "br"),
           "node-q11": ("br",)}


def node_command(ticks_file: Path, brotli_quality: int) -> list[str]:
    return ["node", str(HERE / "node_baseline" / "server.js"), "--port", "0",
            "--ticks", str(ticks_file), "--batch-ms", "50",
            "--brotli-quality", str(brotli_quality)]


def write_schedule(path: Path, seconds: float) -> None:
    """The seeded simulator's first ``seconds`` of ticks, with each one's scheduled offset,
    for the Node baseline to replay: the ticks our server makes with ``--seed SEED``."""
    feed = SimulatorFeed.from_symbols(SYMBOLS, TICK_RATE, seed=SEED)
    offsets, ticks = feed.generate(int(seconds * TICK_RATE))
    path.write_bytes(orjson.dumps({
        "symbols": list(feed.symbols), "offset_ms": offsets * 1000.0, "sym": ticks.sym,
        "price": ticks.price, "size": ticks.size, "bid": ticks.bid, "ask": ticks.ask,
    }, option=orjson.OPT_SERIALIZE_NUMPY))


def node_available() -> bool:
    if not (shutil.which("node") and shutil.which("npm")):
        return False
    if not (HERE / "node_baseline" / "node_modules" / "ws").exists():
        subprocess.run(["npm", "install", "--silent", "--no-audit", "--no-fund"],
                       cwd=HERE / "node_baseline", check=True)
    return True


def ramp_s(clients: int) -> float:
    return max(1.0, clients / 1000)


def run_one(
    server_cmd: list[str], clients: int, encoding: str, duration_s: float,
    *load_args: str,
) -> dict[str, Any]:
    """One server, one load test of ``clients`` (``load_args``: more of its flags)."""
    server = ServerProcess(command=server_cmd, cpu=0)
    ramp = ramp_s(clients)
    try:
        cpu0 = server.cpu_seconds()
        report = loadtest(
            server.port, "--clients", str(clients), "--encoding", encoding,
            "--ramp-s", f"{ramp:g}", "--duration-s", f"{duration_s:g}",
            "--sample", f"{min(1.0, 20 / clients):g}", *load_args, cpu=1,
            timeout_s=duration_s + ramp + 120,
        )
        cpu = server.cpu_seconds() - cpu0
        rss = server.rss_bytes()
    finally:
        server.stop()
    ticks = report["ticks_total"]
    return {
        "clients": clients, "encoding": encoding,
        "ticks_per_s": report["ticks_per_s"], "server_cpu_s": cpu,
        "ticks_per_cpu_s": ticks / cpu if cpu else None,
        "bytes_per_tick": report["bytes_per_tick"],
        "p50_ms": report["latency_ms"]["p50"], "p99_ms": report["latency_ms"]["p99"],
        "gaps": report["gaps_total"], "conflated": report["conflated_ticks"],
        "rss_mb": rss / 2**20,
        "connected": report["clients"]["connected"], "codings": report["clients"]["codings"],
        "generator_saturated_s": len(report["load_generator_saturated_at"]),
    }


async def _idle(port: int, n: int) -> list[WebSocket]:
    conns = []
    for i in range(n):
        conns.append(await WebSocket.connect("127.0.0.1", port, "/ws?symbols=SPY"))
        if i % 500 == 499:
            await asyncio.sleep(0.05)
    return conns


def rss_per_idle_connection(n: int) -> dict[str, float]:
    """RSS added by ``n`` open WebSockets on a quiet feed (one tick a minute)."""
    server = ServerProcess("--symbols", "100", "--tick-rate", "0.016", "--max-connections", "0",
                           "--max-connections-per-ip", "0", cpu=0)
    try:
        time.sleep(1.0)
        before = server.rss_bytes()

        async def hold() -> int:
            conns = await _idle(server.port, n)
            await asyncio.sleep(2.0)
            after = server.rss_bytes()
            for c in conns:
                c.close()
            return after

        after = asyncio.run(hold())
    finally:
        server.stop()
    return {"connections": n, "rss_before_mb": before / 2**20, "rss_after_mb": after / 2**20,
            "bytes_per_connection": (after - before) / n}


def baseline(rows: list[dict[str, Any]], r: dict[str, Any], other: str) -> dict[str, Any] | None:
    """The ``other`` server's row at ``r``'s clients (and encoding; the naive baseline has
    only JSON)."""
    enc = "json" if other == "naive" else r["encoding"]
    match = [x for x in rows if x["server"] == other and x["clients"] == r["clients"]
             and x["encoding"] == enc]
    return match[0] if match and r["server"] == "ours" else None


def ratio(rows: list[dict[str, Any]], r: dict[str, Any], other: str, key: str) -> str:
    """Our ``key`` over the ``other`` server's, at the same clients and encoding."""
    base = baseline(rows, r, other)
    if base is None or not base[key] or r[key] is None:
        return "-"
    return f"{r[key] / base[key]:.2f}x"


def fmt(x: Any, spec: str) -> str:
    return "-" if x is None else format(x, spec)


def median_row(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Each figure's median over repeated runs of one configuration (gaps and ticks merged
    away: the most seen)."""
    row = dict(runs[0])
    for key in runs[0]:
        values = [r[key] for r in runs if isinstance(r[key], (int, float))]
        if key != "clients" and (values or row[key] is None):
            row[key] = statistics.median(values) if values else None
    row["gaps"] = max(r["gaps"] for r in runs)
    row["conflated"] = max(r["conflated"] for r in runs)
    row["runs"] = len(runs)
    return row


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--clients", default="100,1000,4000")
    p.add_argument("--duration-s", type=float, default=15.0)
    p.add_argument("--repeat", type=int, default=3, help="runs of each; figures are medians")
    p.add_argument("--servers", default=",".join(SERVERS),
                   help=f"which of {','.join(SERVERS)} to run")
    p.add_argument("--encodings", default="json,br")
    p.add_argument("--idle", type=int, default=10_000,
                   help="connections for the RSS figure (0: skip it)")
    p.add_argument("--json", type=Path)
    a = p.parse_args()
    if a.repeat < 1:
        p.error("--repeat: at least 1")
    counts = [int(c) for c in a.clients.split(",")]
    wanted = a.servers.split(",")
    if unknown := set(wanted) - set(SERVERS):
        p.error(f"--servers: unknown {', '.join(sorted(unknown))}")
    commands: dict[str, list[str]] = {"ours": OURS, "naive": NAIVE}
    if any(w.startswith("node") for w in wanted):
        if node_available():
            schedule = HERE / "node_baseline" / "ticks.json"
            # a run: the ramp, the measured seconds, and starting and stopping around them
            write_schedule(schedule, ramp_s(max(counts)) + a.duration_s + 60)
            for name, quality in (("node", 5), ("node-q11", 11)):
                commands[name] = node_command(schedule, quality)
        else:
            print("node or npm not installed: no Node baseline", file=sys.stderr)
    configs = [(name, clients, encoding)
               for clients in counts for name in wanted if name in commands
               for encoding in a.encodings.split(",") if encoding in SERVERS[name]]
    runs: dict[tuple[str, int, str], list[dict[str, Any]]] = {c: [] for c in configs}
    for attempt in range(a.repeat):  # rounds, so that noise spreads over every server
        for name, clients, encoding in configs:
            row = {"server": name, **run_one(commands[name], clients, encoding, a.duration_s)}
            runs[(name, clients, encoding)].append(row)
            print(f"  {attempt + 1}/{a.repeat} {name:<9}{clients:>6} {encoding:<5} "
                  f"{fmt(row['ticks_per_s'], '.0f')} ticks/s, "
                  f"{fmt(row['ticks_per_cpu_s'], '.0f')} ticks/CPU-s, "
                  f"p99 {fmt(row['p99_ms'], '.1f')} ms", flush=True)
    rows = [median_row(r) for r in runs.values()]
    print(f"\nmedians of {a.repeat}")
    head = (f"{'server':<10}{'clients':>8} {'enc':<5}{'ticks/s':>10}{'CPU s':>7}"
            f"{'ticks/CPU-s':>12}{'B/tick':>8}{'p50 ms':>8}{'p99 ms':>8}{'gaps':>6}"
            f"{'merged':>8}{'RSS MB':>8}{'CPU/node':>9}{'p99/node':>9}{'B/node':>8}{'CPU/q11':>9}"
            f"{'vs naive':>9}")
    print(head)
    for r in rows:
        print(f"{r['server']:<10}{r['clients']:>8} {r['encoding']:<5}"
              f"{fmt(r['ticks_per_s'], '.0f'):>10}{fmt(r['server_cpu_s'], '.1f'):>7}"
              f"{fmt(r['ticks_per_cpu_s'], '.0f'):>12}{fmt(r['bytes_per_tick'], '.1f'):>8}"
              f"{fmt(r['p50_ms'], '.1f'):>8}{fmt(r['p99_ms'], '.1f'):>8}{r['gaps']:>6}"
              f"{fmt(r['conflated'], '.0f'):>8}{fmt(r['rss_mb'], '.0f'):>8}"
              f"{ratio(rows, r, 'node', 'ticks_per_cpu_s'):>9}"
              f"{ratio(rows, r, 'node', 'p99_ms'):>9}"
              f"{ratio(rows, r, 'node', 'bytes_per_tick'):>8}"
              f"{ratio(rows, r, 'node-q11', 'ticks_per_cpu_s'):>9}"
              f"{ratio(rows, r, 'naive', 'ticks_per_cpu_s'):>9}")
    idle = rss_per_idle_connection(a.idle) if a.idle else None
    if idle:
        print(f"\nRSS per idle connection at {idle['connections']} WebSockets: "
              f"{idle['bytes_per_connection'] / 1024:.1f} KB "
              f"({idle['rss_before_mb']:.0f} MB -> {idle['rss_after_mb']:.0f} MB)")
    saturated = [r for rs in runs.values() for r in rs if r["generator_saturated_s"]]
    if saturated:
        print("load generator saturated in: " + ", ".join(
            f"{r['server']}/{r['clients']}/{r['encoding']}" for r in saturated))
    if a.json:
        a.json.write_text(json.dumps({"rows": rows, "runs": list(runs.values()),
                                      "idle": idle}, indent=1))


if __name__ == "__main__":
    main()
