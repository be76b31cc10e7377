"""``GET /ws``: the WebSocket transport, a thin adapter between a socket and the hub.

Frames are built once per batch by the hub (see :mod:`dashboard.wsframe`) and written here as
they are, straight to the connection's stream: no per-client framing, masking or encoding.
Tornado still owns the handshake, the reading side, pings and the closing handshake.
"""

from __future__ import annotations

import logging
from asyncio import Future
from typing import Any

import tornado.iostream
import tornado.websocket

from dashboard.errors import BadRequest
from dashboard.http_api import BaseHandler
from dashboard.messages import error_message, pong_message
from dashboard.params import Ping, StreamRequest, apply_op, client_op, stream_request
from dashboard.payload import Form, Payload
from dashboard.state import now_ms

log = logging.getLogger(__name__)

CLOSE_GOING_AWAY = 1001
CLOSE_UNSUPPORTED = 1003


class WebSocketHandler(tornado.websocket.WebSocketHandler, BaseHandler):
    transport = "ws"

    _request: StreamRequest
    _form: Form
    _stream: tornado.iostream.IOStream | None = None
    #: True from open() until the close handshake starts: no data frame may follow a close.
    _live = False

    async def get(self, *args: Any, **kwargs: Any) -> None:
        """Validate the query before upgrading: a bad one gets a 400 and a JSON body."""
        try:
            self._request = stream_request(
                self.query, self.state.table, since=self.query("since"), allow_encoding=True
            )
        except BadRequest as e:
            return self.refuse(e)
        self._form = Form.websocket(self._request.encoding)
        await super().get(*args, **kwargs)

    def get_compression_options(self) -> None:
        """No permessage-deflate: compression is done once per batch, not per connection."""
        return None

    def open(self, *args: str, **kwargs: str) -> None:
        assert self.ws_connection is not None
        self._stream = self.ws_connection.stream
        self._live = True
        self.state.connected(self)
        if self.state.stopping:
            self.close(CLOSE_GOING_AWAY, "server going away")
            return
        r = self._request
        self.state.hub.join(self, self._form, r.symbols, r.since, now_ms())

    # -- hub → client -----------------------------------------------------------------------

    def deliver(self, data: bytes) -> int:
        stream = self._stream
        if not self._live or stream is None or stream.closed():
            return 0
        try:
            written: Future[None] = stream.write(data)
        except tornado.iostream.StreamClosedError:
            return 0
        written.add_done_callback(_retrieve)
        return len(data)

    def _reply(self, payload: Payload) -> None:
        self.state.hub.send(self, self._form, payload)

    # -- client → hub -----------------------------------------------------------------------

    def on_message(self, message: str | bytes) -> None:
        if isinstance(message, bytes):
            self.close(CLOSE_UNSUPPORTED, "binary messages are not accepted")
            return
        hub = self.state.hub
        try:
            op = client_op(message, self.state.table)
            if isinstance(op, Ping):
                self._reply(Payload(pong_message(op.id, now_ms())))
                return
            current = hub.selection_of(self).indices
            hub.resubscribe(self, apply_op(current, op), now_ms())
        except BadRequest as e:
            self.state.metrics.client_errors.labels(e.code).inc()
            self._reply(Payload(error_message(e.code, e.message)))

    def close(self, code: int | None = None, reason: str | None = None) -> None:
        self._live = False
        super().close(code, reason)

    def on_close(self) -> None:
        self._live = False
        self.state.hub.leave(self)
        self.state.disconnected(self)

    # -- housekeeping -----------------------------------------------------------------------

    def keepalive(self, now: float) -> None:
        """WebSocket liveness is Tornado's protocol ping (``websocket_ping_interval``)."""

    def shutdown(self) -> None:
        self.close(CLOSE_GOING_AWAY, "server going away")

    def abort(self) -> None:
        if self._stream is not None:
            self._stream.close()


def _retrieve(future: Future[None]) -> None:
    """A write to a client that went away fails; that is handled by ``on_close``, and the
    exception is retrieved so it is not logged as never retrieved."""
    if not future.cancelled():
        future.exception()

