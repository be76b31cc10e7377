"""Real decoders for each content coding a stream may be sent in: whole bodies, and
streaming ones that decode each chunk as it arrives."""

from __future__ import annotations

import gzip
import io
import zlib
from typing import Protocol

import brotli
import zstandard


def whole(coding: str, body: bytes) -> bytes:
    """``body`` decoded as a client reads a complete response: trailers and checksums
    checked (zlib and gzip raise on a missing or wrong one)."""
    if coding == "zstd":
        reader = zstandard.ZstdDecompressor().stream_reader(io.BytesIO(body),
                                                            read_across_frames=True)
        return reader.read()
    if coding == "deflate":
        return zlib.decompress(body)
    if coding == "gzip":
        return gzip.decompress(body)
    if coding == "br":
        return bytes(brotli.decompress(body))
    return body


class Streaming(Protocol):
    def decompress(self, data: bytes) -> bytes: ...


class ZstdFrames:
    """zstandard's decompressobj stops at the end of a frame; a stream is many frames."""

    def __init__(self) -> None:
        self._d = zstandard.ZstdDecompressor().decompressobj()

    def decompress(self, data: bytes) -> bytes:
        out = b""
        while data:
            out += self._d.decompress(data)
            data = b""
            if self._d.eof:
                data = self._d.unused_data
                self._d = zstandard.ZstdDecompressor().decompressobj()
        return out


class BrotliStream:
    def __init__(self) -> None:
        self._d = brotli.Decompressor()

    def decompress(self, data: bytes) -> bytes:
        return bytes(self._d.process(data))


class Plain:
    def decompress(self, data: bytes) -> bytes:
        return data


def streaming(coding: str | None) -> Streaming:
    if coding == "zstd":
        return ZstdFrames()
    if coding == "deflate":
        return zlib.decompressobj()
    if coding == "gzip":
        return zlib.decompressobj(16 + zlib.MAX_WBITS)
    if coding == "br":
        return BrotliStream()
    return Plain()
