"""Real clients for tests: Tornado's WebSocket client, and a streaming HTTP client that
decodes SSE / NDJSON (optionally brotli or gzip, incrementally) as bytes arrive."""

from __future__ import annotations

import asyncio
import zlib
from dataclasses import dataclass, field
from typing import Any

import brotli
import orjson
import tornado.httpclient
import tornado.websocket
from prometheus_client.parser import text_string_to_metric_families

from dashboard.loadtest.decoders import Streaming, streaming
from dashboard.server import Server

TIMEOUT_S = 5.0


def ws_url(server: Server, query: str = "") -> str:
    return f"ws://127.0.0.1:{server.port}/ws" + (f"?{query}" if query else "")


def http_url(server: Server, path: str) -> str:
    return f"http://127.0.0.1:{server.port}{path}"


def decode_frame(frame: str | bytes, encoding: str) -> dict[str, Any]:
    if encoding == "json":
        assert isinstance(frame, str), "json encoding uses text frames"
        return orjson.loads(frame)
    assert isinstance(frame, bytes), f"{encoding} encoding uses binary frames"
    if encoding == "br":
        return orjson.loads(brotli.decompress(frame))
    d = zlib.decompressobj(-zlib.MAX_WBITS)
    data = d.decompress(frame)
    assert d.eof, "each deflate frame is a complete raw deflate stream"
    return orjson.loads(data)


class WSClient:
    def __init__(self, conn: tornado.websocket.WebSocketClientConnection, encoding: str) -> None:
        self.conn = conn
        self.encoding = encoding

    @classmethod
    async def connect(cls, server: Server, query: str = "", encoding: str = "json") -> WSClient:
        if encoding != "json":
            query = f"{query}&encoding={encoding}" if query else f"encoding={encoding}"
        conn = await tornado.websocket.websocket_connect(ws_url(server, query))
        return cls(conn, encoding)

    async def recv(self, timeout: float = TIMEOUT_S) -> dict[str, Any]:
        frame = await asyncio.wait_for(self.conn.read_message(), timeout)
        assert frame is not None, f"closed: {self.conn.close_code} {self.conn.close_reason}"
        return decode_frame(frame, self.encoding)

    async def recv_type(self, kind: str, timeout: float = TIMEOUT_S) -> dict[str, Any]:
        """The next message of ``kind``, skipping data messages (replies interleave)."""
        while True:
            msg = await self.recv(timeout)
            if msg["type"] == kind:
                return msg
            assert msg["type"] in ("batch", "snapshot"), msg

    async def send(self, message: dict[str, Any]) -> None:
        await self.conn.write_message(orjson.dumps(message).decode())

    async def closed(self, timeout: float = TIMEOUT_S) -> tuple[int | None, str | None]:
        """Read until the server closes; the close code and reason."""
        async def drain() -> None:
            while await self.conn.read_message() is not None:
                pass
        await asyncio.wait_for(drain(), timeout)
        return self.conn.close_code, self.conn.close_reason

    def close(self) -> None:
        self.conn.close()


@dataclass
class StreamClient:
    """GET a streaming endpoint; messages decoded as each chunk arrives.

    ``chunks`` records every decoded chunk, so a test can see that each one held whole
    events (flushed per event) rather than a partial one.
    """

    headers: dict[str, str] = field(default_factory=dict)
    response_headers: dict[str, str] = field(default_factory=dict)
    chunks: list[bytes] = field(default_factory=list)
    messages: asyncio.Queue[Any] = field(default_factory=asyncio.Queue)
    done: asyncio.Future[int] | None = None
    _decoder: Streaming | None = None
    _buffer: bytes = b""

    async def open(self, url: str, kind: str) -> None:
        self.kind = kind
        opened: asyncio.Future[None] = asyncio.get_running_loop().create_future()

        def on_header(line: str) -> None:
            if ":" in line:
                k, _, v = line.partition(":")
                self.response_headers[k.strip().lower()] = v.strip()
            elif not line.strip() and not opened.done():
                self._choose_decoder()
                opened.set_result(None)

        request = tornado.httpclient.HTTPRequest(
            url, headers=self.headers, decompress_response=False,
            streaming_callback=self._on_chunk, header_callback=on_header,
            request_timeout=3600,
        )
        client = tornado.httpclient.AsyncHTTPClient(force_instance=True)
        fetch = asyncio.ensure_future(client.fetch(request, raise_error=False))
        self.done = asyncio.ensure_future(self._status(fetch))
        await asyncio.wait_for(asyncio.shield(opened), TIMEOUT_S)

    def _choose_decoder(self) -> None:
        """Before the first body chunk: the chunk callback runs before ``open`` resumes."""
        self._decoder = streaming(self.response_headers.get("content-encoding"))

    @staticmethod
    async def _status(fetch: asyncio.Future[tornado.httpclient.HTTPResponse]) -> int:
        return (await fetch).code

    def _on_chunk(self, chunk: bytes) -> None:
        data = self._decoder.decompress(chunk)
        self.chunks.append(data)
        self._buffer += data
        sep = b"\n\n" if self.kind == "sse" else b"\n"
        *complete, self._buffer = self._buffer.split(sep)
        for block in complete:
            if block:
                self.messages.put_nowait(self._parse(block))

    def _parse(self, block: bytes) -> Any:
        if self.kind == "ndjson":
            return orjson.loads(block)
        fields: dict[str, Any] = {}
        for line in block.split(b"\n"):
            name, _, value = line.partition(b":")
            fields.setdefault(name.decode(), []).append(value.removeprefix(b" ").decode())
        return fields

    async def recv(self, timeout: float = TIMEOUT_S) -> Any:
        return await asyncio.wait_for(self.messages.get(), timeout)

    async def recv_event(self, timeout: float = TIMEOUT_S) -> tuple[str, str, dict[str, Any]]:
        """The next SSE event (skipping comments and retry): id, event name, data."""
        while True:
            fields = await self.recv(timeout)
            if "data" in fields:
                data = orjson.loads("\n".join(fields["data"]))
                return fields["id"][0], fields["event"][0], data


def metric(text: str, name: str, **labels: str) -> float:
    """One sample of a Prometheus exposition, parsed by prometheus_client itself."""
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and sample.labels == labels:
                return float(sample.value)
    raise AssertionError(f"{name} {labels} not in /metrics")


def follows(last: int, msg: dict[str, Any]) -> bool:
    """``msg`` (a batch, or a merged one) comes right after seq ``last``."""
    return msg.get("first_seq", msg["seq"]) == last + 1
