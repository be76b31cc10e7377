"""Property-based fuzzing (Hypothesis) of everything a client sends, against one live server
while a healthy WebSocket client keeps reading on its own thread.

Every query of every endpoint is answered with a success or a 4xx carrying the contract's
JSON error, never a 5xx, a traceback or a path of the server; every WebSocket message with
what the contract says (an error, a pong, nothing, or close 1009 when too big); garbage
frames end in a closed connection. Meanwhile nothing is logged as an error or with a
traceback, no log line is forged, every connection the fuzzer opened is cleaned up, and
the healthy client gets every seq on a connection that stays open.

The same again against a server with auth on, where a ``token`` parameter and an
``Authorization`` header are client input too: a request gets what its token allows, a 401
(no valid token) or 403 (a symbol the token does not allow) with the contract's JSON and
challenge, on /ws the upgrade and then close 1008, unless the query itself is bad (the
server without auth says so), which comes first; neither the secret nor a token is ever
told or logged. Its healthy client holds a token, and a limited token's subscriptions stay
within it.
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import hmac
import json
import logging
import math
import re
import socket
import time
import urllib.parse
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
import tornado
import tornado.httputil
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from dashboard.core import auth
from dashboard.core.params import MAX_BARS, MAX_CLIENT_MESSAGE_BYTES
from dashboard.errors import Unauthorized
from dashboard.server import MAX_HEADER_BYTES
from dashboard.transports.access_log import REDACTED
from tests.conftest import TEST_CONFIG
from tests.healthy import Watched
from tests.logs import LogRecorder
from tests.rawhttp import Head, RawConnection
from tests.rawws import (
    OP_BINARY,
    OP_CLOSE,
    OP_PING,
    OP_PONG,
    OP_TEXT,
    RawWebSocket,
    encode_frame,
    handshake_headers,
    read_frame,
)
from tests.threaded import ServerThread

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
    if head is None:  # Tornado closes a request whose head is over the limit
        assert answer.sent > MAX_HEADER_BYTES, "closed without an answer"
        return
    assert head.status in (101, 200) or 400 <= head.status < 500, head
    for leak in LEAKS:
        assert leak not in body, body[:300]
    if head.status >= 400:
        assert head.headers["content-type"] == "application/json"
        error = orjson.loads(body)
        assert error.keys() == {"type", "code", "message"} and error["type"] == "error"
        assert error["code"] in codes and isinstance(error["message"], str)
    elif body:
        orjson.loads(body)


@pytest.mark.parametrize("path", ENDPOINTS)
def test_any_query_gets_a_success_or_a_json_error(live: Watched, path: str) -> None:
    @fuzz(examples=300)
    @given(pairs=queries(ENDPOINTS[path]), escape=st.sampled_from(ESCAPES),
           upgrade=st.booleans(), last_event_id=st.none() | HEADER_VALUES)
    @example(  # a limit past the 4300 digits int() converts was a 500 (random cases rarely
        # pair it with a good symbol and interval, which /api/bars checks first)
        pairs=[(b"symbol", b"AAPL"), (b"limit", b"000001" + b"0" * 5000)], escape=quoted,
        upgrade=False, last_event_id=None,
    )
    def request(pairs: list[tuple[bytes, bytes]], escape: Callable[[bytes], bytes], upgrade: bool,
                last_event_id: bytes | None) -> None:
        headers = []
        if path == "/ws" and upgrade:
            headers = handshake_headers()
        if path == "/sse" and last_event_id is not None:
            headers = [("Last-Event-ID", last_event_id)]
        target = path.encode() + b"?" + query(pairs, escape)
        answer = ask(live.port, target, headers, path in STREAMS)
        assert_answered(answer)
        if answer.status == 101:
            assert headers, "an upgrade only to a handshake"

    request()
    live.assert_unharmed()


# -- WebSocket messages ------------------------------------------------------------------------


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


@pytest.mark.parametrize("opcode, messages, examples", [
    pytest.param(OP_TEXT, TEXT_MESSAGES, 1500, id="text"),
    pytest.param(OP_BINARY, BINARY_MESSAGES, 300, id="binary"),
])
def test_any_message_gets_the_contract_answer(
    live: Watched, opcode: int, messages: st.SearchStrategy[bytes], examples: int,
) -> None:
    converse(live, Conversation(live.port), opcode, messages, examples, frozenset(SYMBOLS))


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


FRAMES = st.builds(
    encode_frame,
    opcode=st.integers(0, 15), payload=st.binary(max_size=150) | TEXT_MESSAGES,
    fin=st.booleans(), rsv=st.integers(0, 7),
    mask=st.none() | st.binary(min_size=4, max_size=4),
    length=st.none() | st.integers(0, 2**64 - 1),
)
#: Close frames in particular: codes of any value, reasons that are not UTF-8.
CLOSES = st.builds(
    lambda code, reason: encode_frame(OP_CLOSE, code + reason),
    st.binary(max_size=2), st.binary(max_size=40),
)
GARBAGE = st.binary(min_size=1, max_size=300) | st.lists(FRAMES | CLOSES, min_size=1,
                                                         max_size=4).map(b"".join)


def test_garbage_frames_end_in_a_closed_connection(live: Watched) -> None:
    @fuzz(examples=300)
    @given(garbage=GARBAGE)
    def send(garbage: bytes) -> None:
        ws = RawWebSocket(live.port, "/ws?symbols=AAPL")
        try:
            ws.sock.sendall(garbage)
            ws.sock.shutdown(socket.SHUT_WR)  # after the garbage, a FIN: nothing more comes
            deadline = time.monotonic() + 10
            while ws.sock.recv(65536):  # what the server still sends, until it closes
                assert time.monotonic() < deadline, "the server kept the connection open"
        finally:
            ws.close()

    send()
    live.assert_unharmed()


def test_junk_faster_than_the_message_rate_limit_is_closed_with_1008() -> None:
    """The fuzzing server lifts the limit; a default one closes a junk sender (errors
    count against the limit like any message)."""
    server = ServerThread(dataclasses.replace(TEST_CONFIG, max_client_msgs_per_s=5.0)).start()
    try:
        talk = Conversation(server.port)
        junk = [b"not json", b"[]", b'{"op":"dance"}', b'{"op":"subscribe","symbols":["NOPE"]}']
        closed = None
        for i in range(20):  # each turn is two messages: the junk and a ping
            replies, closed = talk.exchange(OP_TEXT, junk[i % len(junk)])
            if closed is not None:
                break
            assert replies[0]["type"] == "error"
        talk.close()
        assert closed == 1008
        assert server.metric("dashboard_rate_limit_rejections_total", reason="client_msgs") == 1
    finally:
        server.close()


# -- auth on: tokens and Authorization headers are client input too ----------------------------

SECRET = b"fuzz-token-secret-" + b"k" * 32
AUTH_CONFIG = dataclasses.replace(CONFIG, auth_token_secret=SECRET)
#: What a limited token allows: some of the feed's symbols, and one it does not have.
LIMITED = frozenset({"AAPL", "BRK.B", "EUR/USD", "NOPE"})
HS256 = {"alg": "HS256", "typ": "JWT"}


def b64(data: bytes) -> bytes:
    return base64.urlsafe_b64encode(data).rstrip(b"=")


def signed(claims: object, header: object = HS256, secret: bytes = SECRET) -> bytes:
    """A JWS compact serialization (RFC 7515 §3.1) signed with HMAC-SHA256 here, not by
    PyJWT, which refuses to encode some of the claims drawn below."""
    signing_input = b64(json.dumps(header).encode()) + b"." + b64(json.dumps(claims).encode())
    return signing_input + b"." + b64(hmac.new(secret, signing_input, hashlib.sha256).digest())


@dataclasses.dataclass(frozen=True)
class Verdict:
    """What the server must make of a token: refused for one of ``reasons``, or granting
    ``symbols`` (None: every one)."""

    reasons: frozenset[str] = frozenset()
    symbols: frozenset[str] | None = None

    def allows(self, name: str) -> bool:
        return not self.reasons and (self.symbols is None or name in self.symbols)


MISSING, INVALID, EXPIRED = (Verdict(frozenset({r})) for r in ("missing", "invalid", "expired"))


@dataclasses.dataclass(frozen=True)
class Credential:
    """A token as sent, and what it is when it arrives as it was sent."""

    text: bytes
    verdict: Verdict = INVALID


def is_time(value: object) -> bool:
    """A NumericDate (RFC 7519 §2): a finite JSON number."""
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def judged(claims: dict[str, Any], now: float) -> Verdict:
    """RFC 7519 as dashboard.core.auth documents it: ``exp`` required and ``nbf`` optional,
    NumericDates, neither past its time beyond the leeway; ``sub`` a string (§4.1.2);
    ``symbols`` a list of names. A token breaking several rules may be refused for any."""
    exp, nbf, names = claims.get("exp"), claims.get("nbf", 0), claims.get("symbols", [])
    invalid = (
        not (is_time(exp) and is_time(nbf)) or nbf > now + auth.LEEWAY_S
        or not isinstance(claims.get("sub", ""), str)
        or not (isinstance(names, list) and all(isinstance(n, str) for n in names))
    )
    expired = is_time(exp) and exp <= now - auth.LEEWAY_S
    reasons = {"invalid"} if invalid else set()
    if expired:
        reasons.add("expired")
    if reasons:
        return Verdict(frozenset(reasons))
    return Verdict(symbols=frozenset(names) if "symbols" in claims else None)


def fixed_tokens(now: float) -> tuple[Credential, ...]:
    """Tokens good for a day (every symbol, some, none), and bad in the known ways."""
    day = int(now) + 86400
    header, _, signature = signed({"exp": day, "symbols": ["AAPL"]}).split(b".")
    unsigned = b64(b'{"alg":"none","typ":"JWT"}') + b"." + b64(b'{"exp":%d}' % day) + b"."
    return (
        Credential(signed({"exp": day}), Verdict()),
        Credential(signed({"exp": day, "symbols": sorted(LIMITED)}), Verdict(symbols=LIMITED)),
        Credential(signed({"exp": day, "symbols": []}), Verdict(symbols=frozenset())),
        Credential(signed({"exp": int(now) - 3600}), EXPIRED),
        Credential(signed({"symbols": ["AAPL"]})),  # no exp
        Credential(signed({"exp": day}, secret=b"another-secret-" + b"o" * 32)),
        Credential(unsigned),
        Credential(signed({"exp": day}, header={"alg": "none"})),
        Credential(signed({"exp": day}, header={"alg": "HS512", "typ": "JWT"})),
        Credential(header + b"." + b64(b'{"exp":%d}' % day) + b"." + signature),  # tampered
    )


FIXED = fixed_tokens(time.time())
EVERY_SYMBOL_TOKEN, LIMITED_TOKEN = FIXED[0].text.decode(), FIXED[1].text.decode()

PAST, FUTURE = (st.sampled_from(offsets).map(lambda d: int(time.time()) + d)
                for offsets in ([-86400, -60], [3600, 86400]))
CLAIMS = st.fixed_dictionaries({"exp": FUTURE | FUTURE | PAST | LEAVES}, optional={
    "nbf": PAST | FUTURE | LEAVES,
    "iat": PAST | FUTURE | LEAVES,  # informational: never checked
    "sub": st.text(max_size=8) | LEAVES,
    "symbols": st.lists(st.sampled_from(sorted(LIMITED | set(SYMBOLS))), max_size=5) | JUNK,
})
#: Tokens signed with the server's secret, with claims of any type.
CLAIMED = st.builds(lambda c: Credential(signed(c), judged(c, time.time())), CLAIMS)


@fuzz(examples=500)
@given(claims=CLAIMS)
def test_any_claims_are_judged_as_rfc_7519_says(claims: dict[str, Any]) -> None:
    """The claims the live server gets below, many more of them and with no server: few of
    those reach the token check there past a bad query or another token."""
    now = time.time()
    expected = judged(claims, now)
    try:
        grant = auth.verify(SECRET, signed(claims).decode(), now)
    except Unauthorized as e:
        assert e.reason in expected.reasons, (claims, e.reason)
    else:
        assert not expected.reasons and grant.symbols == expected.symbols, (claims, grant)


#: Token-shaped credentials that are not the server's: a signature made with something
#: else, and three base64url parts of anything.
FORGED = st.one_of(
    st.builds(lambda c, sig: Credential(signed(c).rpartition(b".")[0] + b"." + b64(sig)),
              CLAIMS, st.binary(min_size=32, max_size=32)),
    st.lists(st.binary(max_size=40).map(b64), min_size=3, max_size=3)
    .map(b".".join).map(Credential),
)


def credentials(garbage: st.SearchStrategy[bytes]) -> st.SearchStrategy[Credential]:
    """Good tokens (for every symbol, some, none) in three draws of nine, so that most
    requests get past the token to the symbols it allows; else bad ones of every kind."""
    kinds = [st.sampled_from(FIXED[:3])] * 3 + [
        st.sampled_from(FIXED[3:]), CLAIMED, CLAIMED, FORGED, garbage.map(Credential)]
    return st.sampled_from(kinds).flatmap(lambda kind: kind)


#: What may surround a token in a query (percent-escaped): whitespace, which the server
#: strips, a control character and bytes that are not UTF-8, which make it invalid.
PADDINGS = [(b"", b"")] * 6 + [(b" ", b"\t"), (b"\x1f", b""), (b"\x00", b""), (b"", b"\xc3"),
                               (b"\xff", b"")]
#: A token as the value of a ``token`` parameter, and what it is.
QUERY_TOKENS = st.builds(lambda pad, c: (pad[0] + c.text + pad[1], c),
                         st.sampled_from(PADDINGS), credentials(VALUES))


@dataclasses.dataclass(frozen=True)
class Authorization:
    """An ``Authorization`` header, and the credential it carries as a bearer (RFC 6750 §2.1:
    ``Bearer 1*SP b64token``, the scheme in any case) if any."""

    value: bytes
    bearer: Credential | None = None

    @property
    def token(self) -> str | None:
        """What the bearer's credential is once outer whitespace is gone; blank: none."""
        return (self.bearer.text.decode("latin-1").strip() or None) if self.bearer else None


OTHER_SCHEMES = (b"Basic %s", b"Token %s", b"Bearer\t%s", b"Bearer%s", b"Bearer: %s", b"%s")
AUTHORIZATIONS = st.one_of(
    st.builds(
        lambda scheme, spaces, c: Authorization(scheme + b" " * spaces + c.text, c),
        st.sampled_from([b"Bearer", b"bearer", b"BEARER"]), st.integers(1, 3),
        credentials(HEADER_VALUES),
    ),
    st.builds(lambda form, c: Authorization(form % c.text), st.sampled_from(OTHER_SCHEMES),
              st.sampled_from(FIXED[:3])),
    HEADER_VALUES.filter(lambda v: not v.lower().startswith(b"bearer")).map(Authorization),
)

#: What Tornado's ``get_argument`` turns into spaces before stripping.
CONTROLS = re.compile(r"[\x00-\x08\x0e-\x1f]")


def last(target: bytes, name: str) -> str | None:
    """The last value of a query parameter, decoded (what is not UTF-8 as U+FFFD)."""
    query_string = target.partition(b"?")[2].decode("latin-1")
    values = tornado.httputil.parse_qs_bytes(query_string, keep_blank_values=True).get(name)
    return values[-1].decode("utf-8", "replace") if values else None


def argument(target: bytes, name: str) -> str | None:
    """A query parameter as Tornado's ``get_argument`` gives it to a handler: the last value,
    control characters as spaces, outer whitespace stripped."""
    value = last(target, name)
    return None if value is None else CONTROLS.sub(" ", value).strip()


def verdict_of(target: bytes, authorization: Authorization | None,
               drawn: list[Credential]) -> Verdict:
    """The token that counts (a bearer header's, else the last ``token`` parameter's, as sent
    but for outer whitespace) judged: none or blank is missing, a drawn token is what it is,
    anything else is invalid."""
    token = authorization.token if authorization else None
    token = token or (last(target, "token") or "").strip()
    if not token:
        return MISSING
    return next((c.verdict for c in drawn if c.text.decode("latin-1") == token), INVALID)


def wanted(path: str, target: bytes) -> list[str] | None:
    """The symbols a good query asks for, in the feed's order; None: every one."""
    if path == "/api/symbols":
        return None
    if path == "/api/bars":
        return [argument(target, "symbol") or ""]
    names = {n.strip() for n in (argument(target, "symbols") or "").split(",")} - {""}
    return [name for name in SYMBOLS if name in names] or None


def jwt_shaped(text: bytes) -> bool:
    """A token worth stealing, and too long to turn up by chance in an answer."""
    return len(text) >= 40 and re.fullmatch(rb"[\w-]*\.[\w-]*\.[\w-]*", text, re.ASCII) is not None


def assert_authorized(path: str, baseline: Answer, answer: Answer, verdict: Verdict,
                      asked: list[str] | None) -> None:
    """A bad query is refused as by a server without auth (query errors come first); a good
    one gets 401 without a valid token, 403 for a symbol the token does not allow (on /ws:
    the upgrade, then close 1008 saying why), else what it asked for."""
    if baseline.status is None or baseline.status >= 400:
        assert (answer.status, answer.body) == (baseline.status, baseline.body), answer
        return
    refused = [name for name in asked or () if not verdict.allows(name)]
    if verdict.reasons:
        status, code, why = 401, "unauthorized", {f"{r} token" for r in verdict.reasons}
    elif refused:
        status, code = 403, "forbidden"
        why = {"symbol not allowed: " + ", ".join(map(repr, refused))}
    else:
        status, code, why = 200, "", set()
    if path == "/ws":
        assert answer.status == 101 and answer.frame is not None, answer
        opcode, payload = answer.frame
        if status == 200:
            assert opcode in (OP_TEXT, OP_BINARY), answer.frame
            if opcode == OP_TEXT and (first := orjson.loads(payload))["type"] == "snapshot":
                assert all(verdict.allows(n) for n in first["quotes"]["sym"]), first
        else:
            assert opcode == OP_CLOSE and payload[:2] == (1008).to_bytes(2, "big"), answer.frame
            assert payload[2:].decode() in {f"{code}: {w}" for w in why}, payload
        return
    assert answer.status == status and answer.head is not None, (answer, why)
    body = orjson.loads(answer.body) if answer.body else None
    if status == 200:
        if path == "/api/symbols":
            assert body == {"symbols": [n for n in SYMBOLS if verdict.allows(n)]}
        elif path == "/api/snapshot":
            assert all(verdict.allows(n) for n in body["quotes"]["sym"]), body
        return
    assert body["code"] == code and body["message"] in why, body
    challenge = answer.head.headers["www-authenticate"]
    if status == 403:
        assert challenge == 'Bearer error="insufficient_scope"'
    elif body["message"] == "missing token":
        assert challenge == "Bearer"
    else:
        assert challenge == f'Bearer error="invalid_token", error_description="{body["message"]}"'


def assert_nothing_told(answer: Answer, tokens: list[bytes]) -> None:
    """Neither the secret nor a token in the answer: head, body or close reason."""
    told = b"".join([repr(answer.head).encode(), answer.body, repr(answer.frame).encode()])
    for secret in (SECRET, *tokens):
        assert secret not in told, answer


def assert_no_credentials_logged(logs: LogRecorder, tokens: set[bytes]) -> None:
    """No record holds the secret or even the start of a token; in every request line
    logged, each ``token`` parameter (by its decoded name) shows as ``[redacted]``, and there
    were such lines."""
    texts = [r.getMessage() + (logging.Formatter().formatException(r.exc_info)
                               if r.exc_info else "") for r in logs.records]
    for secret in (SECRET, *(t[:20] for t in tokens)):
        assert not [t for t in texts if secret.decode() in t], secret
    redacted = 0
    for record in logs.records:
        if record.name != "tornado.access":
            continue
        query_string = record.getMessage().split(" ")[2].partition("?")[2]
        for part in query_string.split("&"):
            name, _, value = part.partition("=")
            if urllib.parse.unquote_plus(name) == "token":
                assert value == REDACTED, record.getMessage()
                redacted += 1
    assert redacted, "no request with a token was logged"


@pytest.fixture(scope="module")
def auth_server() -> Iterator[Watched]:
    """Auth on; the healthy client's token allows every symbol."""
    with Watched.serving(AUTH_CONFIG, f"token={EVERY_SYMBOL_TOKEN}") as watched:
        yield watched


@pytest.fixture
def live_auth(auth_server: Watched) -> Watched:
    auth_server.logs.records.clear()
    return auth_server


@pytest.mark.parametrize("path", ENDPOINTS)
def test_any_query_and_credentials_get_what_the_token_allows(
    live: Watched, live_auth: Watched, path: str,
) -> None:
    """Each request goes to both servers: the one without auth says whether the query
    itself is good."""
    sent: set[bytes] = set()

    @fuzz(examples=200)
    @given(pairs=queries(ENDPOINTS[path]) | good_queries(ENDPOINTS[path]),
           escape=st.sampled_from(ESCAPES),
           tokens=st.sampled_from([0, 1, 1, 1, 2, 3]).flatmap(lambda n: st.lists(  # repeated
               st.tuples(QUERY_TOKENS, st.integers(0, 9)), min_size=n, max_size=n)),
           authorization=st.none() | AUTHORIZATIONS, upgrade=st.booleans() | st.just(True))
    def request(pairs: list[tuple[bytes, bytes]], escape: Callable[[bytes], bytes],
                tokens: list[tuple[tuple[bytes, Credential], int]],
                authorization: Authorization | None, upgrade: bool) -> None:
        pairs = list(pairs)
        for (value, _), at in tokens:
            pairs.insert(at % (len(pairs) + 1), (b"token", value))
        headers = handshake_headers() if path == "/ws" and upgrade else []
        if authorization is not None:
            headers.append(("Authorization", authorization.value))
        target = path.encode() + b"?" + query(pairs, escape)
        drawn = [c for (_, c), _ in tokens]
        if authorization is not None and authorization.bearer is not None:
            drawn.append(authorization.bearer)
        stealable = [c.text for c in drawn if jwt_shaped(c.text)]
        sent.update(stealable)
        stream = path in STREAMS
        baseline = ask(live.port, target, headers, stream)
        answer = ask(live_auth.port, target, headers, stream, first_frame=True)
        assert_answered(answer, HTTP_ERROR_CODES | {"unauthorized", "forbidden"})
        assert_nothing_told(answer, stealable)
        verdict = verdict_of(target, authorization, drawn)
        assert_authorized(path, baseline, answer, verdict, wanted(path, target))

    request()
    live.assert_unharmed()
    live_auth.assert_unharmed()
    assert_no_credentials_logged(live_auth.logs, sent)


#: Subscribing and unsubscribing, more often than the other messages draw them.
SUBSCRIPTIONS = st.builds(
    lambda op, names: json.dumps({"op": op, "symbols": names}).encode(),
    st.sampled_from(["subscribe", "unsubscribe"]),
    st.lists(st.sampled_from(SYMBOLS), max_size=8) | SYMBOL_LISTS,
)


def test_any_message_on_a_token_for_some_symbols_gets_the_contract_answer(
    live_auth: Watched,
) -> None:
    """Subscribing to a symbol the token does not allow is forbidden, and the connection
    goes on with what it had."""
    talk = Conversation(live_auth.port, f"symbols=AAPL&token={LIMITED_TOKEN}")
    converse(live_auth, talk, OP_TEXT, SUBSCRIPTIONS | TEXT_MESSAGES, 400, LIMITED)
