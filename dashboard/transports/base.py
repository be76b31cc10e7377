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
from dashboard.errors import BadRequest, Forbidden, SymbolNotAllowed, Unauthorized
from dashboard.state import ServerState
from dashboard.transports.access_log import summary
from dashboard.wire import codecs

#: How long a browser may keep a preflight's answer.
PREFLIGHT_MAX_AGE_S = 600


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

    #: The listed origin of another site this request comes from: its answers carry CORS.
    _cors_origin: str | None = None

    def prepare(self) -> None:
        resolve_client(self.request, self.state.config.trusted_proxies)
        origin = self.request.headers.get("Origin")
        if origin and self.origin_allowed(origin):
            self._cors_origin = origin
            self.set_default_headers()

    def set_default_headers(self) -> None:
        """Also after an error clears the headers: a listed site's page reads its 401."""
        self.set_header("X-Content-Type-Options", "nosniff")
        self.set_header("Referrer-Policy", "no-referrer")
        if self._cors_origin is not None:
            self.set_header("Access-Control-Allow-Origin", self._cors_origin)
            self.set_header("Access-Control-Expose-Headers", "WWW-Authenticate, Retry-After")
            self.set_header("Vary", "Origin")

    def options(self, *args: str) -> None:
        """A CORS preflight (the Fetch standard's): a listed site's page may ``fetch`` with
        ``Authorization`` (and ``Last-Event-ID``, resuming); any other site's is refused
        with 403 and the JSON error, which its browser takes as a no."""
        origin = self.request.headers.get("Origin")
        if origin and self._cors_origin is None and self.cross_origin_refusal() is not None:
            return self.refuse(Forbidden(f"origin {origin[:100]!r} is not allowed"), 403)
        self.set_header("Allow", "GET, OPTIONS")
        if self._cors_origin is not None:
            self.set_header("Access-Control-Allow-Methods", "GET")
            self.set_header("Access-Control-Allow-Headers",
                            "Authorization, Last-Event-ID, Cache-Control")
            self.set_header("Access-Control-Max-Age", str(PREFLIGHT_MAX_AGE_S))
        self.set_status(204)
        self.finish()

    def cross_origin_refusal(self) -> str | None:
        """Why a browser request from another site may not stream from here, or None.

        Same-origin requests (by ``Sec-Fetch-Site``, or an ``Origin`` matching ``Host``),
        requests without ``Origin`` (not from a browser page), and ``--allowed-origins``
        pass; any other page would be a cross-site hijack of the user's session.
        """
        origin = self.request.headers.get("Origin")
        if self.request.headers.get("Sec-Fetch-Site") in ("same-origin", "none") or not origin:
            return None
        if self._cors_origin is not None:  # listed: its answers carry CORS (see prepare)
            return None
        if urllib.parse.urlsplit(origin).netloc.lower() == self.request.host.lower():
            return None
        return f"origin {origin[:100]!r} is not allowed"

    def origin_allowed(self, origin: str) -> bool:
        return origin.rstrip("/").lower() in self.state.config.allowed_origins

    def verify(self) -> None:
        """Verify the request's token (with auth on) before anything else it says is judged,
        so that a stranger learns nothing from a 400, such as which symbols exist.
        Raises :class:`Unauthorized`, counted; with auth off, everyone passes."""
        secret = self.state.config.auth_token_secret
        if secret is not None:
            query_token = auth.query_token(self.request.query_arguments.get("token", []))
            token = auth.bearer(self.request.headers.get("Authorization"), query_token)
            try:
                self.grant = auth.verify(secret, token, time.time())
            except Unauthorized as e:
                self.state.metrics.auth_rejections.labels(e.reason).inc()
                raise

    def permit(self, indices: IndexArray | None) -> IndexArray | None:
        """``indices`` (None: all) limited to what the verified token allows (see
        :func:`auth.scope`). Raises :class:`SymbolNotAllowed`, counted."""
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
