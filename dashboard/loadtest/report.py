"""The load test's final report: figures, text, and a self-contained HTML page."""

from __future__ import annotations

import html
from typing import Any

from dashboard.loadtest.stats import Interval, percentile


def summarize(
    reports: list[tuple[float, Interval]], outcomes: list[dict[str, Any]], config: dict[str, Any],
    window: tuple[float, float],
) -> dict[str, Any]:
    """Figures over the steady window (whole seconds after the ramp, from every worker's
    one-second reports, each stamped with its end), totals over the whole run, and the
    clients' outcomes."""
    steady, total = Interval(), Interval()
    steady_reports = 0
    per_second: dict[int, Interval] = {}
    for t, interval in reports:
        total.add(interval)
        per_second.setdefault(int(t), Interval()).add(interval)
        if window[0] + 1.0 <= t <= window[1]:
            steady.add(interval)
            steady_reports += 1
    seconds = max(steady_reports / max(len(outcomes), 1), 1.0)
    timeline = sorted(per_second.items())
    sampled = sum(o["sampled"] for o in outcomes)
    healthy = sum(o["healthy"] for o in outcomes)
    scale = healthy / sampled if sampled else 0.0
    closed: dict[str, int] = {}
    for o in outcomes:
        for code, n in o["closed"].items():
            closed[code] = closed.get(code, 0) + n
    last = [s for o in outcomes for s in o["last_seqs"]]
    codings: dict[str, int] = {}
    for o in outcomes:
        for coding, n in o.get("codings", {}).items():
            codings[coding] = codings.get(coding, 0) + n
    ticks_per_s = steady.ticks * scale / seconds
    saturated = sorted({
        int(t) for t, i in reports
        if window[0] <= t <= window[1] and (i.cpu_s >= 0.9 or i.loop_lag_ms > 100)
    })
    return {
        "config": config,
        "seconds": seconds,
        "clients": {
            "connected": sum(o["connected"] for o in outcomes),
            "failed": sum(o["failed"] for o in outcomes),
            "closed": closed,
            "slow": sum(o["slow"] for o in outcomes),
            "slow_dropped": sum(o["slow_dropped"] for o in outcomes),
            "sampled": sampled,
            #: SSE and /stream clients by the content coding the server chose for them.
            "codings": codings,
        },
        "frames_total": total.frames,
        "ticks_total": total.ticks * scale,
        "bytes_total": total.bytes,
        "gaps_total": total.gaps,
        "frames_per_s": steady.frames / seconds,
        "bytes_per_s": steady.bytes / seconds,
        "ticks_per_s": ticks_per_s,
        "bytes_per_tick": (steady.bytes / seconds) / ticks_per_s if ticks_per_s else None,
        "latency_ms": {
            name: percentile(steady.latency, q)
            for name, q in (("p50", 0.5), ("p90", 0.9), ("p99", 0.99), ("max", 1.0))
        },
        "gaps": steady.gaps,
        "conflated_ticks": steady.conflated,
        "slowest_behind_seqs": (max(last) - min(last)) if last else None,
        "load_generator_saturated_at": saturated,
        "timeline": [
            {"t": t, "frames": i.frames, "ticks": i.ticks * scale,
             "p50": percentile(i.latency, 0.5), "p99": percentile(i.latency, 0.99),
             "cpu_s": i.cpu_s, "loop_lag_ms": i.loop_lag_ms}
            for t, i in timeline
        ],
    }


def fmt(x: float | None) -> str:
    return "-" if x is None else f"{x:.1f}"


def text(r: dict[str, Any]) -> str:
    c = r["clients"]
    lat = r["latency_ms"]
    lines = [
        f"clients: {c['connected']} connected, {c['failed']} failed, closed by code "
        f"{c['closed'] or '{}'}; {c['slow']} slow ({c['slow_dropped']} dropped by the server)",
        f"over {r['seconds']:.0f} s: {r['frames_per_s']:.0f} frames/s, "
        f"{r['ticks_per_s']:.0f} ticks/s delivered, {r['bytes_per_s'] / 1e6:.2f} MB/s, "
        f"{fmt(r['bytes_per_tick'])} bytes/tick" + (
            " (SSE and stream codings: " + ", ".join(
                f"{k} {n} clients" for k, n in c["codings"].items()) + ")"
            if c["codings"] else ""),
        f"latency tick ts → receipt (ms): p50 {fmt(lat['p50'])}  p90 {fmt(lat['p90'])}  "
        f"p99 {fmt(lat['p99'])}  max {fmt(lat['max'])}   ({c['sampled']} clients sampled)",
        f"gaps {r['gaps']}, conflated ticks {r['conflated_ticks']}, slowest healthy client "
        f"behind by {r['slowest_behind_seqs']} seqs at the end",
    ]
    if r["load_generator_saturated_at"]:
        lines.append(f"WARNING: the load generator itself was saturated in "
                     f"{len(r['load_generator_saturated_at'])} s of the run: add --processes")
    return "\n".join(lines)


def _polyline(points: list[tuple[float, float]], w: int, h: int, color: str) -> str:
    if not points:
        return ""
    xs = [p[0] for p in points]
    top = max(p[1] for p in points) or 1.0
    x0, span = min(xs), (max(xs) - min(xs)) or 1.0
    coords = " ".join(f"{(x - x0) / span * w:.1f},{h - y / top * h:.1f}" for x, y in points)
    return f'<polyline fill="none" stroke="{color}" stroke-width="2" points="{coords}"/>'


def page(r: dict[str, Any]) -> str:
    """One HTML file, no scripts or external assets: latency and throughput over time."""
    tl = r["timeline"]
    charts = []
    for title, series in (
        ("Latency p50 / p99 (ms)", [("p50", "#26a69a"), ("p99", "#ef5350")]),
        ("Frames/s and ticks/s", [("frames", "#2962ff"), ("ticks", "#f0b90b")]),
    ):
        lines = "".join(
            _polyline([(p["t"], p[key]) for p in tl if p[key] is not None], 800, 200, color)
            for key, color in series
        )
        legend = " ".join(f'<span style="color:{c}">{k}</span>' for k, c in series)
        charts.append(f"<h2>{title}</h2><p>{legend}</p><svg viewBox='0 0 800 200' "
                      f"width='800' height='200'>{lines}</svg>")
    return (
        "<!doctype html><meta charset='utf-8'><title>Load test report</title>"
        "<style>body{font:14px system-ui;background:#131722;color:#d1d4dc;margin:24px}"
        "svg{background:#181c27}pre{white-space:pre-wrap}</style>"
        f"<h1>Load test report</h1><pre>{html.escape(text(r))}</pre>{''.join(charts)}"
    )
