"""Plain HTTP endpoints: the page, health, metrics and the JSON API. Thin handlers."""

from __future__ import annotations

import os
from typing import Any

import numpy as np
import orjson
import tornado.web

from dashboard.clock import now_ms
from dashboard.core.client_address import Network
from dashboard.core.params import bars_request
from dashboard.errors import BadRequest
from dashboard.transports.base import BaseHandler, resolve_client
from dashboard.wire import codecs
from feeds.base import FeedState

#: The page may run only its own scripts and talk only to its own origin. Inline *styles*
#: are allowed: the chart library styles its own elements (its attribution logo) inline,
#: and a style cannot run code.
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data:; worker-src 'none'; "
    "connect-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'"
)


class HealthHandler(BaseHandler):
    def get(self) -> None:
        s = self.state
        failed = s.feed_health.state is FeedState.FAILED
        status = "stopping" if s.stopping else "degraded" if s.degraded or failed else "ok"
        self.write_json(orjson.dumps({
            "status": status,
            "role": s.config.role,
            "pid": os.getpid(),
            "feed": s.feed_name,
            "seq": s.batcher.seq,
            "symbols": len(s.table),
            "connections": len(s.clients),
            "overloaded": s.overload.overloaded,
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
            self.verify()
        except BadRequest as e:
            return self.refuse(e)
        names = [name for name in self.state.table.names if self.grant.allows(name)]
        self.write_json(orjson.dumps({"symbols": names}))


class SnapshotHandler(BaseHandler):
    def get(self) -> None:
        try:
            self.verify()
            indices = self.permit(self.state.table.parse_list(self.query("symbols")))
        except BadRequest as e:
            return self.refuse(e)
        self.write_json(self.state.hub.snapshot(indices, now_ms()).json)


class BarsHandler(BaseHandler):
    def get(self) -> None:
        try:
            self.verify()
            r = bars_request(self.query, self.state.table)
            self.permit(np.array([r.symbol], np.int32))
        except BadRequest as e:
            return self.refuse(e)
        bars = self.state.batcher.bars[r.interval].bars(r.symbol, r.limit)
        self.write_json(codecs.dumps({
            "symbol": self.state.table.names[r.symbol], "interval": r.interval,
            "t": bars.t, "o": bars.o, "h": bars.h, "l": bars.l, "c": bars.c, "v": bars.v,
        }))


class PageHandler(tornado.web.StaticFileHandler):
    """The dashboard page and its assets, with a CSP that allows only the page's own code."""

    def initialize(  # type: ignore[override]
        self, path: str, default_filename: str, trusted_proxies: tuple[Network, ...] = (),
    ) -> None:
        super().initialize(path, default_filename)
        self.trusted_proxies = trusted_proxies

    def prepare(self) -> None:
        resolve_client(self.request, self.trusted_proxies)

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
