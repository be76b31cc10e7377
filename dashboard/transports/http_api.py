"""Plain HTTP endpoints: the page, health, metrics and the JSON API. Thin handlers."""

from __future__ import annotations

import os
import time
import urllib.parse
from types import TracebackType
from typing import Any

import numpy as np
import orjson
import tornado.web
from tornado.log import app_log, gen_log

from dashboard.clock import now_ms
from dashboard.core import auth
from dashboard.core.params import bars_request
from dashboard.core.symbols import IndexArray
from dashboard.errors import BadRequest, SymbolNotAllowed, Unauthorized
from dashboard.state import ServerState
from dashboard.transports.access_log import summary
from dashboard.wire import codecs

#: The page may run only its own scripts and talk only to its own origin. Inline *styles*
#: are allowed: the chart library styles its own elements (its attribution logo) inline,
#: and a style cannot run code.
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data:; worker-src 'none'; "
    "connect-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'"
)


class BaseHandler(tornado.web.RequestHandler):
    """Errors as the contract's JSON body, never a traceback or an HTML page."""

    #: What the request's token allows, once :meth:`authorize` has verified it.
    grant = auth.EVERYONE

    def initialize(self, state: ServerState) -> None:
        self.state = state

    def set_default_headers(self) -> None:
        self.set_header("X-Content-Type-Options", "nosniff")
        self.set_header("Referrer-Policy", "no-referrer")

    def cross_origin_refusal(self) -> str | None:
        """Why a browser request from another site may not stream from here, or None.

        Same-origin requests (by ``Sec-Fetch-Site``, or an ``Origin`` matching ``Host``),
        requests without ``Origin`` (not from a browser page), and ``--allowed-origins``
        pass; any other page would be a cross-site hijack of the user's session.
        """
        origin = self.request.headers.get("Origin")
        if self.request.headers.get("Sec-Fetch-Site") in ("same-origin", "none") or not origin:
            return None
        if self.origin_allowed(origin):
            self.set_header("Access-Control-Allow-Origin", origin)
            self.set_header("Vary", "Origin")
            return None
        if urllib.parse.urlsplit(origin).netloc.lower() == self.request.host.lower():
            return None
        return f"origin {origin[:100]!r} is not allowed"

    def origin_allowed(self, origin: str) -> bool:
        return origin.rstrip("/").lower() in self.state.config.allowed_origins

    def authorize(self, indices: IndexArray | None) -> IndexArray | None:
        """The symbols this request may have when it asks for ``indices`` (None: all), once
        its token is verified (see :func:`auth.scope`): with auth off, what it asked for.
        Raises :class:`Unauthorized` or :class:`SymbolNotAllowed`, counted."""
        secret = self.state.config.auth_token_secret
        if secret is not None:
            query_token = auth.query_token(self.request.query_arguments.get("token", []))
            token = auth.bearer(self.request.headers.get("Authorization"), query_token)
            try:
                self.grant = auth.verify(secret, token, time.time())
            except Unauthorized as e:
                self.state.metrics.auth_rejections.labels(e.reason).inc()
                raise
        return self.permit(indices)

    def permit(self, indices: IndexArray | None) -> IndexArray | None:
        """``indices`` (None: all) limited to what the verified token allows."""
        try:
            return auth.scope(self.grant, self.state.table, indices)
        except SymbolNotAllowed as e:
            self.state.metrics.auth_rejections.labels(e.reason).inc()
            raise

    def query(self, name: str) -> str | None:
        return self.get_query_argument(name, None)

    def write_json(self, body: bytes, status: int = 200) -> None:
        self.set_status(status)
        self.set_header("Content-Type", "application/json")
        self.set_header("Cache-Control", "no-store")
        self.finish(body)

    def refuse(self, error: BadRequest, status: int = 400) -> None:
        """The error as a JSON body; an auth refusal is a 401 (no valid token) or a 403 (a
        symbol the token does not allow), with its ``WWW-Authenticate`` challenge."""
        if isinstance(error, Unauthorized | SymbolNotAllowed):
            status = 401 if isinstance(error, Unauthorized) else 403
            self.set_header("WWW-Authenticate", auth.challenge(error))
        self.state.metrics.client_errors.labels(error.code).inc()
        self.write_json(
            codecs.dumps({"type": "error", "code": error.code, "message": error.message}), status
        )

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        self.set_header("Content-Type", "application/json")
        code = "bad_request" if 400 <= status_code < 500 else "internal_error"
        self.finish(codecs.dumps({"type": "error", "code": code, "message": self._reason}))

    def log_exception(self, typ: type[BaseException] | None, value: BaseException | None,
                      tb: TracebackType | None) -> None:
        """As Tornado's, whose lines would carry the raw URI, ``token=`` and all."""
        if not isinstance(value, tornado.web.HTTPError):
            app_log.error("Uncaught exception %s", summary(self.request), exc_info=value)
        elif message := value.get_message():
            gen_log.warning("%d %s: %s", value.status_code, summary(self.request), message)


class HealthHandler(BaseHandler):
    def get(self) -> None:
        s = self.state
        status = "stopping" if s.stopping else "degraded" if s.degraded else "ok"
        self.write_json(orjson.dumps({
            "status": status,
            "role": s.config.role,
            "pid": os.getpid(),
            "feed": s.feed_name,
            "seq": s.batcher.seq,
            "symbols": len(s.table),
            "connections": len(s.clients),
            "feeds": [{"name": s.feed_name, **s.feed_health.as_json()}],
            "broker": s.broker.as_json() if s.broker else {"url": "memory", "state": "connected"},
            "uptime_s": round((now_ms() - s.started_ms) / 1000, 3),
        }), 200 if status == "ok" else 503)


class MetricsHandler(BaseHandler):
    def get(self) -> None:
        self.set_header("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
        self.finish(self.state.metrics.exposition())


class SymbolsHandler(BaseHandler):
    """Every symbol, or those the request's token allows."""

    def get(self) -> None:
        try:
            self.authorize(None)
        except BadRequest as e:
            return self.refuse(e)
        names = [name for name in self.state.table.names if self.grant.allows(name)]
        self.write_json(orjson.dumps({"symbols": names}))


class SnapshotHandler(BaseHandler):
    def get(self) -> None:
        try:
            indices = self.authorize(self.state.table.parse_list(self.query("symbols")))
        except BadRequest as e:
            return self.refuse(e)
        self.write_json(self.state.hub.snapshot(indices, now_ms()).json)


class BarsHandler(BaseHandler):
    def get(self) -> None:
        try:
            r = bars_request(self.query, self.state.table)
            self.authorize(np.array([r.symbol], np.int32))
        except BadRequest as e:
            return self.refuse(e)
        bars = self.state.batcher.bars[r.interval].bars(r.symbol, r.limit)
        self.write_json(codecs.dumps({
            "symbol": self.state.table.names[r.symbol], "interval": r.interval,
            "t": bars.t, "o": bars.o, "h": bars.h, "l": bars.l, "c": bars.c, "v": bars.v,
        }))


class PageHandler(tornado.web.StaticFileHandler):
    """The dashboard page and its assets, with a CSP that allows only the page's own code."""

    def get_content_type(self) -> str:
        """Module scripts must be served as JavaScript, and ``.mjs`` is not in every
        ``mimetypes`` table."""
        if (self.absolute_path or "").endswith((".js", ".mjs")):
            return "text/javascript; charset=utf-8"
        return super().get_content_type()

    def set_default_headers(self) -> None:
        self.set_header("Content-Security-Policy", CONTENT_SECURITY_POLICY)
        self.set_header("X-Content-Type-Options", "nosniff")
        self.set_header("Referrer-Policy", "no-referrer")

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        self.set_header("Content-Type", "application/json")
        self.finish(codecs.dumps({"type": "error", "code": "not_found", "message": self._reason}))
