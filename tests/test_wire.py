"""Encoders, WebSocket framing and SSE formatting, without a server."""

import struct
import zlib

import brotli
import numpy as np
import orjson
import pytest

from dashboard.core.payload import Form, Payload
from dashboard.wire import codecs, sse, wsframe
from dashboard.wire.codecs import Encoding

MESSAGE = {"type": "batch", "seq": 7, "ts": 1.5,
           "ticks": {"sym": ["AAPL"], "price": np.array([189.12]), "size": np.array([100])}}


def test_numpy_columns_serialize_to_plain_json_numbers():
    assert orjson.loads(codecs.dumps(MESSAGE))["ticks"] == {
        "sym": ["AAPL"], "price": [189.12], "size": [100]}


@pytest.mark.parametrize("encoding", list(Encoding))
def test_every_encoding_decodes_to_the_same_message(encoding):
    data = codecs.encode(codecs.dumps(MESSAGE), encoding)
    if encoding is Encoding.BR:
        data = brotli.decompress(data)
    elif encoding is Encoding.DEFLATE:
        data = zlib.decompress(data, -zlib.MAX_WBITS)
    assert orjson.loads(data) == orjson.loads(codecs.dumps(MESSAGE))


def test_deflate_frames_are_complete_independent_raw_streams():
    first = codecs.deflate_raw(b'{"a":1}' * 50)
    second = codecs.deflate_raw(b'{"a":1}' * 50)
    assert first == second  # no window shared between frames
    d = zlib.decompressobj(-zlib.MAX_WBITS)
    assert d.decompress(first) == b'{"a":1}' * 50
    assert d.eof  # the final block is set
    with pytest.raises(zlib.error):
        zlib.decompress(first)  # no zlib header


@pytest.mark.parametrize("n", [0, 125, 126, 65535, 65536])
def test_websocket_frames_are_unmasked_single_frames_with_the_right_length(n):
    payload = b"x" * n
    f = wsframe.frame(payload, wsframe.OP_BINARY)
    assert f[0] == 0x82  # FIN + binary
    assert f[1] & 0x80 == 0  # unmasked
    if n < 126:
        assert f[1] == n and f[2:] == payload
    elif n < 65536:
        assert f[1] == 126 and struct.unpack("!H", f[2:4])[0] == n and f[4:] == payload
    else:
        assert f[1] == 127 and struct.unpack("!Q", f[2:10])[0] == n and f[10:] == payload


def test_sse_event_has_id_event_and_data_lines():
    assert sse.event(b'{"a":1}', event="batch", id=17) == (
        b'id: 17\nevent: batch\ndata: {"a":1}\n\n')


def test_sse_fields_cannot_be_broken_by_newlines():
    out = sse.event(b"one\ntwo", event="bat\r\nch", id="1\n2")
    assert out == b"id: 12\nevent: batch\ndata: one\ndata: two\n\n"
    assert sse.comment("keep\nalive") == b": keepalive\n\n"
    assert sse.retry(2000) == b"retry: 2000\n\n"


def test_a_payload_builds_each_form_once_and_all_forms_carry_the_same_message():
    p = Payload({"type": "batch", "seq": 3, "ts": 1.0})
    assert p.form(Form.WS_BR) is p.form(Form.WS_BR)
    text = p.form(Form.WS_JSON)
    assert text[0] == 0x81 and orjson.loads(text[2:]) == p.message
    assert orjson.loads(brotli.decompress(p.form(Form.WS_BR)[2:])) == p.message
    assert orjson.loads(zlib.decompress(p.form(Form.WS_DEFLATE)[2:], -15)) == p.message
    assert p.form(Form.SSE).startswith(b"id: 3\nevent: batch\ndata: {")
    assert p.form(Form.NDJSON) == p.json + b"\n"


def test_the_budget_grants_the_best_compression_to_big_payloads_until_it_is_spent():
    budget = codecs.CompressionBudget(seconds=10_000 * codecs.BEST_SECONDS_PER_BYTE)
    assert budget.quality(codecs.BEST_MIN_BYTES - 1) == codecs.BROTLI_QUALITY  # too small
    assert budget.quality(6_000) == codecs.BROTLI_BEST_QUALITY
    assert budget.quality(5_000) == codecs.BROTLI_QUALITY  # only 4,000 left
    assert budget.quality(4_000) == codecs.BROTLI_BEST_QUALITY
    assert budget.quality(codecs.BEST_MIN_BYTES) == codecs.BROTLI_QUALITY  # spent
    budget.reset(seconds=10_000 * codecs.BEST_SECONDS_PER_BYTE)
    assert budget.quality(10_000) == codecs.BROTLI_BEST_QUALITY
    budget.reset(seconds=0.0)  # no CPU to spare
    assert budget.quality(10_000) == codecs.BROTLI_QUALITY
