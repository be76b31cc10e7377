"""What every handler of one server shares."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Protocol

from dashboard.clock import now_ms
from dashboard.config import Config
from dashboard.core.batcher import Batcher
from dashboard.core.hub import Hub
from dashboard.core.overload import Overload
from dashboard.core.symbols import SymbolTable
from dashboard.metrics import Metrics
from dashboard.scaleout.health import BrokerHealth, BrokerState
from feeds.base import FeedHealth


class Client(Protocol):
    """A streaming connection, as the server sees it for housekeeping and shutdown."""

    transport: str
    outstanding_bytes: int

    def keepalive(self, now: float) -> None:
        """Called every housekeeping round (``server.HOUSEKEEPING_S``, twice a second):
        write a keepalive, or ping, if idle long enough."""
        ...

    def shutdown(self) -> None:
        """The server is going away: close (WebSocket 1001) or end the stream."""
        ...

    def abort(self) -> None:
        """Tear the connection down now, without waiting for the peer."""
        ...


@dataclass
class ServerState:
    config: Config
    table: SymbolTable
    batcher: Batcher
    hub: Hub
    metrics: Metrics
    feed_name: str
    feed_health: FeedHealth
    #: Whether fan-outs keep up with the batches (see dashboard.core.overload).
    overload: Overload
    #: None with the in-process broker.
    broker: BrokerHealth | None = None
    started_ms: float = field(default_factory=now_ms)
    clients: dict[Client, str] = field(default_factory=dict)
    per_ip: Counter[str] = field(default_factory=Counter)
    stopping: bool = False

    def __post_init__(self) -> None:
        self.metrics.watch_connections(
            lambda: Counter(client.transport for client in self.clients)
        )
        self.metrics.watch_outstanding(
            lambda: sum(client.outstanding_bytes for client in self.clients)
        )
        self.metrics.watch_overload(self.overload)

    @property
    def degraded(self) -> bool:
        """Cut off from the broker: still serving what is held, but nothing new arrives."""
        return self.broker is not None and self.broker.state is BrokerState.DEGRADED

    def admit(self, client: Client, ip: str) -> str | None:
        """Count a new streaming connection in, or say why it is refused (and count that)."""
        c = self.config
        if c.max_connections and len(self.clients) >= c.max_connections:
            reason = "max_connections"
        elif c.max_connections_per_ip and self.per_ip[ip] >= c.max_connections_per_ip:
            reason = "max_connections_per_ip"
        else:
            self.clients[client] = ip
            self.per_ip[ip] += 1
            return None
        self.metrics.rate_limit_rejections.labels(reason).inc()
        return reason

    def disconnected(self, client: Client) -> None:
        ip = self.clients.pop(client, None)
        if ip is not None:
            self.per_ip[ip] -= 1
            if not self.per_ip[ip]:
                del self.per_ip[ip]
