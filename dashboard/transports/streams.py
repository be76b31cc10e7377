"""``GET /sse`` (Server-Sent Events) and ``GET /stream`` (newline-delimited JSON): one-way
HTTP streams of the same contract messages, thin adapters between the hub and a response.

The response's content coding is negotiated once (see :mod:`dashboard.wire.content_encoding`):
in zstd, deflate and gzip the hub's bytes are already coded for every client alike, and the
handler only counts what a deflate or gzip trailer needs. Once Tornado has written the
headers, each write goes past it, chunked here and handed straight to the socket while
nothing waits in the stream's buffer — as a WebSocket frame is, with no Future per client
per event. A client that drops is noticed by ``on_connection_close``, which ends the request
coroutine so its ``finally`` cleans up.
"""

from __future__ import annotations

import abc
import asyncio
import logging
import socket
from asyncio import Future
from typing import final

import tornado.http1connection
import tornado.iostream

from dashboard.clock import now_ms
from dashboard.core.messages import heartbeat_message
from dashboard.core.payload import Form, Payload
from dashboard.errors import BadRequest
from dashboard.transports.connection import Connection, Refusal
from dashboard.transports.socket_writer import SocketWriter
from dashboard.wire import sse
from dashboard.wire.chunked import LastChunk
from dashboard.wire.content_encoding import PREFERENCE, StreamCoder, coder, negotiate

log = logging.getLogger(__name__)

#: The chunk of the bytes framed last, shared by every stream of this process.
_LAST_CHUNK = LastChunk()
NOT_ACCEPTABLE = "no content coding this stream offers is acceptable: it offers " + ", ".join(
    c.value for c in PREFERENCE
)


class _StreamHandler(Connection):
    transport: str
    #: The plain form of this transport's messages; a response takes it in its coding.
    plain: Form
    content_type: str

    _coder: StreamCoder
    _writer: SocketWriter
    _chunked = True
    _ended = False
    _last_write = 0.0
    _done: asyncio.Event | None = None

    @abc.abstractmethod
    def since(self) -> str | None:
        """Where the client resumes from, as it said it."""

    def opening(self) -> bytes:
        """Bytes that start the stream, before any message."""
        return b""

    @abc.abstractmethod
    def idle_bytes(self, now: float) -> bytes:
        """What keeps an idle stream open: a comment, a heartbeat message."""

    async def get(self) -> None:
        request = self.requested(self.since, allow_encoding=False)
        coding = negotiate(self.request.headers.get("Accept-Encoding"))
        if not isinstance(request, Refusal) and coding is None:
            request = Refusal.of(BadRequest(NOT_ACCEPTABLE), 406, 0)
        if not isinstance(request, Refusal):
            request = self.admitted(request)
        if isinstance(request, Refusal):
            return self.answer(request)
        assert coding is not None
        self._detect_dead_peer()
        stream = self._iostream()
        stream.set_nodelay(True)  # each event leaves at once, as the contract says
        done = self._done = asyncio.Event()
        self._coder = coder(coding)
        self.set_header("Content-Type", self.content_type)
        self.set_header("Cache-Control", "no-store")
        self.set_header("X-Accel-Buffering", "no")
        self.set_header("Vary", "Accept-Encoding")
        if self._coder.coding.value != "identity":
            self.set_header("Content-Encoding", self._coder.coding.value)
        try:
            self._write_head(stream)
            form = self.plain.coded(coding)
            self.open_outbox(self.state.config.pace(request.max_hz), form)
            if start := self._coder.start():
                self._put(start)
            if opening := self.opening():
                self.deliver(self._coder.own(opening))
            self.state.hub.join(self, form, request.symbols, request.since, now_ms())
            await done.wait()
        finally:
            self.close_outlet()
            self.state.hub.leave(self)
            self.state.disconnected(self)
        self._end()

    def _write_head(self, stream: tornado.iostream.IOStream) -> None:
        """Tornado writes the status line and headers, and decides the body's framing:
        chunked for HTTP/1.1, the bytes as they are (ended by closing) for HTTP/1.0."""
        self.flush().add_done_callback(_retrieved)
        connection = self.request.connection
        self._chunked = getattr(connection, "_chunking_output", self.request.version == "HTTP/1.1")
        self._writer = SocketWriter(stream, self.abort)

    def _detect_dead_peer(self) -> None:
        """A stream has no pings; a peer that vanished (no FIN, no RST) is noticed by the
        kernel when the next keepalive stays unacknowledged past the ping timeout."""
        timeout_ms = int(self.state.config.ping_timeout_s * 1000)
        if timeout_ms and hasattr(socket, "TCP_USER_TIMEOUT"):
            sock = self._iostream().socket
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT, timeout_ms)

    # -- hub → client -----------------------------------------------------------------------

    def _write_bytes(self, data: bytes) -> Future[None] | bool | None:
        if self._ended:
            return None
        return self._put(self._coder.write(data))

    def _put(self, data: bytes) -> Future[None] | bool | None:
        """``data`` on the wire as it is (coded already), in the response's framing."""
        self._last_write = now_ms()
        return self._writer.write(_LAST_CHUNK.of(data) if self._chunked else data)

    def _drop_slow(self) -> None:
        self.abort()

    def _end(self) -> None:
        """Finish the response: the coding's last bytes, then Tornado's terminating chunk."""
        if self._ended:
            return
        self._ended = True
        if self._iostream().closed():
            return
        if end := self._coder.finish():
            self._put(end)
        try:
            self.finish()
        except tornado.iostream.StreamClosedError:
            pass

    def _iostream(self) -> tornado.iostream.IOStream:
        connection = self.request.connection
        assert isinstance(connection, tornado.http1connection.HTTP1Connection)
        return connection.stream

    def on_connection_close(self) -> None:
        self._ended = True
        self.shutdown()

    # -- housekeeping -----------------------------------------------------------------------

    def keepalive(self, now: float) -> None:
        if now - self._last_write >= self.state.config.keepalive_s * 1000:
            self.deliver(self._coder.own(self.idle_bytes(now)))

    def shutdown(self) -> None:
        if self._done is not None:
            self._done.set()

    def abort(self) -> None:
        self._ended = True
        self._iostream().close()
        self.shutdown()


@final
class SSEHandler(_StreamHandler):
    """``GET /sse?symbols=A,B&max_hz=N``; resume with ``Last-Event-ID`` or ``last_event_id``."""

    transport = "sse"
    plain = Form.SSE
    content_type = "text/event-stream; charset=utf-8"

    def since(self) -> str | None:
        return self.request.headers.get("Last-Event-ID") or self.query("last_event_id")

    def opening(self) -> bytes:
        return sse.retry(self.state.config.sse_retry_ms)

    def idle_bytes(self, now: float) -> bytes:
        return sse.comment("keepalive")


@final
class NDJSONHandler(_StreamHandler):
    """``GET /stream?symbols=A,B&max_hz=N&since=SEQ``: one JSON message per line."""

    transport = "stream"
    plain = Form.NDJSON
    content_type = "application/x-ndjson"

    def since(self) -> str | None:
        return self.query("since")

    def idle_bytes(self, now: float) -> bytes:
        return Payload(heartbeat_message(now)).form(Form.NDJSON)


def _retrieved(future: Future[None]) -> None:
    """A failed write is handled by the close path; its exception is only retrieved."""
    if not future.cancelled():
        future.exception()
