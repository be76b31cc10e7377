"""HTTP content coding for event streams (RFC 9110 §8.4), shared by every client it can be.

A per-connection compressor compresses each event once per client, which is what made SSE
cost a core for 200 browsers. Three codings can instead be encoded once per event and the
same bytes written to every client, whatever it was sent before:

- ``zstd`` (RFC 8878): each event one complete, independent frame. "A content compressed
  by Zstandard is transformed into a Zstandard frame. Multiple frames can be appended into
  a single file or stream" (§3.1), so any sequence of frames is a valid stream.
- ``deflate``, which RFC 9110 §8.4.1.2 defines as "the 'zlib' data format [RFC1950]
  containing a 'deflate' compressed data stream [RFC1951]": each event is the raw deflate
  blocks of a fresh compressor ended by a sync flush (not final, byte-aligned, references
  inside the event only), so any concatenation of them is one valid deflate stream. A
  connection adds only the 2-byte zlib header first and, at a graceful end, an empty final
  block and the Adler-32 of everything it sent, combined from each event's own checksum.
- ``gzip`` (RFC 1952): the same blocks inside a gzip member, whose trailer holds the
  CRC-32 and the length (mod 2**32) of everything sent.

``br`` has no such property (a brotli stream cannot be cut and spliced), so it stays one
compressor per connection, flushed per event; its window carries over between events,
which makes its bytes the smallest and its CPU the highest.
"""

from __future__ import annotations

import enum
import struct
import zlib
from typing import Protocol

import brotli
import zstandard

#: Per-connection brotli: a small window keeps a compressor's memory modest on a server
#: holding thousands of streams.
STREAM_BROTLI_QUALITY = 5
STREAM_BROTLI_LGWIN = 16
#: Shared codings, as the WebSocket path's: a mid level per event, the best level for big
#: events while the batch's budget lasts (see codecs.CompressionBudget).
ZSTD_LEVEL = 3
ZSTD_BEST_LEVEL = 19
DEFLATE_LEVEL = 6


class Coding(enum.Enum):
    ZSTD = "zstd"
    DEFLATE = "deflate"
    GZIP = "gzip"
    BR = "br"
    IDENTITY = "identity"


#: Which coding a client gets when it accepts several equally: shareable ones first.
PREFERENCE = (Coding.ZSTD, Coding.DEFLATE, Coding.GZIP, Coding.BR, Coding.IDENTITY)


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


def negotiate(header: str | None, offered: tuple[Coding, ...] = PREFERENCE) -> Coding | None:
    """The coding with the highest q-value among ``offered``, ties going to the earlier
    one; None when the client accepts none of them (``identity;q=0``, or ``*;q=0`` without
    identity listed). ``*`` stands for every coding the header does not name; identity is
    acceptable unless excluded (RFC 9110 §12.5.3)."""
    codings = accepted(header)
    star = codings.get("*")

    def q(coding: Coding) -> float:
        if coding.value in codings:
            return codings[coding.value]
        if coding is Coding.IDENTITY:
            return 0.001 if star is None or star > 0 else 0.0  # below any explicit q
        return star if star is not None else 0.0

    best = max(offered, key=lambda c: (q(c), -offered.index(c)))
    if q(best) > 0:
        return best
    return None


def zstd_frame(data: bytes, level: int = ZSTD_LEVEL) -> bytes:
    """One complete, independent zstd frame holding ``data``."""
    return zstandard.ZstdCompressor(level=level).compress(data)


class Blocks(bytes):
    """Raw deflate blocks of one event, ended by a sync flush, with what a zlib or gzip
    trailer needs of it: the event itself (``plain``) and its Adler-32."""

    plain: bytes
    adler: int


def deflate_blocks(data: bytes, level: int = DEFLATE_LEVEL) -> Blocks:
    c = zlib.compressobj(level, zlib.DEFLATED, -zlib.MAX_WBITS)
    blocks = Blocks(c.compress(data) + c.flush(zlib.Z_SYNC_FLUSH))
    blocks.plain = data
    blocks.adler = zlib.adler32(data)
    return blocks


_ADLER_BASE = 65521


def adler32_combine(adler1: int, adler2: int, len2: int) -> int:
    """The Adler-32 of A + B from those of A and B and B's length, in O(1) (zlib's
    ``adler32_combine``, which Python's zlib does not expose)."""
    rem = len2 % _ADLER_BASE
    sum1 = adler1 & 0xFFFF
    sum2 = (rem * sum1) % _ADLER_BASE
    sum1 += (adler2 & 0xFFFF) + _ADLER_BASE - 1
    sum2 += ((adler1 >> 16) & 0xFFFF) + ((adler2 >> 16) & 0xFFFF) + _ADLER_BASE - rem
    sum1 %= _ADLER_BASE
    sum2 %= _ADLER_BASE
    return sum1 | (sum2 << 16)


#: RFC 1951 §3.2.3: BFINAL=1, BTYPE=01 (fixed Huffman), then end-of-block (code 256, seven
#: zero bits): the empty final block that ends a deflate stream.
FINAL_EMPTY_BLOCK = b"\x03\x00"
#: RFC 1950 §2.2: CM=8 (deflate), CINFO=7 (32K window), FLEVEL=2 (default), FCHECK making
#: CMF*256+FLG a multiple of 31.
ZLIB_HEADER = b"\x78\x9c"
#: RFC 1952 §2.3: ID1 ID2, CM=8, no flags, MTIME 0 (none), XFL 0, OS 255 (unknown).
GZIP_HEADER = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\xff"


class StreamCoder(Protocol):
    """One response's side of its coding. Bytes handed to the socket pass ``write``; a
    message of the connection's own (an opening, a keepalive) is coded by ``own`` first,
    like the shared ones; ``start`` and ``finish`` frame the whole response."""

    coding: Coding

    def start(self) -> bytes: ...

    def own(self, data: bytes) -> bytes: ...

    def write(self, data: bytes) -> bytes: ...

    def finish(self) -> bytes: ...


class Identity:
    coding = Coding.IDENTITY

    def start(self) -> bytes:
        return b""

    def own(self, data: bytes) -> bytes:
        return data

    def write(self, data: bytes) -> bytes:
        return data

    def finish(self) -> bytes:
        return b""


class Brotli(Identity):
    """Per connection: every event compressed and flushed on its own, the window kept."""

    coding = Coding.BR

    def __init__(self) -> None:
        self._c = brotli.Compressor(quality=STREAM_BROTLI_QUALITY, lgwin=STREAM_BROTLI_LGWIN)

    def write(self, data: bytes) -> bytes:
        return bytes(self._c.process(data)) + bytes(self._c.flush())

    def finish(self) -> bytes:
        return bytes(self._c.finish())


class Zstd(Identity):
    """Shared: every event is already a frame; nothing of the connection's to keep."""

    coding = Coding.ZSTD

    def own(self, data: bytes) -> bytes:
        return zstd_frame(data)


class Zlib(Identity):
    """Shared blocks; the connection keeps only the checksum of what it sent."""

    coding = Coding.DEFLATE

    def __init__(self) -> None:
        self._adler = 1

    def start(self) -> bytes:
        return ZLIB_HEADER

    def own(self, data: bytes) -> bytes:
        return deflate_blocks(data)

    def write(self, data: bytes) -> bytes:
        if isinstance(data, Blocks):
            self._count(data)
        return data

    def _count(self, blocks: Blocks) -> None:
        self._adler = adler32_combine(self._adler, blocks.adler, len(blocks.plain))

    def finish(self) -> bytes:
        return FINAL_EMPTY_BLOCK + struct.pack(">I", self._adler)


class Gzip(Zlib):
    coding = Coding.GZIP

    def __init__(self) -> None:
        super().__init__()
        self._crc = 0
        self._length = 0

    def start(self) -> bytes:
        return GZIP_HEADER

    def _count(self, blocks: Blocks) -> None:
        self._crc = zlib.crc32(blocks.plain, self._crc)  # 0.7 µs for a 3.4 kB event
        self._length += len(blocks.plain)

    def finish(self) -> bytes:
        return FINAL_EMPTY_BLOCK + struct.pack("<II", self._crc, self._length & 0xFFFFFFFF)


_CODERS: dict[Coding, type[Identity]] = {
    Coding.ZSTD: Zstd, Coding.DEFLATE: Zlib, Coding.GZIP: Gzip, Coding.BR: Brotli,
    Coding.IDENTITY: Identity,
}


def coder(coding: Coding) -> StreamCoder:
    return _CODERS[coding]()
