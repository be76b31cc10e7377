"""Exceptions of the dashboard.

Tree::

    DashboardError
    ├── ConfigError          a flag or option value is unusable (CLI: one line, exit 2)
    └── BadRequest           a client asked for something malformed or unknown
        ├── UnknownSymbol    ... a symbol the feed does not have
        ├── UnknownOp        ... a client message op that does not exist
        ├── Forbidden        ... not allowed from where it came (HTTP 403)
        │   └── SymbolNotAllowed  ... a symbol the client's token does not allow
        └── Unauthorized     ... no valid token (HTTP 401, WebSocket close 1008)

``BadRequest`` carries the contract's error ``code``; transports turn it into an HTTP 400
JSON body or a ``{"type":"error"}`` message. The auth errors also carry a ``reason``, the
label of ``dashboard_auth_rejections_total``; their messages are public and never hold the
token or the secret.
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
