"""Content coding of event streams without a server: negotiation, and streams that real
decoders read whole, however many clients shared the bytes and wherever each one joined."""

from __future__ import annotations

import random
import zlib

import numpy as np
import pytest

from dashboard.core.messages import Message
from dashboard.core.payload import Form, Payload
from dashboard.loadtest.decoders import streaming, whole
from dashboard.wire import sse
from dashboard.wire.content_encoding import (
    Blocks,
    Coding,
    adler32_combine,
    coder,
    negotiate,
)

CHROMIUM = "gzip, deflate, br, zstd"  # what Chromium 156 sends, even on http://127.0.0.1


@pytest.mark.parametrize("header, chosen", [
    (CHROMIUM, "zstd"),
    ("gzip, deflate, br", "deflate"),
    ("gzip, br", "gzip"),
    ("br", "br"),
    ("br;q=1, zstd;q=0.5", "br"),  # the client's q-values come first
    ("br;q=0, gzip;q=0.5", "gzip"),
    ("ZSTD", "zstd"),
    ("*", "zstd"),
    ("*;q=0.5, br", "br"),
    ("identity", "identity"),
    ("", "identity"),
    (None, "identity"),  # no preference: nothing a client might not decode
    ("x-unknown", "identity"),
    ("gzip;q=0, br;q=0", "identity"),
    ("br;q=garbage, gzip", "gzip"),
    ("identity;q=0, gzip", "gzip"),
    ("*;q=0, identity", "identity"),
    ("identity;q=0", None),  # nothing acceptable: 406
    ("*;q=0", None),
])
def test_negotiation_prefers_the_shareable_codings_and_respects_q_values(header, chosen):
    coding = negotiate(header)
    assert (coding.value if coding else None) == chosen


def batch(seq: int, n: int = 40) -> Payload:
    rng = np.random.default_rng(seq)
    message: Message = {"type": "batch", "seq": seq, "ts": 1.7e12 + seq, "ticks": {
        "sym": [f"S{i}" for i in rng.integers(0, 20, n)], "price": rng.random(n) * 100,
        "size": rng.integers(0, 500, n).astype(np.float64),
    }}
    return Payload(message)


@pytest.mark.parametrize("coding", list(Coding))
@pytest.mark.parametrize("plain", [Form.SSE, Form.NDJSON])
def test_clients_that_share_the_bytes_each_get_a_whole_stream_event_by_event(coding, plain):
    """Two clients of one group, the second joining later with an opening of its own: the
    shared events are the very same bytes for both, each chunk decodes whole on arrival,
    and each whole response decodes with its trailer checked."""
    form = plain.coded(coding)
    events = [batch(seq) for seq in range(1, 9)]
    first, second = coder(coding), coder(coding)
    streams: dict[int, list[bytes]] = {1: [first.start()], 2: []}
    plains: dict[int, list[bytes]] = {1: [], 2: []}
    decoders = {1: streaming(coding.value), 2: streaming(coding.value)}

    def send(client: int, conn, data: bytes, plain_bytes: bytes) -> None:
        wire = conn.write(data)
        if coding in (Coding.ZSTD, Coding.DEFLATE, Coding.GZIP):
            assert wire is data  # no per-client work on the bytes
        streams[client].append(wire)
        plains[client].append(plain_bytes)
        assert decoders[client].decompress(wire) == plain_bytes  # whole on arrival

    assert decoders[1].decompress(streams[1][0]) == b""
    for i, payload in enumerate(events):
        shared = payload.form(form)
        if i == 3:  # the second client joins: its header, then an opening of its own
            streams[2].append(second.start())
            assert decoders[2].decompress(streams[2][0]) == b""
            opening = sse.retry(2000)
            send(2, second, second.own(opening), opening)
        send(1, first, shared, payload.form(plain))
        if i >= 3:
            send(2, second, shared, payload.form(plain))
    for client, conn in ((1, first), (2, second)):
        body = b"".join(streams[client]) + conn.finish()
        assert whole(coding.value, body) == b"".join(plains[client])


def test_a_coded_payload_form_is_its_plain_form_encoded_once():
    p = batch(3)
    assert p.form(Form.SSE_ZSTD) is p.form(Form.SSE_ZSTD)
    assert whole("zstd", p.form(Form.SSE_ZSTD)) == p.form(Form.SSE)
    blocks = p.form(Form.NDJSON_DEFLATE)
    assert isinstance(blocks, Blocks) and blocks.plain == p.form(Form.NDJSON)
    assert blocks.endswith(b"\x00\x00\xff\xff")  # a sync flush: byte-aligned, not final
    assert zlib.decompressobj(-zlib.MAX_WBITS).decompress(blocks) == p.form(Form.NDJSON)
    assert Form.SSE.coded(Coding.GZIP) is Form.SSE.coded(Coding.DEFLATE) is Form.SSE_DEFLATE
    assert Form.NDJSON.coded(Coding.BR) is Form.NDJSON  # compressed per connection


def test_adler32_combines_as_if_computed_over_the_whole():
    rng = random.Random(5)
    for _ in range(200):
        a = rng.randbytes(rng.choice([0, 1, 10, 1000, 70_000]))
        b = rng.randbytes(rng.choice([0, 1, 10, 1000, 70_000, 140_000]))
        assert adler32_combine(zlib.adler32(a), zlib.adler32(b), len(b)) == zlib.adler32(a + b)
