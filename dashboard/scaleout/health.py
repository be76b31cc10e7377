"""The broker's health as a server shows it — without the ``redis`` package, which only
``--broker redis://...`` needs (``pip install .[redis]``)."""

from __future__ import annotations

import enum
import logging
import time
from dataclasses import dataclass
from urllib.parse import urlsplit, urlunsplit

from dashboard.core.batcher import Seq
from dashboard.errors import BrokerDataError

log = logging.getLogger(__name__)


class BrokerState(enum.Enum):
    CONNECTING = "connecting"
    CONNECTED = "connected"
    DEGRADED = "degraded"


@dataclass
class BrokerHealth:
    """Plain attributes for /healthz and /metrics; ``url`` is shown without a password."""

    url: str
    state: BrokerState = BrokerState.CONNECTING
    error: str | None = None
    reconnects: int = 0
    resets: int = 0
    last_seq: Seq | None = None
    since: float = 0.0  # time.monotonic() of the last state change

    def up(self) -> None:
        if self.state is not BrokerState.CONNECTED:
            if self.state is BrokerState.DEGRADED:
                self.reconnects += 1
                log.info("redis %s is back", self.url)
            self.state, self.error, self.since = BrokerState.CONNECTED, None, time.monotonic()

    def down(self, error: BaseException) -> None:
        text = str(error) or type(error).__name__
        if self.state is not BrokerState.DEGRADED:
            what = ("holds data this version cannot read" if isinstance(error, BrokerDataError)
                    else "unreachable")
            log.warning("redis %s %s, retrying: %s", self.url, what, text)
            self.state, self.since = BrokerState.DEGRADED, time.monotonic()
        self.error = text

    def as_json(self) -> dict[str, object]:
        return {
            "url": self.url, "state": self.state.value, "error": self.error,
            "reconnects": self.reconnects, "resets": self.resets, "last_seq": self.last_seq,
            "for_s": round(time.monotonic() - self.since, 3) if self.since else None,
        }


def redacted(url: str) -> str:
    """The URL as shown in /healthz and logs: scheme, host, port, path — never a password,
    whether in the userinfo or in the query (``?password=``, the only way for unix://)."""
    parts = urlsplit(url)
    if parts.scheme == "unix":
        return f"unix://{parts.path}"
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    user = "***@" if parts.username or parts.password else ""
    port = f":{parts.port}" if parts.port else ""
    return urlunsplit((parts.scheme, f"{user}{host}{port}", parts.path, "", ""))
