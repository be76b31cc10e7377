"""HTTP content coding for event streams: one compressor per response, flushed per message.

Tornado's ``compress_response`` only gzips and buffers; an event stream needs every event to
leave at once, so each chunk is compressed and flushed on its own (brotli ``flush()``, zlib
``Z_SYNC_FLUSH``) while the window carries over between events of the same response.
"""

from __future__ import annotations

import zlib
from typing import Protocol

import brotli

#: Per-connection state is the price of HTTP content coding; a small window keeps a
#: compressor's memory modest on a server holding thousands of streams.
STREAM_BROTLI_QUALITY = 5
STREAM_BROTLI_LGWIN = 16
STREAM_GZIP_LEVEL = 6
STREAM_GZIP_WBITS = 15


class StreamCompressor(Protocol):
    name: str

    def chunk(self, data: bytes) -> bytes:
        """Compress ``data`` and flush, so the client can decode it whole now."""
        ...

    def finish(self) -> bytes:
        ...


class Brotli:
    name = "br"

    def __init__(self) -> None:
        self._c = brotli.Compressor(quality=STREAM_BROTLI_QUALITY, lgwin=STREAM_BROTLI_LGWIN)

    def chunk(self, data: bytes) -> bytes:
        return bytes(self._c.process(data)) + bytes(self._c.flush())

    def finish(self) -> bytes:
        return bytes(self._c.finish())


class Gzip:
    name = "gzip"

    def __init__(self) -> None:
        self._c = zlib.compressobj(STREAM_GZIP_LEVEL, zlib.DEFLATED, 16 + STREAM_GZIP_WBITS)

    def chunk(self, data: bytes) -> bytes:
        return self._c.compress(data) + self._c.flush(zlib.Z_SYNC_FLUSH)

    def finish(self) -> bytes:
        return self._c.flush(zlib.Z_FINISH)


def accepted(header: str | None) -> dict[str, float]:
    """Codings and their q-values from an ``Accept-Encoding`` header (RFC 9110 §12.5.3)."""
    codings: dict[str, float] = {}
    for item in (header or "").split(","):
        name, _, params = item.strip().partition(";")
        name = name.strip().lower()
        if not name:
            continue
        q = 1.0
        for param in params.split(";"):
            key, _, value = param.strip().partition("=")
            if key.strip().lower() == "q":
                try:
                    q = float(value)
                except ValueError:
                    q = 0.0
        codings[name] = q
    return codings


def negotiate(header: str | None) -> StreamCompressor | None:
    """br when accepted, gzip when only that is, none otherwise (``*`` counts for both)."""
    codings = accepted(header)
    star = codings.get("*", 0.0)
    if codings.get("br", star) > 0:
        return Brotli()
    if codings.get("gzip", star) > 0:
        return Gzip()
    return None
