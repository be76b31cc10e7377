"""Query parameters and client messages: valid ones parsed, bad ones refused with a code."""

import numpy as np
import pytest

from dashboard.core.params import (
    DEFAULT_BARS,
    MAX_BARS,
    BarsRequest,
    Ping,
    Subscribe,
    Unsubscribe,
    apply_op,
    bars_request,
    client_op,
    stream_request,
)
from dashboard.core.symbols import SymbolTable
from dashboard.errors import BadRequest, UnknownOp, UnknownSymbol
from dashboard.wire.codecs import Encoding

TABLE = SymbolTable(["AAPL", "MSFT", "SPY", "BTC-USD"])


def request(since=None, **query):
    return stream_request(query.get, TABLE, since=since, allow_encoding=True)


def test_defaults_are_every_symbol_json_and_no_resume():
    r = request()
    assert r.symbols is None and r.encoding is Encoding.JSON
    assert r.since is None and r.max_hz is None


def test_symbols_encoding_since_and_max_hz_are_parsed():
    r = request(since="42", symbols="SPY,AAPL, BTC-USD", encoding="br", max_hz="2.5")
    assert r.symbols.tolist() == [0, 2, 3]
    assert r.encoding is Encoding.BR and r.since == 42 and r.max_hz == 2.5


@pytest.mark.parametrize("query, since, error", [
    ({"encoding": "gzip"}, None, BadRequest),
    ({"symbols": "AAPL,NOPE"}, None, UnknownSymbol),
    ({}, "-1", BadRequest),
    ({}, "1.5", BadRequest),
    ({}, "abc", BadRequest),
    ({}, "١٢", BadRequest),  # non-ASCII digits
    ({"max_hz": "0"}, None, BadRequest),
    ({"max_hz": "1e-300"}, None, BadRequest),  # no frame would ever come
    ({"max_hz": "0.0002"}, None, BadRequest),
    ({"max_hz": "nan"}, None, BadRequest),
    ({"max_hz": "fast"}, None, BadRequest),
])
def test_bad_query_values_are_refused(query, since, error):
    with pytest.raises(error) as e:
        request(since=since, **query)
    assert e.value.message


def test_unknown_symbols_are_named_in_the_error():
    with pytest.raises(UnknownSymbol) as e:
        TABLE.resolve(["AAPL", "ZZZ"])
    assert "ZZZ" in e.value.message and e.value.code == "unknown_symbol"


def test_client_ops_parse():
    assert client_op('{"op":"ping","id":7}', TABLE) == Ping(7)
    sub = client_op('{"op":"subscribe","symbols":["MSFT"]}', TABLE)
    assert isinstance(sub, Subscribe) and sub.symbols.tolist() == [1]
    unsub = client_op(b'{"op":"unsubscribe","symbols":["AAPL","MSFT"]}', TABLE)
    assert isinstance(unsub, Unsubscribe) and unsub.symbols.tolist() == [0, 1]


@pytest.mark.parametrize("text, code", [
    ("not json", "bad_request"),
    ("[1,2]", "bad_request"),
    ('{"op":"subscribe"}', "bad_request"),
    ('{"op":"subscribe","symbols":"AAPL"}', "bad_request"),
    ('{"op":"subscribe","symbols":[1]}', "bad_request"),
    ('{"op":"subscribe","symbols":["NOPE"]}', "unknown_symbol"),
    ('{"op":"dance"}', "unknown_op"),
    ("{}", "unknown_op"),
])
def test_bad_client_messages_get_a_code(text, code):
    with pytest.raises(BadRequest) as e:
        client_op(text, TABLE)
    assert e.value.code == code
    assert isinstance(e.value, UnknownOp) == (code == "unknown_op")


def test_subscribe_adds_and_unsubscribe_removes():
    current = np.array([0, 2], np.int32)
    assert apply_op(current, Subscribe(np.array([1, 2], np.int32))).tolist() == [0, 1, 2]
    assert apply_op(current, Unsubscribe(np.array([2, 3], np.int32))).tolist() == [0]


def bars(**query):
    return bars_request(query.get, TABLE)


def test_bars_take_a_symbol_an_interval_and_a_limit():
    assert bars(symbol="MSFT", interval="1m", limit="7") == BarsRequest(1, "1m", 7)
    assert bars(symbol="AAPL") == BarsRequest(0, "1s", DEFAULT_BARS)


@pytest.mark.parametrize("query", [
    {},
    {"symbol": "NOPE"},
    {"symbol": "AAPL", "interval": "5s"},
    {"symbol": "AAPL", "limit": "0"},
    {"symbol": "AAPL", "limit": str(MAX_BARS + 1)},
    {"symbol": "AAPL", "limit": "-5"},
    {"symbol": "AAPL", "limit": "0000010000"},  # leading zeros do not pass a larger limit
    # past Python's int-from-string limit int() raises: this was a 500 with a traceback
    {"symbol": "AAPL", "limit": "000001" + "0" * 5000},
])
def test_bad_bars_requests_are_refused(query):
    with pytest.raises(BadRequest) as e:
        bars(**query)
    assert e.value.message
