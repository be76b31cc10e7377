"""Writing a connection's bytes in order, each write as cheap as the kernel allows.

Straight to the socket while nothing waits in Tornado's write buffer: a write the kernel
takes whole costs one ``send``, not a Future and its callbacks (a quarter of the server's
CPU at 1,000 clients, measured). Whatever the kernel does not take goes to the stream,
which finishes it in order — and everything after it too, until it is drained: bytes of
two writes must never interleave.
"""

from __future__ import annotations

import ssl
from asyncio import Future
from collections.abc import Callable
from typing import Any, Protocol

import tornado.iostream

#: A full socket: plain TCP's EAGAIN, or TLS wanting to write (or read) before it goes on.
_FULL = (BlockingIOError, ssl.SSLWantWriteError, ssl.SSLWantReadError)


class _Buffer(Protocol):
    _size: int


class _Pending:
    """A stand-in for a write buffer that cannot be read: something may always be pending."""

    _size = 1


class SocketWriter:
    __slots__ = ("_on_reset", "pending", "send", "stream")

    def __init__(self, stream: tornado.iostream.IOStream, on_reset: Callable[[], None]) -> None:
        """``on_reset``: the socket failed under a write (reset, closed under us)."""
        self.stream = stream
        #: The socket's own ``send``: the fan-out's tight loop calls it (see
        #: :func:`dashboard.transports.outlet.offer_all`) while :attr:`pending` is empty.
        self.send: Callable[[bytes], int] = stream.socket.send
        self._on_reset = on_reset
        # Tornado's write buffer and its size (private, hence the fallback): 0 means nothing
        # of any write is waiting, so the socket may be written directly. Without them,
        # always write through the stream.
        buffer: Any = getattr(stream, "_write_buffer", None)
        readable = isinstance(getattr(buffer, "_size", None), int)
        self.pending: _Buffer = buffer if readable else _Pending()

    def write(self, data: bytes) -> Future[None] | bool | None:
        """True if the kernel took all of ``data`` now, a future if some of it waits in
        the stream's buffer, None when the connection is gone."""
        if not self.pending._size:
            try:
                sent = self.send(data)
            except OSError as e:
                sent = self.unsent(e)
            if sent == len(data):
                return True
            return self.rest(data, sent)
        return self._buffered(data)

    def unsent(self, error: OSError) -> int:
        """What a ``send`` that raised ``error`` took: nothing (0) when the socket is full,
        or -1 when it is gone (and the connection is told)."""
        if isinstance(error, _FULL):
            return 0
        self._on_reset()
        return -1

    def rest(self, data: bytes, sent: int) -> Future[None] | None:
        """What the kernel did not take of ``data`` (it took ``sent`` bytes), to the stream;
        None when the connection is gone (``sent`` -1)."""
        if sent < 0:
            return None
        return self._buffered(memoryview(data)[sent:])

    def _buffered(self, data: bytes | memoryview) -> Future[None] | None:
        try:
            return self.stream.write(data)
        except tornado.iostream.StreamClosedError:
            return None
