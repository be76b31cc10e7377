"""The request handling every handler shares: errors as the contract's JSON body, the
cross-site check, the token, and log lines that never carry it."""

from __future__ import annotations

import time
import urllib.parse
from types import TracebackType
from typing import Any

import tornado.httputil
import tornado.web
from tornado.log import app_log, gen_log

from dashboard.core import auth
from dashboard.core.client_address import Network, client_address
from dashboard.core.symbols import IndexArray
from dashboard.errors import BadRequest, SymbolNotAllowed, Unauthorized
from dashboard.state import ServerState
from dashboard.transports.access_log import summary
from dashboard.wire import codecs


def resolve_client(request: tornado.httputil.HTTPServerRequest,
                   trusted: tuple[Network, ...]) -> None:
    """Behind a trusted proxy, the request's ``remote_ip`` becomes the client's own (see
    :mod:`dashboard.core.client_address`): the caps, the logs and everything else read it."""
    if trusted:
        headers = request.headers
        request.remote_ip = client_address(
            request.remote_ip or "", headers.get_list("X-Forwarded-For"),
            headers.get_list("Forwarded"), trusted,
        )


class BaseHandler(tornado.web.RequestHandler):
    """Errors as the contract's JSON body, never a traceback or an HTML page."""

    #: What the request's token allows, once :meth:`authorize` has verified it.
    grant = auth.EVERYONE

    def initialize(self, state: ServerState) -> None:
        self.state = state

    def prepare(self) -> None:
        resolve_client(self.request, self.state.config.trusted_proxies)

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
