"""What every streaming connection is, whatever its transport: admitted in the same steps,
fed by the hub through its outlet, and kept by the server's housekeeping.

Admission, in order: the page's origin → its token → the request → the symbols the token
allows → a server going away → an overloaded server → the connection caps. The token comes
before the request is judged, so that a stranger learns nothing from a 400. A stream
answers every refusal with an HTTP status; a WebSocket answers the origin and the request
before it upgrades and the rest with a close code after, since a browser cannot read the
status of a failed upgrade.
"""

from __future__ import annotations

import abc
import dataclasses
from collections.abc import Callable
from dataclasses import dataclass

from dashboard.core.params import StreamRequest, stream_request
from dashboard.errors import BadRequest, Forbidden, SymbolNotAllowed, Unauthorized
from dashboard.transports.base import BaseHandler
from dashboard.transports.outlet import Outlet

# RFC 6455 §7.4.1 and the IANA registry.
CLOSE_GOING_AWAY = 1001
CLOSE_POLICY = 1008
CLOSE_TRY_AGAIN_LATER = 1013
#: What a client refused for now (going away, full) is told to wait before trying again.
RETRY_AFTER_S = 5


@dataclass(frozen=True)
class Refusal:
    """Why a connection is not admitted, as an HTTP answer and as a WebSocket close."""

    error: BadRequest
    status: int
    close_code: int
    close_reason: str

    @classmethod
    def of(cls, error: BadRequest, status: int, close_code: int) -> Refusal:
        return cls(error, status, close_code, error.message)

    @property
    def retry(self) -> bool:
        """Refused for now, not for what it asked (503: going away, full)."""
        return self.status == 503


class Connection(Outlet, BaseHandler):
    """A streaming connection. Its transport implements the outlet's hooks and these."""

    @abc.abstractmethod
    def keepalive(self, now: float) -> None:
        """Called every housekeeping round (``server.HOUSEKEEPING_S``, twice a second):
        write a keepalive, or ping, if idle long enough."""

    @abc.abstractmethod
    def shutdown(self) -> None:
        """The server is going away: close (WebSocket 1001) or end the stream."""

    @abc.abstractmethod
    def abort(self) -> None:
        """Tear the connection down now, without waiting for the peer."""

    def peer(self) -> str:
        return self.request.remote_ip or "?"

    def answer(self, refusal: Refusal) -> None:
        """The refusal as an HTTP answer: the contract's JSON error body."""
        if refusal.retry:
            self.set_header("Retry-After", str(RETRY_AFTER_S))
        self.refuse(refusal.error, refusal.status)

    def requested(self, since: Callable[[], str | None],
                  allow_encoding: bool) -> StreamRequest | Refusal:
        """The first steps, from the request alone: its origin, its token, then its query,
        ``since`` (where the client resumes from, as it said it) included."""
        origin = self.cross_origin_refusal()
        if origin is not None:
            return Refusal.of(Forbidden(origin), 403, CLOSE_POLICY)
        try:
            self.verify()
        except Unauthorized as e:
            return _auth_refusal(e, 401)
        try:
            return stream_request(
                self.query, self.state.table, since=since(), allow_encoding=allow_encoding
            )
        except BadRequest as e:
            return Refusal.of(e, 400, CLOSE_POLICY)

    def admitted(self, request: StreamRequest) -> StreamRequest | Refusal:
        """The last steps: the symbols the token allows (the request's become those), a
        server going away, the caps. Admitted, the connection counts in ``state.clients``
        until ``state.disconnected``."""
        try:
            request = dataclasses.replace(request, symbols=self.permit(request.symbols))
        except SymbolNotAllowed as e:
            return _auth_refusal(e, 403)
        if self.state.stopping:
            return Refusal.of(BadRequest("server going away"), 503, CLOSE_GOING_AWAY)
        if self.state.overload.overloaded:
            self.state.metrics.rate_limit_rejections.labels("overloaded").inc()
            return Refusal.of(BadRequest("server overloaded"), 503, CLOSE_TRY_AGAIN_LATER)
        refused = self.state.admit(self, self.request.remote_ip or "")
        if refused is not None:
            full = BadRequest(f"server full ({refused})")
            return Refusal.of(full, 503, CLOSE_TRY_AGAIN_LATER)
        return request


def _auth_refusal(error: Unauthorized | SymbolNotAllowed, status: int) -> Refusal:
    """A WebSocket's close reason names the error's code, as the JSON body does."""
    return Refusal(error, status, CLOSE_POLICY, f"{error.code}: {error.message}")
