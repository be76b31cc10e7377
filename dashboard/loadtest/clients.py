"""Load-test clients: many per process, on asyncio. A sample of them decode every message
(gaps, latency, ticks); the rest only count frames and bytes, so the load generator is not
the bottleneck it measures."""

from __future__ import annotations

import asyncio
import time
import zlib
from collections import Counter
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

import brotli
import numpy as np
import orjson

from dashboard.errors import HandshakeError
from dashboard.loadtest.decoders import streaming
from dashboard.loadtest.loadclient import OP_CLOSE, WebSocket, count_frames
from dashboard.loadtest.stats import Interval, histogram


@dataclass(frozen=True, slots=True)
class Target:
    host: str
    port: int


@dataclass
class Outcomes:
    """What happened to this process's clients."""

    connected: int = 0
    failed: int = 0
    closed: Counter[str] = field(default_factory=Counter)  # close code (or "eof") → count
    slow: int = 0
    slow_dropped: int = 0
    #: Per sampled healthy client: its last seq, and its own p99 latency (ms).
    last_seqs: list[int] = field(default_factory=list)
    #: The content coding each SSE or /stream client got → clients.
    codings: Counter[str] = field(default_factory=Counter)


class Meter:
    """The current second's figures, swapped out by the reporter."""

    def __init__(self) -> None:
        self.now = Interval()

    def take(self) -> Interval:
        out, self.now = self.now, Interval()
        return out


def decode(payload: bytes, encoding: str) -> Any:
    if encoding == "br":
        payload = brotli.decompress(payload)
    elif encoding == "deflate":
        payload = zlib.decompress(payload, -zlib.MAX_WBITS)
    return orjson.loads(payload)


class Sample:
    """Everything a fully decoding client checks in one message."""

    def __init__(self, meter: Meter) -> None:
        self.meter = meter
        self.last: int | None = None

    def message(self, msg: dict[str, Any], received_ms: float) -> None:
        m = self.meter.now
        m.sampled_frames += 1
        kind = msg.get("type")
        if kind == "snapshot":
            self.last = msg["seq"]
            return
        if kind != "batch":
            return
        first = msg.get("first_seq", msg["seq"])
        if self.last is not None and first > self.last + 1:
            m.gaps += first - self.last - 1
        self.last = msg["seq"]
        m.conflated += msg.get("conflated", 0)
        ts = msg["ticks"]["ts"]
        if ts:
            m.ticks += len(ts)
            m.latency += histogram(received_ms - np.asarray(ts, np.float64))


def query(symbols: str | None, max_hz: float | None, extra: dict[str, str]) -> str:
    q = dict(extra)
    if symbols:
        q["symbols"] = symbols
    if max_hz:
        q["max_hz"] = f"{max_hz:g}"
    return urlencode(q)


async def websocket_client(
    target: Target, q: str, encoding: str, sample: Sample | None, meter: Meter,
    outcomes: Outcomes, stop_at: float,
) -> None:
    """A WebSocket client on a :class:`FrameCounter`: it counts frames and bytes, and a
    sampled one also decodes every message, stamped with the time it arrived."""
    def on_frame(size: int) -> None:
        m = meter.now
        m.frames += 1
        m.bytes += size

    undecodable = False

    def on_message(payload: bytes, arrived_s: float) -> bool:
        nonlocal undecodable
        assert sample is not None
        try:
            sample.message(decode(payload, encoding), arrived_s * 1000)
        except (ValueError, LookupError, TypeError, AttributeError, brotli.error, zlib.error):
            undecodable = True  # not JSON (orjson raises a ValueError), or not the contract's
            return False
        return True

    try:
        counter = await count_frames(target.host, target.port, f"/ws?{q}", on_frame,
                                     None if sample is None else on_message)
    except (TimeoutError, OSError, HandshakeError):
        outcomes.failed += 1
        return
    outcomes.connected += 1
    try:
        code = await asyncio.wait_for(asyncio.shield(counter.closed),
                                      max(0.0, stop_at - time.time()))
        outcomes.closed["undecodable" if undecodable else str(code)] += 1
    except TimeoutError:
        pass
    finally:
        counter.close()
        if sample is not None and sample.last is not None:
            outcomes.last_seqs.append(sample.last)


#: What Debian's Chromium 156 sends with EventSource and fetch, even on http://127.0.0.1.
BROWSER_ACCEPT_ENCODING = "gzip, deflate, br, zstd"
STREAM_PATHS = {"sse": "/sse", "stream": "/stream"}


def stream_messages(kind: str, text: bytes) -> tuple[list[bytes], bytes]:
    """The JSON of each complete message in ``text`` (SSE: each event's data; retry
    lines and comments have none), and what is left of an incomplete one."""
    if kind == "stream":
        *lines, rest = text.split(b"\n")
        return [line for line in lines if line], rest
    *events, rest = text.split(b"\n\n")
    datas = [b"\n".join(line[6:] for line in event.split(b"\n") if line.startswith(b"data: "))
             for event in events]
    return [d for d in datas if d], rest


async def stream_client(
    target: Target, kind: str, q: str, accept_encoding: str, sample: Sample | None,
    meter: Meter, outcomes: Outcomes, stop_at: float,
) -> None:
    """An SSE or /stream client asking for ``accept_encoding``. Each HTTP chunk is one
    write of the server's (a message, a keepalive, the SSE retry line), counted as a frame
    with its bytes on the wire; a sampled client also decodes the coding and every message,
    stamped with the time its chunk arrived."""
    try:
        reader, writer = await asyncio.wait_for(
            asyncio.open_connection(target.host, target.port, limit=1 << 22), 10
        )
        writer.write(f"GET {STREAM_PATHS[kind]}?{q} HTTP/1.1\r\nHost: {target.host}\r\n"
                     f"Accept-Encoding: {accept_encoding}\r\n\r\n".encode())
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
    except (TimeoutError, OSError, asyncio.IncompleteReadError):
        outcomes.failed += 1
        return
    if not head.startswith(b"HTTP/1.1 200"):
        outcomes.failed += 1
        writer.close()
        return
    outcomes.connected += 1
    coding = content_coding(head)
    outcomes.codings[coding] += 1
    decoder = streaming(coding) if sample is not None else None
    #: deflate and gzip start with the coding's own header, a write but no message.
    header_left = coding in ("deflate", "gzip")
    text = b""
    try:
        async with asyncio.timeout(max(0.0, stop_at - time.time())):
            while True:
                size_line = await reader.readuntil(b"\r\n")  # chunked transfer coding
                size = int(size_line.split(b";")[0], 16)
                if size == 0:
                    outcomes.closed["end"] += 1
                    return
                data = (await reader.readexactly(size + 2))[:-2]
                meter.now.bytes += size
                if header_left:
                    header_left = False
                else:
                    meter.now.frames += 1
                if sample is None or decoder is None:
                    continue
                arrived_ms = time.time() * 1000
                messages, text = stream_messages(kind, text + decoder.decompress(data))
                for message in messages:
                    sample.message(orjson.loads(message), arrived_ms)
    except TimeoutError:
        pass
    except (asyncio.IncompleteReadError, ConnectionError):
        outcomes.closed["eof"] += 1
    finally:
        writer.close()
        if sample is not None and sample.last is not None:
            outcomes.last_seqs.append(sample.last)


def content_coding(head: bytes) -> str:
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-encoding":
            return value.strip().decode("latin-1").lower()
    return "identity"


async def slow_client(target: Target, q: str, outcomes: Outcomes, stop_at: float) -> None:
    """Connects, then never reads; at the end, looks whether the server dropped it."""
    try:
        ws = await WebSocket.connect(target.host, target.port, f"/ws?{q}", rcvbuf=4096)
    except (TimeoutError, OSError, HandshakeError):
        outcomes.failed += 1
        return
    outcomes.slow += 1
    await asyncio.sleep(max(0.0, stop_at - time.time()))
    try:  # drain what the kernel holds: a dropped client ends in EOF (or a 1013 close)
        async with asyncio.timeout(2.0):
            while True:
                opcode, _ = await ws.frame()
                if opcode == OP_CLOSE:
                    outcomes.slow_dropped += 1
                    break
    except TimeoutError:
        pass
    ws.close()
