"""``GET /sse`` (Server-Sent Events) and ``GET /stream`` (newline-delimited JSON): one-way
HTTP streams of the same contract messages, thin adapters between the hub and a response.

Tornado traps handled here: two ``flush()`` calls without awaiting orphan the first future,
so at most one flush is in flight and bytes that arrive meanwhile wait in the handler's
buffer for the next; a client that drops is noticed by ``on_connection_close``, which ends
the request coroutine so its ``finally`` cleans up.
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
from dashboard.transports.connection import Connection, Refusal
from dashboard.wire import sse
from dashboard.wire.content_encoding import StreamCompressor, negotiate

log = logging.getLogger(__name__)

class _StreamHandler(Connection):
    transport: str
    form: Form
    content_type: str

    _compressor: StreamCompressor | None = None
    _ended = False
    _last_write = 0.0
    _done: asyncio.Event | None = None
    #: The flush in flight, and the future of bytes written while it was.
    _flushing: Future[None] | None = None
    _waiting: Future[None] | None = None

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
        request = self.requested(self.since(), allow_encoding=False)
        if not isinstance(request, Refusal):
            request = self.admitted(request)
        if isinstance(request, Refusal):
            return self.answer(request)
        self._detect_dead_peer()
        self._iostream().set_nodelay(True)  # each event leaves at once, as the contract says
        done = self._done = asyncio.Event()
        self._compressor = negotiate(self.request.headers.get("Accept-Encoding"))
        self.set_header("Content-Type", self.content_type)
        self.set_header("Cache-Control", "no-store")
        self.set_header("X-Accel-Buffering", "no")
        self.set_header("Vary", "Accept-Encoding")
        if self._compressor is not None:
            self.set_header("Content-Encoding", self._compressor.name)
        try:
            self.open_outbox(self.state.config.pace(request.max_hz), self.form)
            if opening := self.opening():
                self.deliver(opening)
            self.state.hub.join(self, self.form, request.symbols, request.since, now_ms())
            await done.wait()
        finally:
            self.close_outlet()
            self.state.hub.leave(self)
            self.state.disconnected(self)
        self._end()

    def _detect_dead_peer(self) -> None:
        """A stream has no pings; a peer that vanished (no FIN, no RST) is noticed by the
        kernel when the next keepalive stays unacknowledged past the ping timeout."""
        timeout_ms = int(self.state.config.ping_timeout_s * 1000)
        if timeout_ms and hasattr(socket, "TCP_USER_TIMEOUT"):
            sock = self._iostream().socket
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT, timeout_ms)

    # -- hub → client -----------------------------------------------------------------------

    def _write_bytes(self, data: bytes) -> Future[None] | bool | None:
        if self._ended or self._iostream().closed():
            return None
        if self._compressor is not None:
            data = self._compressor.chunk(data)
        self.write(data)
        self._last_write = now_ms()
        if self._flushing is None:
            return self._flush()
        if self._waiting is None:
            self._waiting = asyncio.get_running_loop().create_future()
        return self._waiting

    def _flush(self) -> Future[None]:
        flushed = self.flush()
        if not flushed.done():
            self._flushing = flushed
            flushed.add_done_callback(self._flushed)
        return flushed

    def _flushed(self, future: Future[None]) -> None:
        """The flush in flight is done: flush what was written meanwhile, and resolve its
        future when that is taken too."""
        self._flushing = None
        if not future.cancelled() and future.exception() is not None:
            self.shutdown()
        waiting, self._waiting = self._waiting, None
        if waiting is None:
            return
        if self._ended:
            waiting.cancel()
            return
        nxt = self._flush()
        if nxt.done():
            waiting.set_result(None)
        else:
            nxt.add_done_callback(lambda _: _resolve(waiting))

    def _drop_slow(self) -> None:
        self.abort()

    def _end(self) -> None:
        """Finish the response: the compressor's last bytes, then the terminating chunk."""
        if self._ended:
            return
        self._ended = True
        if self._iostream().closed():
            return
        if self._compressor is not None:
            self.write(self._compressor.finish())
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
            self.deliver(self.idle_bytes(now))

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
    form = Form.SSE
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
    form = Form.NDJSON
    content_type = "application/x-ndjson"

    def since(self) -> str | None:
        return self.query("since")

    def idle_bytes(self, now: float) -> bytes:
        return Payload(heartbeat_message(now)).form(Form.NDJSON)


def _resolve(future: Future[None]) -> None:
    if not future.done():
        future.set_result(None)
