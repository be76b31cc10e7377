"""One message and the bytes of each wire form it is sent in, each built at most once.

A batch's payload for a selection is shared by every client of that selection; a client
takes the form its transport speaks (a ready WebSocket frame, an SSE event, an NDJSON line)
and writes those bytes as they are.
"""

from __future__ import annotations

import enum

from dashboard.core.batcher import Batch
from dashboard.core.messages import Message
from dashboard.wire import codecs, sse, wsframe
from dashboard.wire.codecs import Encoding
from feeds.base import Ticks


class Form(enum.Enum):
    """The bytes a transport writes for one message."""

    WS_JSON = "ws-json"
    WS_BR = "ws-br"
    WS_DEFLATE = "ws-deflate"
    SSE = "sse"
    NDJSON = "ndjson"

    @classmethod
    def websocket(cls, encoding: Encoding) -> Form:
        return _WS_FORMS[encoding]


_WS_FORMS = {
    Encoding.JSON: Form.WS_JSON, Encoding.BR: Form.WS_BR, Encoding.DEFLATE: Form.WS_DEFLATE,
}


class Payload:
    """``batch`` and ``ticks`` (the batch filtered to the selection) are kept for a batch
    message, so a client that must conflate can merge it without decoding anything."""

    __slots__ = ("_forms", "_json", "batch", "message", "ticks")

    def __init__(
        self, message: Message, batch: Batch | None = None, ticks: Ticks | None = None
    ) -> None:
        self.message = message
        self.batch = batch
        self.ticks = ticks
        self._json: bytes | None = None
        self._forms: dict[Form, bytes] = {}

    @property
    def json(self) -> bytes:
        if self._json is None:
            self._json = codecs.dumps(self.message)
        return self._json

    def form(self, form: Form, budget: codecs.BrotliBudget | None = None) -> bytes:
        """The bytes of ``form``, built on first use: a brotli one at the quality
        ``budget`` grants (the default quality without one)."""
        data = self._forms.get(form)
        if data is None:
            data = self._forms[form] = self._build(form, budget)
        return data

    def _build(self, form: Form, budget: codecs.BrotliBudget | None) -> bytes:
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
