"""A bare-socket WebSocket client: sees every frame (pings included), can stop reading and
can send any frame, even a malformed one, which Tornado's client hides or cannot do."""

from __future__ import annotations

import base64
import os
import struct

from tests.rawhttp import RawConnection

OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG = 0x1, 0x2, 0x8, 0x9, 0xA


def encode_frame(
    opcode: int, payload: bytes, *, fin: bool = True, rsv: int = 0,
    mask: bytes | None = b"\x00\x00\x00\x00", length: int | None = None,
) -> bytes:
    """A frame as RFC 6455 §5.2 lays it out, or any malformed variant of it: reserved bits,
    no mask (a client's frames must be masked), a ``length`` that is not the payload's."""
    n = len(payload) if length is None else length
    flag = 0x80 if mask is not None else 0
    if n < 126:
        header = bytes([flag | n])
    elif n < 1 << 16:
        header = bytes([flag | 126]) + struct.pack("!H", n)
    else:
        header = bytes([flag | 127]) + struct.pack("!Q", n)
    if mask is not None:
        header += mask
        payload = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    return bytes([(0x80 if fin else 0) | (rsv & 7) << 4 | opcode & 0x0F]) + header + payload


def handshake_headers() -> list[tuple[str, bytes]]:
    """An opening handshake's headers (RFC 6455 §4.1), with a fresh key."""
    return [
        ("Upgrade", b"websocket"), ("Connection", b"Upgrade"),
        ("Sec-WebSocket-Key", base64.b64encode(os.urandom(16))),
        ("Sec-WebSocket-Version", b"13"),
    ]


def read_frame(conn: RawConnection) -> tuple[int, bytes]:
    """The next frame's opcode and payload, on any connection that was upgraded."""
    b0, b1 = conn.read(2)
    n = b1 & 0x7F
    if n == 126:
        (n,) = struct.unpack("!H", conn.read(2))
    elif n == 127:
        (n,) = struct.unpack("!Q", conn.read(8))
    return b0 & 0x0F, conn.read(n)


class RawWebSocket(RawConnection):
    def __init__(self, port: int, path: str = "/ws", rcvbuf: int | None = None) -> None:
        super().__init__(port, rcvbuf)
        self.request(path.encode(), handshake_headers())
        head = self.head()
        if head is None:
            raise ConnectionError("closed by server during the handshake")
        self.status = head.status

    def frame(self) -> tuple[int, bytes]:
        return read_frame(self)

    def send(self, opcode: int, payload: bytes) -> None:
        """One final frame, masked as a client's must be (RFC 6455 §5.3)."""
        self.sock.sendall(encode_frame(opcode, payload, mask=os.urandom(4)))
