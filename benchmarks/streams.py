"""SSE and /stream beside WebSocket, in one run: server CPU per second, p50/p99 and bytes per
tick at ``--clients`` clients for WebSocket br and for SSE in each content coding, as
ratios against WebSocket br (medians of ``--runs``); then the knee of per-connection br,
the one coding that cannot be shared; then many browser SSE clients on the server's one
core (``--many``), which must all get every batch.

Feed, cores and load generator as in ``benchmarks/fanout.py``: 100 symbols, 2,000
ticks/s, 50 ms batches; the server on core 0, the clients on core 1. SSE clients send
what Chromium sends (``gzip, deflate, br, zstd``, which gets zstd) or one coding alone.

    python -m benchmarks.streams [--clients 1000] [--duration-s 15] [--runs 3]
"""

from __future__ import annotations

import argparse
import statistics
from typing import Any

from benchmarks.fanout import OURS, fmt, ramp_s, run_one

#: (label, transport, WebSocket encoding, Accept-Encoding)
CASES = [
    ("ws br", "ws", "br", None),
    ("sse (browser)", "sse", "json", "gzip, deflate, br, zstd"),
    ("sse deflate", "sse", "json", "deflate"),
    ("sse gzip", "sse", "json", "gzip"),
    ("stream (browser)", "stream", "json", "gzip, deflate, br, zstd"),
    ("sse identity", "sse", "json", "identity"),
]
BR_KNEE = (100, 200, 400, 800)


def measure(clients: int, transport: str, encoding: str, accept: str | None,
            duration_s: float) -> dict[str, Any]:
    args = ["--transport", transport, *(["--accept-encoding", accept] if accept else [])]
    row = run_one(OURS, clients, encoding, duration_s, *args)
    row["cores"] = row["server_cpu_s"] / (duration_s + ramp_s(clients))
    return row


def median(rows: list[dict[str, Any]], key: str) -> float | None:
    values = [r[key] for r in rows if r[key] is not None]
    return statistics.median(values) if values else None


def line(label: str, rows: list[dict[str, Any]], base: dict[str, float | None]) -> str:
    cores, p99 = median(rows, "cores"), median(rows, "p99_ms")
    vs_cpu = f"{cores / base['cores']:.2f}x" if cores and base["cores"] else "-"
    vs_p99 = f"{p99 / base['p99']:.2f}x" if p99 and base["p99"] else "-"
    codings = ",".join(sorted({c for r in rows for c in r["codings"]})) or "-"
    return (f"{label:<18}{codings:<10}{fmt(cores, '.2f'):>7}{vs_cpu:>8}"
            f"{fmt(median(rows, 'p50_ms'), '.0f'):>8}{fmt(p99, '.0f'):>8}{vs_p99:>8}"
            f"{fmt(median(rows, 'bytes_per_tick'), '.1f'):>8}"
            f"{min(r['connected'] for r in rows):>7}{sum(r['gaps'] for r in rows):>6}"
            f"{sum(r['generator_saturated_s'] for r in rows):>5}")


HEAD = (f"{'case':<18}{'coding':<10}{'cores':>7}{'vs ws':>8}{'p50 ms':>8}{'p99 ms':>8}"
        f"{'vs ws':>8}{'B/tick':>8}{'conn':>7}{'gaps':>6}{'sat':>5}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--clients", type=int, default=1000)
    p.add_argument("--many", type=int, default=3000)
    p.add_argument("--duration-s", type=float, default=15.0)
    p.add_argument("--runs", type=int, default=3)
    a = p.parse_args()
    results: dict[str, list[dict[str, Any]]] = {label: [] for label, *_ in CASES}
    for run in range(a.runs):  # interleaved, so drift on this machine hits every case alike
        for label, transport, encoding, accept in CASES:
            results[label].append(measure(a.clients, transport, encoding, accept, a.duration_s))
            print(f"  run {run + 1} {label}: {results[label][-1]['cores']:.2f} cores", flush=True)
    ws = results["ws br"]
    base = {"cores": median(ws, "cores"), "p99": median(ws, "p99_ms")}
    print(f"\n{a.clients} clients, medians of {a.runs} runs (sat: seconds the load "
          f"generator was saturated)\n{HEAD}")
    for label, rows in results.items():
        print(line(label, rows, base))
    print("\nper-connection br, by clients (one run each)\n" + HEAD)
    for n in BR_KNEE:
        print(line(f"sse br x{n}", [measure(n, "sse", "json", "br", a.duration_s)], base))
    print(f"\n{a.many} browser SSE clients on one core (one run)\n" + HEAD)
    print(line(f"sse x{a.many}", [measure(a.many, "sse", "json", CASES[1][3] or "",
                                          a.duration_s)], base))


if __name__ == "__main__":
    main()
