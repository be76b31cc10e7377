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

OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG = 0x1, 0x2, 0x8, 0x9, 0xA


class HandshakeError(Exception):
    """The server refused the upgrade (``status`` is its HTTP status)."""

    def __init__(self, status: int, head: bytes) -> None:
        super().__init__(f"upgrade refused: HTTP {status}")
        self.status = status
        self.head = head


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
