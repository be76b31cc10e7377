"""The load test's command line: plan the clients, run the worker processes, print progress
every second, and report."""

from __future__ import annotations

import argparse
import json
import multiprocessing
import random
import sys
import time
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from dashboard.argtypes import OneLineParser, number
from dashboard.loadtest.clients import BROWSER_ACCEPT_ENCODING, Target
from dashboard.loadtest.report import page, summarize, text
from dashboard.loadtest.stats import Interval, percentile
from dashboard.loadtest.worker import Plan
from dashboard.loadtest.worker import main as worker_main

PROG = "market-dashboard-loadtest"


def parser() -> argparse.ArgumentParser:
    p = OneLineParser(prog=PROG, description="Load-test a running market dashboard.")
    a = p.add_argument
    a("--url", default="http://127.0.0.1:8888", help="the dashboard (default %(default)s)")
    a("--clients", type=number(int, 1), default=100, help="healthy clients (default 100)")
    a("--transport", choices=("ws", "sse", "stream", "mix"), default="ws",
      help="ws, sse, stream (NDJSON over HTTP), or mix (ws and sse; default ws)")
    a("--encoding", choices=("json", "br", "deflate"), default="json",
      help="WebSocket encoding (default json)")
    a("--accept-encoding", default=BROWSER_ACCEPT_ENCODING, metavar="HEADER",
      help="what SSE and stream clients send as Accept-Encoding (default, as Chromium: "
           "%(default)s; identity for none)")
    a("--symbols", default="all",
      help="each client's subscription: all, A,B (names), random:K, or mix (default all)")
    a("--slow-fraction", type=number(float, 0, 1), default=0.0,
      help="extra clients, as a fraction of --clients, that connect and never read")
    a("--max-hz", type=number(float, 0, low_inclusive=False), default=None,
      help="max_hz asked by every client")
    a("--ramp-s", type=number(float, 0, 3600), default=2.0, help="seconds to connect everyone")
    a("--duration-s", type=number(float, 0, low_inclusive=False), default=10.0,
      help="seconds measured after the ramp")
    a("--processes", type=number(int, 1, 64), default=1, help="client processes (default 1)")
    a("--sample", type=number(float, 0, 1), default=0.1,
      help="fraction of clients that decode every message (default 0.1)")
    a("--json", type=Path, help="write the report as JSON here")
    a("--html", type=Path, help="write a self-contained HTML report here")
    a("--quiet", action="store_true", help="no progress line")
    return p


def target_of(url: str) -> Target:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "ws") or not parts.hostname:
        raise ValueError(f"--url must be http://HOST:PORT (plain, for now), got {url!r}")
    return Target(parts.hostname, parts.port or 80)


def subscriptions(spec: str, url: str, clients: int, seed: int = 1) -> tuple[str | None, ...]:
    """One subscription per client (cycled by the workers)."""
    if spec == "all":
        return (None,)
    if not spec.startswith(("random:", "mix")):
        return (spec,)
    with urllib.request.urlopen(url.rstrip("/") + "/api/symbols", timeout=10) as r:
        names = json.load(r)["symbols"]
    rng = random.Random(seed)

    def pick(k: int) -> str:
        return ",".join(rng.sample(names, min(k, len(names))))

    if spec == "mix":
        return tuple((None, pick(5), pick(20))[i % 3] for i in range(clients))
    k = int(spec.split(":", 1)[1])
    return tuple(pick(k) for _ in range(clients))


def split(n: int, parts: int) -> list[int]:
    return [n // parts + (i < n % parts) for i in range(parts)]


def run(args: argparse.Namespace) -> dict[str, Any]:
    target = target_of(args.url)
    slow = round(args.clients * args.slow_fraction)
    subs = subscriptions(args.symbols, args.url, args.clients)
    start_at = time.time() + 1.0
    stop_at = start_at + args.ramp_s + args.duration_s
    sample_every = max(1, round(1 / args.sample)) if args.sample else 10**9
    ctx = multiprocessing.get_context("spawn")
    report: Any = ctx.Queue()
    procs = []
    for i, (n, s) in enumerate(zip(split(args.clients, args.processes),
                                   split(slow, args.processes), strict=True)):
        plan = Plan(target, i, n, s, args.transport, args.encoding, args.accept_encoding,
                    subs, args.max_hz, sample_every, start_at, args.ramp_s, stop_at)
        proc = ctx.Process(target=worker_main, args=(plan, report), daemon=True)
        proc.start()
        procs.append(proc)
    so_far = Interval()
    reports: list[tuple[float, Interval]] = []
    seconds: dict[int, Interval] = {}
    connected: dict[int, int] = {}
    outcomes: list[dict[str, Any]] = []
    deadline = stop_at + 60
    while len(outcomes) < len(procs) and time.time() < deadline:
        try:
            msg = report.get(timeout=max(0.1, deadline - time.time()))
        except Exception:
            break
        if msg[0] == "done":
            outcomes.append(msg[2])
            continue
        _, index, t, interval, conn, _failed = msg
        second = int(t)
        reports.append((t, Interval.from_json(interval)))
        seconds.setdefault(second, Interval()).add(reports[-1][1])
        so_far.add(reports[-1][1])
        connected[index] = conn
        if not args.quiet and second - 1 in seconds:
            shown = seconds[second - 1]
            p99 = percentile(so_far.latency, 0.99)
            # ticks a frame on the sampled clients, times every frame (right during the ramp)
            ticks = shown.ticks / shown.sampled_frames * shown.frames if shown.sampled_frames else 0
            print(f"\r{sum(connected.values()):>6} connected  {shown.frames:>8} frames/s  "
                  f"{ticks:>10.0f} ticks/s  "
                  f"p99 so far {'-' if p99 is None else f'{p99:.0f} ms':>8}", end="", flush=True)
    for proc in procs:
        proc.join(5)
    if not args.quiet:
        print()
    config = {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()}
    return summarize(reports, outcomes, config, (start_at + args.ramp_s, stop_at))


def main(argv: Sequence[str] | None = None) -> None:
    args = parser().parse_args(argv)
    try:
        target_of(args.url)
    except ValueError as e:
        print(f"{PROG}: error: {e}", file=sys.stderr)
        sys.exit(2)
    result = run(args)
    print(text(result))
    if args.json:
        args.json.write_text(json.dumps(result, indent=1))
    if args.html:
        args.html.write_text(page(result))
