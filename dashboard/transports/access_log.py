"""Request logging without credentials: Tornado logs each request's URI, and a ``token=`` in
a log would be a key for anyone who reads the logs, good until it expires."""

from __future__ import annotations

import urllib.parse

import tornado.httputil
import tornado.web
from tornado.log import access_log

REDACTED = "[redacted]"


def redacted(uri: str) -> str:
    """``uri`` with the value of every ``token`` query parameter replaced; names are compared
    percent-decoded, as Tornado parses them (``%74oken`` is ``token`` too)."""
    path, sep, query = uri.partition("?")
    if not sep:
        return uri
    parts = []
    for part in query.split("&"):
        name = part.partition("=")[0]
        parts.append(f"{name}={REDACTED}" if urllib.parse.unquote_plus(name) == "token" else part)
    return f"{path}?{'&'.join(parts)}"


def summary(request: tornado.httputil.HTTPServerRequest) -> str:
    """Tornado's ``METHOD URI (IP)``, the URI redacted."""
    return f"{request.method} {redacted(request.uri or '')} ({request.remote_ip})"


def log_request(handler: tornado.web.RequestHandler) -> None:
    """The application's ``log_function``: Tornado's access log line, redacted."""
    status = handler.get_status()
    log = (access_log.info if status < 400 else
           access_log.warning if status < 500 else access_log.error)
    log("%d %s %.2fms", status, summary(handler.request), 1000.0 * handler.request.request_time())
