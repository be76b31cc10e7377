"""HTTP/1.1 chunked transfer coding (RFC 9112 §7.1), one chunk at a time.

    chunk = chunk-size [ chunk-ext ] CRLF chunk-data CRLF

A stream writes its shared event bytes to every client itself, past Tornado's own
framing, so it frames them here: once per event for all the clients that share them.
"""

from __future__ import annotations


def chunk(data: bytes) -> bytes:
    """``data`` as one chunk; never empty data, whose chunk would end the body."""
    assert data, "an empty chunk is the last chunk"
    return b"%x\r\n%b\r\n" % (len(data), data)


class LastChunk:
    """The chunk of the data framed last: every client of a fan-out group is handed the
    same bytes object, so all but the first reuse its chunk."""

    def __init__(self) -> None:
        self._data: bytes | None = None
        self._chunk = b""

    def of(self, data: bytes) -> bytes:
        if data is not self._data:
            self._data, self._chunk = data, chunk(data)
        return self._chunk
