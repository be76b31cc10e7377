"""What the fuzz tests share: the fuzzing server and its healthy client, Hypothesis settings
and strategies, raw requests and their answers, and WebSocket conversations with what the
contract says each message must get."""

from __future__ import annotations

import dataclasses
import json
import time
import urllib.parse
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
import tornado
import tornado.httputil
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dashboard.core.params import MAX_BARS, MAX_CLIENT_MESSAGE_BYTES
from dashboard.server import MAX_HEADER_BYTES
from tests.conftest import TEST_CONFIG
from tests.healthy import Watched
from tests.rawhttp import Head, RawConnection
from tests.rawws import (
    OP_BINARY,
    OP_CLOSE,
    OP_PING,
    OP_PONG,
    OP_TEXT,
    RawWebSocket,
    read_frame,
)

SYMBOLS = ("AAPL", "MSFT", "BRK.B", "BTC-USD", "EUR/USD", "^GSPC")
#: The message rate limit out of the way, so that the fuzzer exercises parsing (the limit
#: itself has its own test below).
CONFIG = dataclasses.replace(TEST_CONFIG, symbols=SYMBOLS, max_client_msgs_per_s=1e6)


def fuzz(examples: int) -> settings:
    """The same cases on every run and machine (``derandomize``), and no example database
    written into the checkout."""
    return settings(
        max_examples=examples, deadline=None, derandomize=True, database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )


@pytest.fixture(scope="module")
def server() -> Iterator[Watched]:
    with Watched.serving(CONFIG) as watched:
        yield watched


@pytest.fixture
def live(server: Watched) -> Watched:
    server.logs.records.clear()  # each test answers for its own records
    return server


# -- query parameters -------------------------------------------------------------------------

ENDPOINTS = {
    "/ws": ("symbols", "encoding", "max_hz", "since"),
    "/sse": ("symbols", "max_hz", "last_event_id"),
    "/stream": ("symbols", "max_hz", "since"),
    "/api/snapshot": ("symbols",),
    "/api/bars": ("symbol", "interval", "limit"),
    "/api/symbols": (),
}
STREAMS = ("/ws", "/sse", "/stream")
HTTP_ERROR_CODES = {"bad_request", "unknown_symbol"}
#: What no answer may contain: a traceback, or where the server's code lives.
LEAKS = (
    b"Traceback", b'File "', str(Path(__file__).resolve().parent.parent).encode(),
    str(Path(tornado.__file__).resolve().parent.parent).encode(),
)

TRICKY = (
    "", " ", ",", ",,AAPL,", "AAPL,AAPL", "aapl", "json", "br", "deflate", "JSON", "1s", "1m",
    "0", "-1", "+1", "1.5", "1e309", "1e-320", "nan", "inf", "-0", "0x1F", "1_000", "١٢",
    "%", "%0d%0a", "%00", "%zz", "%ff%fe", "\r\n", "\x00", "\x1b[31m", "\x85", "\u2028",
    "../../etc/passwd", "<script>alert(1)</script>", "'\"", "&symbols=AAPL", "a=b=c",
)
NUMBERS: st.SearchStrategy[bytes] = st.one_of(
    st.integers(-(2**80), 2**80).map(str).map(str.encode),
    st.floats().map(repr).map(str.encode),
    st.builds(  # padded with zeros, some past the 4300 digits that int() converts
        lambda pad, n, tail: b"0" * pad + str(n).encode() + b"0" * tail,
        st.integers(0, 6), st.integers(0, 10**6), st.integers(0, 20) | st.integers(4290, 6000),
    ),
)
VALUES: st.SearchStrategy[bytes] = st.one_of(
    st.sampled_from(SYMBOLS + TRICKY).map(str.encode),
    st.text(max_size=40).map(str.encode),  # any code point but surrogates, controls too
    st.lists(st.sampled_from(SYMBOLS) | st.text(max_size=6), max_size=30)
    .map(",".join).map(str.encode),
    NUMBERS,
    st.text(min_size=500, max_size=2000).map(str.encode),
    st.binary(max_size=30),  # not UTF-8
)
SEQS = st.integers(0, 2**62).map(str)
#: Good values of each parameter: a query good but for one value reaches as far into the
#: server as that value can go.
GOOD: dict[str, st.SearchStrategy[str]] = {
    "symbols": st.lists(st.sampled_from(SYMBOLS), max_size=6).map(",".join),
    "symbol": st.sampled_from(SYMBOLS),
    "encoding": st.sampled_from(["json", "br", "deflate"]),
    "max_hz": st.floats(0.001, 1e6).map(str),
    "since": SEQS, "last_event_id": SEQS,
    "interval": st.sampled_from(["1s", "1m"]),
    "limit": st.integers(1, MAX_BARS).map(str),
}
#: Parameters that take a number, and so get hostile numbers more often.
NUMERIC = ("max_hz", "since", "last_event_id", "limit")


def parameter(name: str) -> st.SearchStrategy[list[bytes]]:
    """The values ``name`` is given: none, a good one, or hostile ones (repeated, the server
    reads the last)."""
    hostile = NUMBERS | VALUES if name in NUMERIC else VALUES
    good = GOOD[name].map(lambda v: [v.encode()])
    return st.just([]) | good | st.lists(hostile, min_size=1, max_size=3)


def queries(names: tuple[str, ...]) -> st.SearchStrategy[list[tuple[bytes, bytes]]]:
    """An endpoint's own parameters, each absent, good or hostile, and unknown ones, in any
    order."""
    return st.tuples(
        st.fixed_dictionaries({name: parameter(name) for name in names}),
        st.lists(st.tuples(VALUES, VALUES), max_size=2),
    ).flatmap(lambda t: st.permutations(
        [(name.encode(), v) for name, values in t[0].items() for v in values] + t[1]
    ))


def good_queries(names: tuple[str, ...]) -> st.SearchStrategy[list[tuple[bytes, bytes]]]:
    """An endpoint's own parameters, each absent or good (``symbol`` is required)."""
    required = {name: GOOD[name] for name in names if name == "symbol"}
    optional = {name: GOOD[name] for name in names if name != "symbol"}
    return st.fixed_dictionaries(required, optional=optional).map(
        lambda d: [(name.encode(), value.encode()) for name, value in d.items()])


#: Header values as the grammar allows them (RFC 9110 §5.5: no controls, no outer space),
#: so that the request reaches the handler.
HEADER_VALUES = VALUES.map(
    lambda v: bytes(c for c in v if c >= 0x20 and c != 0x7F).strip(b" \t")
).filter(bool)


def quoted(data: bytes) -> bytes:
    return urllib.parse.quote_from_bytes(data, safe="").encode()


def raw(data: bytes) -> bytes:
    """As it came, but for the bytes that would end the request line (RFC 9112 §3)."""
    return b"".join(b"%%%02X" % c if c <= 0x20 or c == 0x7F else bytes([c]) for c in data)


def every_byte(data: bytes) -> bytes:
    """Each byte percent-escaped, letters too: ``%74%6F%6B%65%6E`` is ``token``."""
    return b"".join(b"%%%02X" % c for c in data)


ESCAPES = (quoted, raw, every_byte)


def query(pairs: list[tuple[bytes, bytes]], escape: Callable[[bytes], bytes]) -> bytes:
    return b"&".join(escape(name) + b"=" + escape(value) for name, value in pairs)


@dataclasses.dataclass(frozen=True)
class Answer:
    """What one request got: the size of the request's head, the answer's head (None: closed
    without one), the body unless it is a stream, and after an upgrade the first frame."""

    sent: int
    head: Head | None
    body: bytes = b""
    frame: tuple[int, bytes] | None = None

    @property
    def status(self) -> int | None:
        return None if self.head is None else self.head.status


def ask(port: int, target: bytes, headers: list[tuple[str, bytes]], stream: bool,
        first_frame: bool = False) -> Answer:
    """One request on a fresh connection; a stream is left by closing the socket
    mid-stream, after its first frame if it is a WebSocket and ``first_frame``."""
    conn = RawConnection(port)
    try:
        sent = conn.request(target, headers)
        head = conn.head()
        if head is None:
            return Answer(sent, head)
        if head.status == 101 and first_frame:
            return Answer(sent, head, frame=read_frame(conn))
        if head.status in (101, 200) and stream:
            return Answer(sent, head)
        return Answer(sent, head, conn.body(head))
    finally:
        conn.close()


def assert_answered(answer: Answer, codes: set[str] = HTTP_ERROR_CODES) -> None:
    """A success or a 4xx with the contract's JSON error of one of ``codes``; no traceback,
    no path of the server."""
    head, body = answer.head, answer.body
    assert head is not None, "closed without an answer"
    assert head.status in (101, 200) or 400 <= head.status < 500, head
    assert (head.status == 431) == (answer.sent > MAX_HEADER_BYTES), (head, answer.sent)
    for leak in LEAKS:
        assert leak not in body, body[:300]
    if head.status >= 400:
        assert head.headers["content-type"] == "application/json"
        error = orjson.loads(body)
        assert error.keys() == {"type", "code", "message"} and error["type"] == "error"
        assert error["code"] in codes and isinstance(error["message"], str)
    elif body:
        orjson.loads(body)


class Conversation:
    """One WebSocket connection to talk over, answering the server's pings, reopened
    whenever the server closes it; ``seen`` is every symbol its batches and snapshots held."""

    def __init__(self, port: int, query: str = "symbols=AAPL") -> None:
        self.port = port
        self.query = query
        self.turn = 0
        self.seen: set[str] = set()
        self.ws = self._open()

    def _open(self) -> RawWebSocket:
        ws = RawWebSocket(self.port, f"/ws?{self.query}")
        assert ws.status == 101
        return ws

    def exchange(self, opcode: int, payload: bytes) -> tuple[list[dict[str, Any]], int | None]:
        """Send one message, then a ping op: what the server answered before that pong,
        or the close code if it closed instead (1006: without a close frame)."""
        self.turn += 1
        token = f"sync-{self.turn}"
        try:
            self.ws.send(opcode, payload)
            self.ws.send(OP_TEXT, orjson.dumps({"op": "ping", "id": token}))
        except OSError:
            pass  # closed under us: the reading below says how
        replies: list[dict[str, Any]] = []
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                op, data = self.ws.frame()
            except ConnectionError:
                return replies, self._reopen(1006)
            if op == OP_PING:
                self.ws.send(OP_PONG, data)
            elif op == OP_CLOSE:
                return replies, self._reopen(int.from_bytes(data[:2], "big"))
            else:
                msg = orjson.loads(data)
                if msg == {"type": "pong", "id": token, "ts": msg.get("ts")}:
                    return replies, None
                if msg["type"] == "batch":
                    self.seen.update(msg["ticks"]["sym"])
                elif msg["type"] == "snapshot":
                    self.seen.update(msg["quotes"]["sym"])
                else:
                    replies.append(msg)
        raise AssertionError(f"no pong for {token} within 10 s")

    def _reopen(self, code: int) -> int:
        self.ws.close()
        self.ws = self._open()
        return code

    def close(self) -> None:
        self.ws.close()


def allowed_answers(opcode: int, payload: bytes, permitted: frozenset[str]) -> set[str]:
    """What the contract lets the server answer a message with: ``none``, ``pong``, or an
    error code; subscribing to a symbol outside ``permitted`` (the token's) is forbidden."""
    if opcode == OP_BINARY:
        return {"bad_request"}
    try:
        msg = orjson.loads(payload)
    except orjson.JSONDecodeError:
        return {"bad_request"}
    if not isinstance(msg, dict):
        return {"bad_request"}
    op = msg.get("op")
    if op == "ping":
        return {"pong", "bad_request"}  # an id it will not echo back is refused
    if op in ("subscribe", "unsubscribe"):
        names = msg.get("symbols")
        if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
            return {"bad_request"}
        if not set(names) <= set(SYMBOLS):
            return {"unknown_symbol"}
        return {"forbidden"} if op == "subscribe" and refused(names, permitted) else {"none"}
    return {"unknown_op"}


def refused(names: list[str], permitted: frozenset[str]) -> list[str]:
    """The names outside ``permitted``, in the feed's order, as a refusal names them."""
    return [name for name in SYMBOLS if name in names and name not in permitted]


def assert_contract_answer(opcode: int, payload: bytes, replies: list[dict[str, Any]],
                           closed: int | None, permitted: frozenset[str]) -> None:
    if len(payload) > MAX_CLIENT_MESSAGE_BYTES:
        assert closed == 1009, f"too big, yet {closed}"
        return
    assert closed is None, f"closed with {closed}"
    assert len(replies) <= 1, replies
    reply = replies[0] if replies else {"type": "none"}
    answer = reply["code"] if reply["type"] == "error" else reply["type"]
    assert answer in allowed_answers(opcode, payload, permitted), (payload[:200], replies)
    if answer == "pong":
        assert reply["id"] == orjson.loads(payload).get("id")
    elif answer == "forbidden":
        names = refused(orjson.loads(payload)["symbols"], permitted)
        assert reply["message"] == "symbol not allowed: " + ", ".join(map(repr, names))
    elif reply["type"] == "error":
        assert reply.keys() == {"type", "code", "message"} and reply["message"]


LEAVES = (
    st.none() | st.booleans() | st.floats() | st.text(max_size=12)
    | st.integers(-(2**70), 2**70) | st.sampled_from(SYMBOLS)
)
JUNK = st.recursive(
    LEAVES, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner,
                                                                        max_size=4),
    max_leaves=12,
)
SYMBOL_LISTS = (
    st.lists(st.sampled_from(SYMBOLS), max_size=8)
    | st.lists(st.sampled_from(SYMBOLS) | st.text(max_size=8) | LEAVES, max_size=8)
    | st.lists(st.sampled_from(SYMBOLS), min_size=300, max_size=700)  # near and over the size
    | JUNK
)
OPS = st.sampled_from(["subscribe", "unsubscribe", "ping"]) | st.text(max_size=10) | JUNK
CLIENT_OPS = st.builds(
    lambda extra, known: {**extra, **known},
    st.dictionaries(st.text(max_size=8), JUNK, max_size=3),
    st.fixed_dictionaries({}, optional={"op": OPS, "symbols": SYMBOL_LISTS, "id": JUNK}),
)
#: Client messages as a text frame carries them: JSON objects built around the ops (with
#: Python's ``json``, which also writes NaN, Infinity and integers past 64 bits), JSON of
#: any shape, text made of JSON's own characters, and any text at all.
TEXT_MESSAGES = st.one_of(
    st.tuples(CLIENT_OPS | JUNK, st.booleans()).map(
        lambda m: json.dumps(m[0], ensure_ascii=m[1]).encode()),
    st.text(alphabet='{}[]":,.0123456789eE+-trufalsn\\ ', max_size=60).map(str.encode),
    st.text(max_size=200).map(str.encode),
)


#: Binary frames: any bytes, text messages, and sizes either side of the limit.
BINARY_MESSAGES = st.binary(max_size=300) | TEXT_MESSAGES | st.binary(min_size=4000,
                                                                      max_size=4200)


def converse(watched: Watched, talk: Conversation, opcode: int,
             messages: st.SearchStrategy[bytes], examples: int, permitted: frozenset[str]) -> None:
    """Each message gets the contract's answer on ``talk``, which never gets a symbol
    outside ``permitted``; the healthy client is unharmed."""

    @fuzz(examples)
    @given(message=messages)
    def exchange(message: bytes) -> None:
        replies, closed = talk.exchange(opcode, message)
        assert_contract_answer(opcode, message, replies, closed, permitted)

    try:
        exchange()
    finally:
        talk.close()
    assert talk.seen <= permitted, talk.seen - permitted
    watched.assert_unharmed()
