"""One message and the bytes of each wire form it is sent in, each built at most once.

A batch's payload for a selection is shared by every client of that selection; a client
takes the form its transport speaks (a ready WebSocket frame, an SSE event, an NDJSON line,
either of those as a zstd frame or as deflate blocks) and writes those bytes as they are.
"""

from __future__ import annotations

import enum

from dashboard.core.batcher import Batch
from dashboard.core.messages import Message
from dashboard.wire import codecs, sse, wsframe
from dashboard.wire.codecs import Encoding
from dashboard.wire.content_encoding import (
    ZSTD_BEST_LEVEL,
    ZSTD_LEVEL,
    Coding,
    deflate_blocks,
    zstd_frame,
)
from feeds.base import Ticks


class Form(enum.Enum):
    """The bytes a transport writes for one message."""

    WS_JSON = "ws-json"
    WS_BR = "ws-br"
    WS_DEFLATE = "ws-deflate"
    SSE = "sse"
    SSE_ZSTD = "sse-zstd"
    SSE_DEFLATE = "sse-deflate"
    NDJSON = "ndjson"
    NDJSON_ZSTD = "ndjson-zstd"
    NDJSON_DEFLATE = "ndjson-deflate"

    @classmethod
    def websocket(cls, encoding: Encoding) -> Form:
        return _WS_FORMS[encoding]

    def coded(self, coding: Coding) -> Form:
        """This stream form as a client with ``coding`` takes it: encoded once for all in a
        shareable coding (deflate blocks serve gzip too), plain for br and identity, which
        its connection compresses or sends as it is."""
        return _CODED.get((self, coding), self)


_WS_FORMS = {
    Encoding.JSON: Form.WS_JSON, Encoding.BR: Form.WS_BR, Encoding.DEFLATE: Form.WS_DEFLATE,
}
_CODED = {
    (Form.SSE, Coding.ZSTD): Form.SSE_ZSTD, (Form.NDJSON, Coding.ZSTD): Form.NDJSON_ZSTD,
    **{(Form.SSE, c): Form.SSE_DEFLATE for c in (Coding.DEFLATE, Coding.GZIP)},
    **{(Form.NDJSON, c): Form.NDJSON_DEFLATE for c in (Coding.DEFLATE, Coding.GZIP)},
}
#: The forms that are the JSON with a frame around it.
_FRAMED = (Form.WS_JSON, Form.SSE, Form.NDJSON)
#: Each coded form, and the plain form it codes.
_PLAIN = {
    Form.SSE_ZSTD: Form.SSE, Form.SSE_DEFLATE: Form.SSE,
    Form.NDJSON_ZSTD: Form.NDJSON, Form.NDJSON_DEFLATE: Form.NDJSON,
}


class Payload:
    """``batch`` and ``ticks`` (the batch filtered to the selection) are kept for a batch
    message, so a client that must conflate can merge it without decoding anything."""

    __slots__ = ("_compact", "_forms", "_json", "batch", "message", "ticks")

    def __init__(
        self, message: Message, batch: Batch | None = None, ticks: Ticks | None = None
    ) -> None:
        self.message = message
        self.batch = batch
        self.ticks = ticks
        self._json: bytes | None = None
        self._forms: dict[Form, bytes] = {}
        self._compact = False

    def compact(self) -> None:
        """Keep what is costly to build again and nothing twice: the message's columns
        (copies of the batch's, as JSON-ready arrays) go, and so do the forms that only frame
        the JSON (a resume frames it again for one copy); the JSON itself is copied to its
        length, for orjson's buffer is reserved at several times that for number arrays."""
        if not self._compact:
            json = bytes(memoryview(self.json))
            self.message = {"type": self.message["type"], "seq": self.message.get("seq")}
            self._json = json
            self._compact = True
        for form in _FRAMED:
            self._forms.pop(form, None)

    @property
    def nbytes(self) -> int:
        """The bytes of every form built so far, the JSON included."""
        return len(self._json or b"") + sum(len(data) for data in self._forms.values())

    @property
    def json(self) -> bytes:
        if self._json is None:
            self._json = codecs.dumps(self.message)
        return self._json

    def form(self, form: Form, budget: codecs.CompressionBudget | None = None) -> bytes:
        """The bytes of ``form``, built on first use: a brotli or zstd one at the level
        ``budget`` grants (the default level without one)."""
        data = self._forms.get(form)
        if data is None:
            data = self._forms[form] = self._build(form, budget)
        return data

    def _build(self, form: Form, budget: codecs.CompressionBudget | None) -> bytes:
        plain = _PLAIN.get(form)
        if plain is not None:
            data = self.form(plain)
            if form in (Form.SSE_DEFLATE, Form.NDJSON_DEFLATE):
                return deflate_blocks(data)
            best = budget is not None and budget.best(len(self.json))
            return zstd_frame(data, ZSTD_BEST_LEVEL if best else ZSTD_LEVEL)
        if form is Form.WS_JSON:
            return wsframe.frame(self.json, wsframe.OP_TEXT)
        if form is Form.WS_BR:
            quality = codecs.BROTLI_QUALITY if budget is None else budget.quality(len(self.json))
            return wsframe.frame(codecs.brotli_compress(self.json, quality), wsframe.OP_BINARY)
        if form is Form.WS_DEFLATE:
            return wsframe.frame(codecs.encode(self.json, Encoding.DEFLATE), wsframe.OP_BINARY)
        if form is Form.SSE:
            seq = self.message.get("seq")
            return sse.event(self.json, event=self.message["type"], id=seq)
        return self.json + b"\n"
