"""Server configuration: one frozen dataclass, units in the names, defaults documented once."""

from __future__ import annotations

from dataclasses import dataclass, field

from dashboard.core.client_address import Network
from dashboard.core.flow import Pace


@dataclass(frozen=True, slots=True)
class Config:
    """Everything the server needs to run; the CLI builds one, tests build their own.

    Defaults are the ones a production user would keep.
    """

    host: str = "127.0.0.1"
    port: int = 8888
    feed: str = "sim"
    #: Replaces the exchange's WebSocket base URL (regional endpoints, proxies, tests).
    feed_url: str | None = None
    #: ``--feed-option key=value`` pairs, passed to the adapter as strings.
    feed_options: tuple[tuple[str, str], ...] = ()
    #: Write every tick the feed yields to this file (JSON lines) for ``--feed replay``.
    record_path: str | None = None
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
    #: Outbound pace per connection: frames a second (a client's ``max_hz`` is capped by
    #: it; 0 = no cap) and bytes a second (0 = no cap: TCP backpressure and the slow-client
    #: ladder already protect the server; a cap bounds each client's bandwidth). Between
    #: frames, ticks conflate.
    max_hz: float = 0.0
    max_bytes_per_s: float = 0.0
    #: A client whose socket stays full this long is dropped (WebSocket close 1013).
    slow_client_timeout_s: float = 5.0
    #: Client-to-server messages a second per connection (burst twice that); past it: 1008.
    max_client_msgs_per_s: float = 10.0
    #: Streaming connections (every transport) in total and per client address; 0 = no cap.
    max_connections: int = 10_000
    max_connections_per_ip: int = 500
    #: Cross-origin pages allowed to open streams (``https://app.example``); the page's own
    #: origin and clients that send no Origin (not browsers) are always allowed.
    allowed_origins: tuple[str, ...] = ()
    #: Proxies whose forwarding headers tell the client's address (see
    #: :mod:`dashboard.core.client_address`); from any other peer they are ignored.
    trusted_proxies: tuple[Network, ...] = ()
    #: Every connection starts with a PROXY protocol header, from a trusted proxy only.
    proxy_protocol: bool = False
    #: Turns auth on: the HMAC secret of the signed tokens (see :mod:`dashboard.core.auth`) that
    #: streams and the API then require. Never shown: not in the repr, logs or /healthz.
    auth_token_secret: bytes | None = field(default=None, repr=False)
    #: Serve https and wss with this certificate chain and key (both, or neither).
    certfile: str | None = None
    keyfile: str | None = None
    #: ``memory`` (one process) or a Redis URL (``redis://HOST:PORT/DB``) to scale out over.
    broker: str = "memory"
    #: ``all`` runs the feed and serves clients; ``feed`` only publishes batches to the
    #: broker; ``edge`` only serves clients from it.
    role: str = "all"
    #: Edge processes sharing ``port`` (with one feed process), all fed through the broker.
    workers: int = 1
    #: Listen with SO_REUSEPORT, so several edge processes share one port.
    reuse_port: bool = False
    #: How long a graceful shutdown waits for clients to take their close before exiting.
    shutdown_grace_s: float = 1.0

    def pace(self, requested_hz: float | None) -> Pace:
        """A connection's pace: the client's ``max_hz`` capped by the server's."""
        caps = [hz for hz in (requested_hz, self.max_hz) if hz]
        return Pace(
            max_hz=min(caps) if caps else None,
            max_bytes_per_s=self.max_bytes_per_s or None,
            slow_client_timeout_s=self.slow_client_timeout_s,
        )
