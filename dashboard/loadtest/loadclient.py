"""A lean asyncio WebSocket client for load tests and benchmarks.

Thousands of clients in one process must cost little: this reads server frames straight off
an ``asyncio.StreamReader`` (server frames are never masked, RFC 6455 §5.1), answers pings,
and leaves decoding to the caller. Client frames are masked as §5.3 requires.
"""

from __future__ import annotations

import asyncio
import base64
import os
import socket
import struct
import time
from collections.abc import Callable
from typing import cast

from dashboard.errors import HandshakeError

OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG = 0x1, 0x2, 0x8, 0x9, 0xA


class WebSocket:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.close_code: int | None = None

    @classmethod
    async def connect(
        cls, host: str, port: int, path: str, *, rcvbuf: int | None = None,
        timeout: float = 10.0,
    ) -> WebSocket:
        """Open a connection and upgrade it. ``rcvbuf`` shrinks the receive buffer (set before
        connecting, so the window the server sees is small too)."""
        sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
        if rcvbuf is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        sock.setblocking(False)
        loop = asyncio.get_running_loop()
        await asyncio.wait_for(loop.sock_connect(sock, (host, port)), timeout)
        reader, writer = await asyncio.open_connection(sock=sock, limit=1 << 22)
        key = base64.b64encode(os.urandom(16)).decode()
        writer.write(
            f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
            "Sec-WebSocket-Version: 13\r\n\r\n".encode()
        )
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), timeout)
        status = int(head.split(b" ", 2)[1])
        if status != 101:
            writer.close()
            raise HandshakeError(status, head)
        return cls(reader, writer)

    async def frame(self) -> tuple[int, bytes]:
        """The next data or close frame (pings are answered here); (OP_CLOSE, payload) at
        the end, with ``close_code`` set (1006 when the connection just dropped)."""
        read = self.reader.readexactly
        while True:
            try:
                b0, b1 = await read(2)
                n = b1 & 0x7F
                if n == 126:
                    (n,) = struct.unpack("!H", await read(2))
                elif n == 127:
                    (n,) = struct.unpack("!Q", await read(8))
                payload = await read(n)
            except (asyncio.IncompleteReadError, ConnectionError):
                self.close_code = self.close_code or 1006
                return OP_CLOSE, b""
            opcode = b0 & 0x0F
            if opcode == OP_PING:
                self.send(OP_PONG, payload)
            elif opcode == OP_CLOSE:
                self.close_code = struct.unpack("!H", payload[:2])[0] if len(payload) >= 2 else 1005
                return opcode, payload
            elif opcode != OP_PONG:
                return opcode, payload

    def send(self, opcode: int, payload: bytes) -> None:
        mask = os.urandom(4)
        n = len(payload)
        if n < 126:
            header = struct.pack("!BB", 0x80 | opcode, 0x80 | n)
        elif n < 1 << 16:
            header = struct.pack("!BBH", 0x80 | opcode, 0x80 | 126, n)
        else:
            header = struct.pack("!BBQ", 0x80 | opcode, 0x80 | 127, n)
        masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
        if not self.writer.is_closing():
            self.writer.write(header + mask + masked)

    def close(self) -> None:
        self.writer.close()


class FrameCounter(asyncio.Protocol):
    """A client straight on ``data_received``: thousands of them cost a load generator far
    less than stream readers that await every frame. It counts frames and bytes with the
    payloads skipped, not read, unless ``on_message`` is given: then each data frame is read
    whole and handed over with the time its last byte arrived (taken before any parsing, so
    what the generator does with the message is not counted as latency); it returns False
    for a message it cannot read, and the client closes. Pings are answered, closes noted."""

    def __init__(
        self, host: str, port: int, path: str, on_frame: Callable[[int], None],
        on_message: Callable[[bytes, float], bool] | None = None,
    ) -> None:
        self._request = (
            f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {base64.b64encode(os.urandom(16)).decode()}"
            "\r\nSec-WebSocket-Version: 13\r\n\r\n"
        ).encode()
        self._on_frame = on_frame
        self._on_message = on_message
        self._buf = b""
        self._skip = 0
        self._upgraded = False
        self.opened: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.closed: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass
        self.transport.write(self._request)

    def data_received(self, data: bytes) -> None:
        arrived = time.time()
        if self._skip >= len(data):
            self._skip -= len(data)
            return
        buf = self._buf + data[self._skip:] if self._buf else data[self._skip:]
        self._skip = 0
        i, n = 0, len(buf)
        if not self._upgraded:
            end = buf.find(b"\r\n\r\n")
            if end < 0:
                self._buf = buf
                return
            status = int(buf.split(b" ", 2)[1])
            if status != 101:
                self._finish(0)
                return
            if self.opened.done():  # the upgrade came after the load test gave up on it
                self._finish(0)
                return
            self._upgraded = True
            self.opened.set_result(None)
            i = end + 4
        while n - i >= 2:
            b1 = buf[i + 1] & 0x7F
            head = 2
            if b1 == 126:
                if n - i < 4:
                    break
                b1, head = int.from_bytes(buf[i + 2:i + 4], "big"), 4
            elif b1 == 127:
                if n - i < 10:
                    break
                b1, head = int.from_bytes(buf[i + 2:i + 10], "big"), 10
            opcode = buf[i] & 0x0F
            whole = n - i >= head + b1
            if opcode in (OP_PING, OP_CLOSE):  # control frames are read whole
                if not whole:
                    break
                payload = buf[i + head:i + head + b1]
                if opcode == OP_PING:
                    self._pong(payload)
                else:
                    self._finish(int.from_bytes(payload[:2], "big") if b1 >= 2 else 1005)
                    return
            elif opcode == OP_PONG:  # unasked for: nothing to count or read
                if not whole:
                    break
            elif self._on_message is not None:  # read whole, then handed over
                if not whole:
                    break
                self._on_frame(head + b1)
                if not self._on_message(buf[i + head:i + head + b1], arrived):
                    self._finish(0)  # it could not read that message: the client gives up
                    return
            else:
                self._on_frame(head + b1)
                if not whole:
                    self._skip = head + b1 - (n - i)
                    i = n
                    break
            i += head + b1
        self._buf = buf[i:]

    def _pong(self, payload: bytes) -> None:
        mask = os.urandom(4)
        masked = bytes(b ^ mask[k % 4] for k, b in enumerate(payload))
        if self.transport is not None:
            self.transport.write(bytes((0x80 | OP_PONG, 0x80 | len(payload))) + mask + masked)

    def _finish(self, code: int) -> None:
        if not self.opened.done():
            self.opened.set_exception(HandshakeError(code, b""))
        if not self.closed.done():
            self.closed.set_result(code)
        if self.transport is not None:
            self.transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self._finish(1006)

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()


async def count_frames(
    host: str, port: int, path: str, on_frame: Callable[[int], None],
    on_message: Callable[[bytes, float], bool] | None = None, timeout: float = 10.0,
) -> FrameCounter:
    """Connect a :class:`FrameCounter` and wait for its upgrade."""
    loop = asyncio.get_running_loop()
    _, counter = await asyncio.wait_for(loop.create_connection(
        lambda: FrameCounter(host, port, path, on_frame, on_message), host, port), timeout)
    try:
        await asyncio.wait_for(counter.opened, timeout)
    except BaseException:
        counter.close()  # counted as failed: it must not go on counting frames
        raise
    return counter
