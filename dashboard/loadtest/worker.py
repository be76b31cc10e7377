"""One load-generating process: its share of the clients, and a report every second."""

from __future__ import annotations

import asyncio
import random
import time
from dataclasses import asdict, dataclass
from typing import Any

from dashboard import tasks
from dashboard.loadtest.clients import (
    STREAM_PATHS,
    Meter,
    Outcomes,
    Sample,
    Target,
    query,
    slow_client,
    stream_client,
    websocket_client,
)


@dataclass(frozen=True, slots=True)
class Plan:
    """What one worker runs (picklable: it crosses into a child process)."""

    target: Target
    index: int
    clients: int
    slow: int
    transport: str  # ws | sse | stream | mix (ws and sse)
    encoding: str
    #: What SSE and /stream clients send as Accept-Encoding.
    accept_encoding: str
    subscriptions: tuple[str | None, ...]  # per client, cycled; None = every symbol
    max_hz: float | None
    sample_every: int  # every n-th client decodes fully
    start_at: float  # epoch seconds
    ramp_s: float
    stop_at: float


async def run(plan: Plan, report: Any) -> None:
    meter = Meter()
    outcomes = Outcomes()
    loop = asyncio.get_running_loop()
    tasks: list[asyncio.Task[None]] = []
    rng = random.Random(plan.index)

    async def reporter() -> None:
        cpu = time.process_time()
        while time.time() < plan.stop_at + 0.5:
            due = loop.time() + 1.0
            lag = 0.0
            while loop.time() < due:  # loop lag: how late a 50 ms sleep wakes up
                t = loop.time()
                await asyncio.sleep(0.05)
                lag = max(lag, (loop.time() - t - 0.05) * 1000)
            interval = meter.take()
            now_cpu = time.process_time()
            interval.cpu_s, cpu = now_cpu - cpu, now_cpu
            interval.loop_lag_ms = lag
            report.put(("tick", plan.index, time.time(), interval.to_json(),
                        outcomes.connected, outcomes.failed))

    reporting = asyncio.create_task(reporter())
    await asyncio.sleep(max(0.0, plan.start_at - time.time()))
    total = plan.clients + plan.slow
    for i in range(total):
        await asyncio.sleep(max(0.0, plan.start_at + plan.ramp_s * i / max(1, total)
                                - time.time()))
        q = query(plan.subscriptions[i % len(plan.subscriptions)], plan.max_hz,
                  {"encoding": plan.encoding} if plan.encoding != "json" else {})
        if i >= plan.clients:
            tasks.append(asyncio.create_task(slow_client(plan.target, q, outcomes, plan.stop_at)))
            continue
        sample = Sample(meter) if i % plan.sample_every == 0 else None
        kind = plan.transport if plan.transport != "mix" else rng.choice(("ws", "sse"))
        if kind in STREAM_PATHS:
            stream_q = query(plan.subscriptions[i % len(plan.subscriptions)], plan.max_hz, {})
            coro = stream_client(plan.target, kind, stream_q, plan.accept_encoding, sample,
                                 meter, outcomes, plan.stop_at)
        else:
            coro = websocket_client(plan.target, q, plan.encoding, sample, meter, outcomes,
                                    plan.stop_at)
        tasks.append(asyncio.create_task(coro))
    await asyncio.gather(*tasks)
    await reporting
    report.put(("done", plan.index, asdict(outcomes) | {
        "closed": dict(outcomes.closed), "codings": dict(outcomes.codings),
        "healthy": plan.clients,
        "sampled": len(range(0, plan.clients, plan.sample_every)),
    }))


def main(plan: Plan, report: Any) -> None:
    """On uvloop (see tasks.run): a generator that is itself busy adds its own delay to
    every latency it measures."""
    tasks.run(run(plan, report))
