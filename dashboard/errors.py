"""Exceptions of the dashboard: one root, so a caller can catch everything of ours at once.

Tree::

    DashboardError
    ├── ConfigError          a flag or option value is unusable (CLI: one line, exit 2)
    ├── BadRequest           a client asked for something malformed or unknown
    │   ├── UnknownSymbol    ... a symbol the feed does not have
    │   ├── UnknownOp        ... a client message op that does not exist
    │   ├── Forbidden        ... not allowed from where it came (HTTP 403)
    │   │   └── SymbolNotAllowed  ... a symbol the client's token does not allow
    │   └── Unauthorized     ... no valid token (HTTP 401, WebSocket close 1008)
    ├── BrokerError          Redis is unusable for this server; no retry mends it
    │   └── FeedLockError    ... another feed process publishes to the same database
    ├── BrokerDataError      an entry or blob in Redis is not what this version writes
    │                        (a broker fault: skipped, or retried like a lost connection)
    ├── WorkerError          a ``--workers`` child did not start
    └── HandshakeError       the load client's upgrade was refused (``status``: the HTTP one)

``BadRequest`` carries the contract's error ``code``; transports turn it into an HTTP 400
JSON body or a ``{"type":"error"}`` message. The auth errors also carry a ``reason``, the
label of ``dashboard_auth_rejections_total``; their messages are public and never hold the
token or the secret. Feeds raise ``feeds.base.FeedError``, outside this tree: ``feeds/``
never imports the dashboard.
"""

from __future__ import annotations


class DashboardError(Exception):
    """Root of the dashboard's own exceptions."""


class ConfigError(DashboardError):
    """A configuration value is unusable; ``flag`` names the CLI flag."""

    def __init__(self, flag: str, message: str) -> None:
        super().__init__(f"argument {flag}: {message}")
        self.flag = flag


class BadRequest(DashboardError):
    """A malformed client request; ``code`` is the contract's error code."""

    code = "bad_request"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class UnknownSymbol(BadRequest):
    code = "unknown_symbol"


class UnknownOp(BadRequest):
    code = "unknown_op"


class Forbidden(BadRequest):
    code = "forbidden"


class SymbolNotAllowed(Forbidden):
    reason = "forbidden"


class Unauthorized(BadRequest):
    """``reason``: ``missing``, ``expired`` or ``invalid`` (the message says which token)."""

    code = "unauthorized"

    def __init__(self, reason: str) -> None:
        super().__init__(f"{reason} token")
        self.reason = reason


class BrokerError(DashboardError):
    """Redis is unusable for this server (refused it, another feed's stream)."""


class FeedLockError(BrokerError):
    """Another feed process publishes to this database."""


class BrokerDataError(DashboardError):
    """An entry or blob in the broker is not what this version writes."""


class WorkerError(DashboardError):
    """A ``--workers`` child process did not start."""


class HandshakeError(DashboardError):
    """The server refused the upgrade (``status`` is its HTTP status)."""

    def __init__(self, status: int, head: bytes) -> None:
        super().__init__(f"upgrade refused: HTTP {status}")
        self.status = status
        self.head = head
