"""``GET /ws``: the WebSocket transport, a thin adapter between a socket and the hub.

Frames are built once per batch by the hub (see :mod:`dashboard.wire.wsframe`) and written here as
they are, straight to the connection's stream: no per-client framing, masking or encoding.
Tornado still owns the handshake, the reading side and the closing handshake; pings are
sent from the server's housekeeping so that a dead peer is aborted at once, not after
Tornado's 5 s wait for a close frame it will never get.
"""

from __future__ import annotations

import logging
from asyncio import Future
from typing import Any, final

import tornado.httputil
import tornado.iostream
import tornado.websocket

from dashboard.clock import now_ms
from dashboard.core.limits import TokenBucket
from dashboard.core.messages import error_message, pong_message
from dashboard.core.params import (
    Ping,
    StreamRequest,
    Subscribe,
    apply_op,
    client_op,
)
from dashboard.core.payload import Form, Payload
from dashboard.errors import BadRequest, SymbolNotAllowed, Unauthorized
from dashboard.transports.connection import (
    CLOSE_GOING_AWAY,
    CLOSE_POLICY,
    CLOSE_TRY_AGAIN_LATER,
    Connection,
    Refusal,
)
from dashboard.transports.socket_writer import SocketWriter

log = logging.getLogger(__name__)

#: RFC 6455 §5.5: "All control frames MUST have a payload length of 125 bytes or less",
#: two of which are the close code.
MAX_CLOSE_REASON_BYTES = 123


#: The protocol versions Tornado speaks: RFC 6455 (13) and two of its drafts.
VERSIONS = ("7", "8", "13")


def handshake_refusal(headers: tornado.httputil.HTTPHeaders) -> tuple[int, str] | None:
    """Why a request is no WebSocket opening handshake, and the status to refuse it with;
    None when it is one. Tornado makes the same checks but answers in plain text, so ours
    come first and every refusal carries the contract's JSON error body.

    RFC 6455 §4.2.1: the handshake has "a |Host| header field", "an |Upgrade| header field
    containing the value "websocket"", "a |Connection| header field that includes the token
    "Upgrade"", "a |Sec-WebSocket-Key| header field" and "a |Sec-WebSocket-Version| header
    field"; §4.2.2: for a version it does not understand the server sends "an appropriate
    HTTP error code (such as 426 Upgrade Required) and a |Sec-WebSocket-Version| header
    field indicating the version(s) the server is capable of understanding".
    """
    connection = {token.strip().lower() for token in headers.get("Connection", "").split(",")}
    if headers.get("Upgrade", "").lower() != "websocket" or "upgrade" not in connection:
        return 400, "/ws takes a WebSocket handshake (Upgrade: websocket, Connection: Upgrade)"
    if headers.get("Sec-WebSocket-Version") not in VERSIONS:
        return 426, f"Sec-WebSocket-Version must be one of {', '.join(VERSIONS)}"
    if not headers.get("Host") or not headers.get("Sec-WebSocket-Key"):
        return 400, "a WebSocket handshake needs Host and Sec-WebSocket-Key headers"
    return None


@final
class WebSocketHandler(Connection, tornado.websocket.WebSocketHandler):
    transport = "ws"

    #: What :meth:`get` judged: a request, or why its token is refused after the upgrade.
    _request: StreamRequest | Refusal
    _inbound: TokenBucket
    _stream: tornado.iostream.IOStream | None = None
    _writer: SocketWriter
    #: True from open() until the close handshake starts: no data frame may follow a close.
    _live = False
    _admitted = False
    _ping_sent_at: float | None = None
    _last_ping_at = 0.0

    async def get(self, *args: Any, **kwargs: Any) -> None:
        """Refuse before upgrading what a browser may be told by status: a page of another
        site a 403 (cross-site WebSocket hijacking), a bad query a 400 with a JSON body, a
        request that is no WebSocket handshake a 400 or 426 (or a 401 without a valid
        token). A handshake without a valid token is upgraded and closed with 1008 and the
        reason, which a browser can read, and its query is never judged."""
        request = self.requested(lambda: self.query("since"), allow_encoding=True)
        handshake = handshake_refusal(self.request.headers)
        if isinstance(request, Refusal) and (request.status != 401 or handshake is not None):
            return self.answer(request)
        if handshake is not None:
            status, message = handshake
            if status == 426:
                self.set_header("Sec-WebSocket-Version", ", ".join(VERSIONS))
            return self.refuse(BadRequest(message), status)
        self._request = request
        await super().get(*args, **kwargs)

    def check_origin(self, origin: str) -> bool:
        """Tornado's own check, after ours: a listed origin is allowed."""
        return self.origin_allowed(origin)

    def get_compression_options(self) -> None:
        """No permessage-deflate: compression is done once per batch, not per connection."""
        return None

    def open(self, *args: str, **kwargs: str) -> None:
        assert self.ws_connection is not None
        stream = self.ws_connection.stream
        assert stream is not None
        self._stream = stream
        # Nagle's algorithm would hold a small frame until the peer acknowledges the one
        # before, and a client that has just sent a message delays that ack by up to 40 ms
        # (measured here: an error reply's pong came 44 ms late).
        stream.set_nodelay(True)
        self._writer = SocketWriter(stream, self.abort)
        request = self._request
        admitted = request if isinstance(request, Refusal) else self.admitted(request)
        if isinstance(admitted, Refusal):
            if isinstance(admitted.error, Unauthorized | SymbolNotAllowed):
                self.state.metrics.client_errors.labels(admitted.error.code).inc()
            self.close(admitted.close_code, admitted.close_reason)
            return
        self._admitted = True
        self._live = True
        c, r = self.state.config, admitted
        self.open_outbox(c.pace(r.max_hz), Form.websocket(r.encoding))
        rate = c.max_client_msgs_per_s
        self._inbound = TokenBucket(rate, 2 * rate, self._loop.time())
        self._last_ping_at = self._loop.time()
        self.state.hub.join(self, self.outbox.form, r.symbols, r.since, now_ms())

    # -- hub → client -----------------------------------------------------------------------

    def _write_bytes(self, data: bytes) -> Future[None] | bool | None:
        if not self._live:
            return None
        return self._writer.write(data)

    def _direct(self) -> SocketWriter | None:
        """The hub's frames are written as they are."""
        return self._writer if self._live else None

    def _stop_writing(self) -> None:
        """No data frame may follow: the close handshake started, or the socket is gone."""
        self._live = False
        self._fast = None

    def _drop_slow(self) -> None:
        """Close with 1013 (the client may never read it) and abort the socket now."""
        self.close(CLOSE_TRY_AGAIN_LATER, "slow consumer")
        self.abort()

    def _reply(self, payload: Payload) -> None:
        self.deliver(payload.form(self.outbox.form))

    # -- client → hub -----------------------------------------------------------------------

    def on_message(self, message: str | bytes) -> None:
        if not self._live:
            return
        if not self._inbound.take(self._loop.time()):
            self.state.metrics.rate_limit_rejections.labels("client_msgs").inc()
            self.close(CLOSE_POLICY, "rate limit: too many messages")
            return
        hub = self.state.hub
        try:
            if isinstance(message, bytes):
                raise BadRequest("client messages are JSON text frames, not binary")
            op = client_op(message, self.state.table)
            if isinstance(op, Ping):
                self._reply(Payload(pong_message(op.id, now_ms())))
                return
            if isinstance(op, Subscribe):
                self.permit(op.symbols)
            current = hub.selection_of(self).indices
            hub.resubscribe(self, apply_op(current, op), now_ms())
        except BadRequest as e:
            self.state.metrics.client_errors.labels(e.code).inc()
            self._reply(Payload(error_message(e.code, e.message)))
        except Exception:
            log.exception("client message from %s failed", self.peer())
            self.state.metrics.client_errors.labels("internal_error").inc()
            self._reply(Payload(error_message("internal_error", "the message could not be "
                                              "handled; the connection goes on")))

    def on_pong(self, data: bytes) -> None:
        self._ping_sent_at = None

    def close(self, code: int | None = None, reason: str | None = None) -> None:
        self._stop_writing()
        if reason is not None:  # cut at a character boundary
            reason = reason.encode()[:MAX_CLOSE_REASON_BYTES].decode(errors="ignore")
        super().close(code, reason)

    def on_close(self) -> None:
        self._stop_writing()
        if self._admitted:
            self.close_outlet()
            self.state.hub.leave(self)
            self.state.disconnected(self)

    # -- housekeeping -----------------------------------------------------------------------

    def keepalive(self, now: float) -> None:
        """Ping every interval; a peer that has not answered within the timeout is dead."""
        c = self.state.config
        closing = self.ws_connection is None or self.ws_connection.is_closing()
        if not self._live or closing or not c.ping_interval_s:
            return
        t = self._loop.time()
        if self._ping_sent_at is not None:
            if t - self._ping_sent_at >= c.ping_timeout_s:
                self.state.metrics.dead_peers.labels(self.transport).inc()
                log.info("ws client %s did not answer a ping; aborted", self.peer())
                self.abort()
        elif t - self._last_ping_at >= c.ping_interval_s:
            self._ping_sent_at = self._last_ping_at = t
            self.ping()

    def shutdown(self) -> None:
        self.close(CLOSE_GOING_AWAY, "server going away")

    def abort(self) -> None:
        self._stop_writing()
        if self._stream is not None:
            self._stream.close()
