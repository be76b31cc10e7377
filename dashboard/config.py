"""Server configuration: one frozen dataclass, units in the names, defaults documented once."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Config:
    """Everything the server needs to run; the CLI builds one, tests build their own.

    Defaults are the ones a production user would keep.
    """

    host: str = "127.0.0.1"
    port: int = 8888
    feed: str = "sim"
    #: A count of simulated symbols, or explicit names.
    symbols: int | tuple[str, ...] = 100
    #: Simulated ticks per second over all symbols.
    tick_rate: float = 2000.0
    #: Repeatable simulated prices when set.
    seed: int | None = None
    #: Coalescing interval of the batcher.
    batch_ms: float = 50.0
    #: Seconds of batches held for resume.
    history_s: float = 60.0
    #: WebSocket protocol pings: interval, and how long a pong may take before the peer is dead.
    ping_interval_s: float = 20.0
    ping_timeout_s: float = 20.0
    #: SSE ``retry:`` advice to EventSource, and the idle keepalive period of SSE and streams.
    sse_retry_ms: int = 2000
    keepalive_s: float = 15.0
    #: How long a graceful shutdown waits for clients to take their close before exiting.
    shutdown_grace_s: float = 1.0
