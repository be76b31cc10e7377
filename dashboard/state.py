"""What every handler of one server shares."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Protocol

from dashboard.batcher import Batcher
from dashboard.config import Config
from dashboard.hub import Hub
from dashboard.metrics import Metrics
from dashboard.symbols import SymbolTable


def now_ms() -> float:
    return round(time.time() * 1000.0, 1)


class Client(Protocol):
    """A streaming connection, as the server sees it for housekeeping and shutdown."""

    transport: str

    def keepalive(self, now: float) -> None:
        """Called about once a second: write a keepalive if idle long enough."""
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
    started_ms: float = field(default_factory=now_ms)
    clients: set[Client] = field(default_factory=set)
    stopping: bool = False

    def connected(self, client: Client) -> None:
        self.clients.add(client)
        self.metrics.connections.labels(client.transport).inc()

    def disconnected(self, client: Client) -> None:
        if client in self.clients:
            self.clients.discard(client)
            self.metrics.connections.labels(client.transport).dec()
