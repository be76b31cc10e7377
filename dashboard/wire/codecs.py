"""Serializing and compressing one message, once, for every client that shares it."""

from __future__ import annotations

import enum
import zlib
from typing import Any

import brotli
import orjson

#: Small batches every few tens of ms: a mid quality keeps compression well under a
#: millisecond per batch while staying far ahead of deflate in size.
BROTLI_QUALITY = 5
BROTLI_LGWIN = 18
DEFLATE_LEVEL = 6
#: Quality 10 is where brotli models the text: a simulator batch of 100 ticks comes out 15%
#: smaller than at quality 5 (11.9 against 14.1 bytes a tick) but takes 3-4 ms instead of
#: 0.2 (measured), and a small one gains little for a fixed half millisecond (a 20-symbol
#: subset 12%, a 5-symbol one nothing). So only payloads of at least BEST_MIN_BYTES of JSON
#: get it, as many of them as the batch's CPU for it allows, at BEST_SECONDS_PER_BYTE (brotli
#: 10's cost, measured: 0.6-0.9 us a byte; zstd 19's is about half of it).
BROTLI_BEST_QUALITY = 10
BEST_MIN_BYTES = 2048
BEST_SECONDS_PER_BYTE = 0.8e-6
#: The CPU a batch may spend on the best compression when its caller does not say: what an
#: idle server gives it at 50 ms batches (see dashboard.core.overload.BEST_SHARE).
BEST_SECONDS_PER_BATCH = 0.01


class Encoding(enum.Enum):
    """A WebSocket ``encoding=`` value (contract): what every server frame carries."""

    JSON = "json"
    BR = "br"
    DEFLATE = "deflate"


def dumps(message: Any) -> bytes:
    """JSON with numpy columns serialized natively (no ``.tolist()`` round trip)."""
    return orjson.dumps(message, option=orjson.OPT_SERIALIZE_NUMPY)


def brotli_compress(data: bytes, quality: int = BROTLI_QUALITY) -> bytes:
    """One complete brotli stream."""
    return bytes(brotli.compress(data, quality=quality, lgwin=BROTLI_LGWIN))


class CompressionBudget:
    """Which of a batch's payloads get the best (slowest) compression: those big enough to
    gain from it, while this batch's CPU for it lasts; the others a mid level. Every
    compressed form spends it (WebSocket brotli, stream zstd), each one a compression."""

    def __init__(self, seconds: float = BEST_SECONDS_PER_BATCH) -> None:
        self.reset(seconds)

    def reset(self, seconds: float = BEST_SECONDS_PER_BATCH) -> None:
        """A new batch, which may spend ``seconds`` of CPU on the best compression."""
        self._granted = self._left = round(seconds / BEST_SECONDS_PER_BYTE)

    @property
    def spent_s(self) -> float:
        """About how much CPU this batch's best compression took (at BEST_SECONDS_PER_BYTE)."""
        return (self._granted - self._left) * BEST_SECONDS_PER_BYTE

    def best(self, size: int) -> bool:
        """Whether ``size`` bytes of JSON get the best compression (spending the budget)."""
        if BEST_MIN_BYTES <= size <= self._left:
            self._left -= size
            return True
        return False

    def quality(self, size: int) -> int:
        """The brotli quality for ``size`` bytes of JSON."""
        return BROTLI_BEST_QUALITY if self.best(size) else BROTLI_QUALITY


def deflate_raw(data: bytes) -> bytes:
    """One complete, independent raw deflate stream (RFC 1951: no zlib header, final block
    set), which a browser decodes with ``DecompressionStream('deflate-raw')``."""
    c = zlib.compressobj(DEFLATE_LEVEL, zlib.DEFLATED, -zlib.MAX_WBITS)
    return c.compress(data) + c.flush(zlib.Z_FINISH)


def encode(json_bytes: bytes, encoding: Encoding) -> bytes:
    if encoding is Encoding.BR:
        return brotli_compress(json_bytes)
    if encoding is Encoding.DEFLATE:
        return deflate_raw(json_bytes)
    return json_bytes
