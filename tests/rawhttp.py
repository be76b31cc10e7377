"""A bare TCP client that speaks just enough HTTP/1.1 to see exactly what the server answers,
and can misbehave as no real client library lets it: send any bytes, stop reading, reset."""

from __future__ import annotations

import socket
import struct
from collections.abc import Iterable
from dataclasses import dataclass


@dataclass(frozen=True)
class Head:
    status: int
    #: Names in lower case, values as Latin-1 text.
    headers: dict[str, str]


class RawConnection:
    def __init__(self, port: int, rcvbuf: int | None = None, timeout_s: float = 5.0,
                 source: str | None = None) -> None:
        """``source``: connect from this loopback address (127.0.0.0/8 is all ours)."""
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if source is not None:
            self.sock.bind((source, 0))
        # Small writes leave at once: Nagle would hold a second one for the ACK of the first.
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if rcvbuf is not None:  # a small window fills (and stays full) fast
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        self.sock.settimeout(timeout_s)
        self.sock.connect(("127.0.0.1", port))
        self._buf = b""

    def request(self, target: bytes, headers: Iterable[tuple[str, bytes]] = ()) -> int:
        """``GET target``, the bytes as given (nothing is encoded or checked); the size of
        the request's head."""
        lines = [b"GET " + target + b" HTTP/1.1", b"Host: 127.0.0.1"]
        lines += [name.encode() + b": " + value for name, value in headers]
        head = b"\r\n".join(lines) + b"\r\n\r\n"
        self.sock.sendall(head)
        return len(head)

    def head(self) -> Head | None:
        """The answer's status and headers; None when the server closed without answering."""
        try:
            raw = self.read_until(b"\r\n\r\n")
        except ConnectionError:
            return None
        status_line, *fields = raw.decode("latin-1").split("\r\n")
        headers = {}
        for field in fields:
            name, _, value = field.partition(":")
            headers[name.strip().lower()] = value.strip()
        return Head(int(status_line.split(" ", 2)[1]), headers)

    def body(self, head: Head) -> bytes:
        """A body of known length (every answer that is not a stream has one here)."""
        return self.read(int(head.headers["content-length"]))

    def read_until(self, marker: bytes) -> bytes:
        while marker not in self._buf:
            self._fill()
        head, _, self._buf = self._buf.partition(marker)
        return head

    def read(self, n: int) -> bytes:
        while len(self._buf) < n:
            self._fill()
        out, self._buf = self._buf[:n], self._buf[n:]
        return out

    def rest(self) -> bytes:
        """What was read past the last answer's head or body, taken out of the buffer."""
        out, self._buf = self._buf, b""
        return out

    def _fill(self) -> None:
        data = self.sock.recv(65536)
        if not data:
            raise ConnectionError("closed by server")
        self._buf += data

    def close(self, reset: bool = False) -> None:
        """Close; with ``reset``, abortively (SO_LINGER 0: an RST instead of a FIN)."""
        if reset:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.sock.close()
