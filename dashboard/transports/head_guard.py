"""The request head's limits, told and counted. Tornado closes a connection whose head is
over ``max_header_size`` without a word; here it gets ``431`` and the contract's JSON error
first. A head that does not end within ``head_timeout_s`` (a slow-loris client, an idle
keep-alive connection) is dropped, where Tornado would wait for its idle timeout.

Behind a proxy that speaks the PROXY protocol, each of its connections starts with a header
naming the client (read within the same timeout), which becomes the address the request
context sees.

Both hook the server's public overrides, ``handle_stream`` and ``start_request``; the 431
hooks the stream's ``close``, which Tornado calls with the ``UnsatisfiableReadError`` of the
head it could not read, before the socket is gone.
"""

from __future__ import annotations

import datetime
import sys
import typing
from collections.abc import Callable, Sequence
from typing import Any

import tornado.gen
import tornado.http1connection
import tornado.httpserver
import tornado.httputil
import tornado.ioloop
import tornado.iostream

from dashboard.core.client_address import Network, is_trusted
from dashboard.wire import codecs, proxy_protocol

#: How long a connection may take to send a complete request head, counted from the moment
#: the server waits for one: on a new connection, or after the last response.
HEAD_TIMEOUT_S = 10.0

ExcInfo = None | bool | BaseException | tuple[Any, ...]


def too_large_response(max_header_bytes: int) -> bytes:
    body = codecs.dumps({"type": "error", "code": "bad_request",
                         "message": f"request head over {max_header_bytes} bytes"})
    return (b"HTTP/1.1 431 Request Header Fields Too Large\r\n"
            b"Content-Type: application/json\r\nConnection: close\r\n"
            b"Content-Length: %d\r\n\r\n%s" % (len(body), body))


class HeadGuardedServer(tornado.httpserver.HTTPServer):
    """An ``HTTPServer`` whose request heads are bounded in size (431) and in time;
    ``on_refused(reason)`` counts each refusal: ``too_large``, ``timeout`` (a new
    connection that never completed its first head; an idle keep-alive connection is
    closed the same way, uncounted, as it is no fault) or ``proxy_protocol`` (a connection
    from one of the ``proxy_protocol_from`` proxies without a valid PROXY header)."""

    def initialize(  # type: ignore[override]
        self, *args: Any, on_refused: Callable[[str], None],
        head_timeout_s: float = HEAD_TIMEOUT_S,
        proxy_protocol_from: Sequence[Network] = (), **kwargs: Any,
    ) -> None:
        super().initialize(*args, **kwargs)
        self._watches: dict[tornado.iostream.IOStream, _HeadWatch] = {}
        self.on_refused = on_refused
        self.head_timeout_s = head_timeout_s
        self.proxy_protocol_from = tuple(proxy_protocol_from)
        self.too_large = too_large_response(self.conn_params.max_header_size)

    def handle_stream(self, stream: tornado.iostream.IOStream, address: tuple[Any, ...]) -> None:
        """A trusted proxy's connection starts with its PROXY header; anyone else's is
        plain HTTP (a monitor that scrapes /metrics directly), whose header, if it sent
        one, is not believed but refused as a bad request."""
        if self.proxy_protocol_from and isinstance(address, tuple) and is_trusted(
                str(address[0]), self.proxy_protocol_from):
            tornado.ioloop.IOLoop.current().spawn_callback(self._proxied, stream, address)
        else:
            self._serve(stream, address)

    def _serve(self, stream: tornado.iostream.IOStream, address: tuple[Any, ...]) -> None:
        self._watches[stream] = _HeadWatch(stream, self)
        super().handle_stream(stream, address)

    async def _proxied(self, stream: tornado.iostream.IOStream,
                       address: tuple[Any, ...]) -> None:
        """Served as the client its PROXY header names (the proxy itself when it names
        none); a connection without a valid header in time is closed."""
        try:
            source = await tornado.gen.with_timeout(
                datetime.timedelta(seconds=self.head_timeout_s), _proxy_header(stream))
        except (ValueError, TimeoutError, tornado.iostream.StreamClosedError):
            self.on_refused("proxy_protocol")
            stream.close()
            return
        self._serve(stream, source or address)

    def start_request(self, server_conn: object,
                      request_conn: tornado.httputil.HTTPConnection
                      ) -> tornado.httputil.HTTPMessageDelegate:
        delegate = super().start_request(server_conn, request_conn)
        watch = self._watches.get(_stream_of(server_conn))
        return delegate if watch is None else watch.awaiting(delegate)

    def on_close(self, server_conn: object) -> None:
        watch = self._watches.pop(_stream_of(server_conn), None)
        if watch is not None:
            watch.release()
        super().on_close(server_conn)


async def _proxy_header(stream: tornado.iostream.IOStream) -> proxy_protocol.Source | None:
    prefix = await stream.read_bytes(proxy_protocol.PREFIX)
    if proxy_protocol.is_v1(prefix):
        line = await stream.read_until(
            b"\r\n", max_bytes=proxy_protocol.V1_MAX_BYTES - proxy_protocol.PREFIX)
        return proxy_protocol.source_v1(prefix + line)
    fixed = prefix + await stream.read_bytes(proxy_protocol.V2_FIXED_BYTES - proxy_protocol.PREFIX)
    rest = await stream.read_bytes(proxy_protocol.v2_length(fixed))
    return proxy_protocol.source_v2(fixed, rest)


def _stream_of(server_conn: object) -> tornado.iostream.IOStream:
    return typing.cast(tornado.http1connection.HTTP1ServerConnection, server_conn).stream


class _HeadWatch:
    """One connection's wait for a complete request head."""

    def __init__(self, stream: tornado.iostream.IOStream, server: HeadGuardedServer) -> None:
        self._stream = stream
        self._server = server
        self._timer: object | None = None
        self._heads = 0  # heads completed on this connection
        self._waiting = False
        stream.close = self._close  # type: ignore[method-assign]

    def awaiting(self, delegate: tornado.httputil.HTTPMessageDelegate
                 ) -> tornado.httputil.HTTPMessageDelegate:
        self._waiting = True
        loop = tornado.ioloop.IOLoop.current()
        self._timer = loop.call_later(self._server.head_timeout_s, self._expired)
        return _HeadDelegate(delegate, self)

    def received(self) -> None:
        self._waiting = False
        self._heads += 1
        self._cancel()

    def release(self) -> None:
        """Give the stream its own ``close`` back (a WebSocket keeps the stream)."""
        self._cancel()
        vars(self._stream).pop("close", None)

    def _cancel(self) -> None:
        if self._timer is not None:
            tornado.ioloop.IOLoop.current().remove_timeout(self._timer)
            self._timer = None

    def _expired(self) -> None:
        self._timer = None
        if self._waiting and not self._stream.closed():
            if not self._heads:
                self._server.on_refused("timeout")
            self._stream.close()

    def _close(self, exc_info: ExcInfo = False) -> None:
        self._cancel()
        if self._waiting and isinstance(_error(exc_info), tornado.iostream.UnsatisfiableReadError):
            self._waiting = False
            self._server.on_refused("too_large")
            try:  # a fresh response of a few hundred bytes: the socket buffer takes it whole
                self._stream.socket.send(self._server.too_large)
            except OSError:
                pass
        type(self._stream).close(self._stream, exc_info)


def _error(exc_info: ExcInfo) -> BaseException | None:
    """The error ``IOStream.close`` is given, in any of the forms it takes."""
    if isinstance(exc_info, tuple):
        return typing.cast(BaseException | None, exc_info[1])
    if isinstance(exc_info, BaseException):
        return exc_info
    return sys.exc_info()[1] if exc_info else None


class _HeadDelegate(tornado.httputil.HTTPMessageDelegate):
    """The request's own delegate, told first to the watch that its head is complete."""

    def __init__(self, inner: tornado.httputil.HTTPMessageDelegate, watch: _HeadWatch) -> None:
        self._inner = inner
        self._watch = watch

    def headers_received(
        self, start_line: tornado.httputil.RequestStartLine | tornado.httputil.ResponseStartLine,
        headers: tornado.httputil.HTTPHeaders,
    ) -> typing.Awaitable[None] | None:
        self._watch.received()
        return self._inner.headers_received(start_line, headers)

    def data_received(self, chunk: bytes) -> typing.Awaitable[None] | None:
        return self._inner.data_received(chunk)

    def finish(self) -> None:
        self._inner.finish()

    def on_connection_close(self) -> None:
        self._inner.on_connection_close()
