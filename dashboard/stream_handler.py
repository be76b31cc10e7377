"""``GET /sse`` (Server-Sent Events) and ``GET /stream`` (newline-delimited JSON): one-way
HTTP streams of the same contract messages, thin adapters between the hub and a response.

Tornado traps handled here: two ``flush()`` calls without awaiting orphan the first future,
so at most one flush is in flight and bytes that arrive meanwhile wait in the handler's
buffer for the next; a client that drops is noticed by ``on_connection_close``, which ends
the request coroutine so its ``finally`` cleans up.
"""

from __future__ import annotations

import asyncio
import logging

import tornado.http1connection
import tornado.iostream

from dashboard import sse
from dashboard.content_encoding import StreamCompressor, negotiate
from dashboard.errors import BadRequest
from dashboard.http_api import BaseHandler
from dashboard.messages import heartbeat_message
from dashboard.params import StreamRequest, stream_request
from dashboard.payload import Form, Payload
from dashboard.state import now_ms

log = logging.getLogger(__name__)


class _StreamHandler(BaseHandler):
    transport: str
    form: Form
    content_type: str

    _compressor: StreamCompressor | None = None
    _flushing = False
    _pending = False
    _ended = False
    _last_write = 0.0
    _done: asyncio.Event | None = None

    def since(self) -> str | None:
        raise NotImplementedError

    def opening(self) -> bytes:
        """Bytes that start the stream, before any message."""
        return b""

    def idle_bytes(self, now: float) -> bytes:
        raise NotImplementedError

    async def get(self) -> None:
        try:
            request: StreamRequest = stream_request(
                self.query, self.state.table, since=self.since(), allow_encoding=False
            )
        except BadRequest as e:
            return self.refuse(e)
        if self.state.stopping:
            return self.refuse(BadRequest("server going away"), 503)
        done = self._done = asyncio.Event()
        self._compressor = negotiate(self.request.headers.get("Accept-Encoding"))
        self.set_header("Content-Type", self.content_type)
        self.set_header("Cache-Control", "no-store")
        self.set_header("X-Accel-Buffering", "no")
        self.set_header("Vary", "Accept-Encoding")
        if self._compressor is not None:
            self.set_header("Content-Encoding", self._compressor.name)
        self.state.connected(self)
        try:
            self.deliver(self.opening())
            self.state.hub.join(self, self.form, request.symbols, request.since, now_ms())
            await done.wait()
        finally:
            self.state.hub.leave(self)
            self.state.disconnected(self)
        self._end()

    # -- hub → client -----------------------------------------------------------------------

    def deliver(self, data: bytes) -> int:
        if self._ended or self._iostream().closed():
            return 0
        if self._compressor is not None:
            data = self._compressor.chunk(data)
        self.write(data)
        self._last_write = now_ms()
        self._pending = True
        if not self._flushing:
            self._flush()
        return len(data)

    def _flush(self) -> None:
        self._flushing = True
        self._pending = False
        self.flush().add_done_callback(self._flushed)

    def _flushed(self, future: asyncio.Future[None]) -> None:
        self._flushing = False
        if future.cancelled() or future.exception() is not None:
            self.shutdown()
        elif self._pending and not self._ended:
            self._flush()

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
            data = self.idle_bytes(now)
            self.state.metrics.bytes_sent.labels(self.transport).inc(self.deliver(data))

    def shutdown(self) -> None:
        if self._done is not None:
            self._done.set()

    def abort(self) -> None:
        self._iostream().close()


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


class NDJSONHandler(_StreamHandler):
    """``GET /stream?symbols=A,B&max_hz=N&since=SEQ``: one JSON message per line."""

    transport = "stream"
    form = Form.NDJSON
    content_type = "application/x-ndjson"

    def since(self) -> str | None:
        return self.query("since")

    def idle_bytes(self, now: float) -> bytes:
        return Payload(heartbeat_message(now)).form(Form.NDJSON)
