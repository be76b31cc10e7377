"""Property-based fuzzing (Hypothesis) against a server with auth on, where a ``token``
parameter and an ``Authorization`` header are client input too: a request gets what its
token allows, a 401 (no valid token) or 403 (a symbol the token does not allow) with the
contract's JSON and challenge, on /ws the upgrade and then close 1008. Without a valid token
nothing else is judged, so a stranger learns nothing from a 400; with one, a bad query is
refused as by the server without auth. Neither the secret nor a token is ever told or
logged. Its healthy client holds a token, and a limited token's subscriptions stay within it.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import re
import time
import urllib.parse
from collections.abc import Callable, Iterator
from typing import Any

import orjson
import pytest
import tornado
import tornado.httputil
from hypothesis import given
from hypothesis import strategies as st

from dashboard.core import auth
from dashboard.errors import Unauthorized
from dashboard.transports.access_log import REDACTED
from tests import fuzzing
from tests.fuzzing import (
    CONFIG,
    ENDPOINTS,
    ESCAPES,
    HEADER_VALUES,
    HTTP_ERROR_CODES,
    JUNK,
    LEAVES,
    STREAMS,
    SYMBOL_LISTS,
    SYMBOLS,
    TEXT_MESSAGES,
    VALUES,
    Answer,
    Conversation,
    ask,
    assert_answered,
    converse,
    fuzz,
    good_queries,
    queries,
    query,
)
from tests.healthy import Watched
from tests.jwt_model import (
    EXPIRED,
    INVALID,
    MISSING,
    SECRET,
    Credential,
    Verdict,
    b64,
    judged,
    signed,
)
from tests.logs import LogRecorder
from tests.rawws import (
    OP_BINARY,
    OP_CLOSE,
    OP_TEXT,
    handshake_headers,
)

# -- auth on: tokens and Authorization headers are client input too ----------------------------

AUTH_CONFIG = dataclasses.replace(CONFIG, auth_token_secret=SECRET)
#: What a limited token allows: some of the feed's symbols, and one it does not have.
LIMITED = frozenset({"AAPL", "BRK.B", "EUR/USD", "NOPE"})

#: The fuzzing server (auth off) and its healthy client, fixtures of this module too.
server, live = fuzzing.server, fuzzing.live


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
                      asked: list[str] | None, handshake: bool) -> None:
    """A head refused as such (431, Tornado's bare 400) is refused alike; without a valid
    token, 401 whatever the query (on /ws a handshake is upgraded, then
    closed 1008 saying why); with one, a bad query is refused as by a server without auth,
    and a good one gets 403 for a symbol the token does not allow (on /ws: close 1008),
    else what it asked for."""
    refused = [name for name in asked or () if not verdict.allows(name)]
    if baseline.status is not None and baseline.status >= 400 and (
            baseline.status == 431 or not baseline.body):  # the head itself, before any handler
        assert (answer.status, answer.body) == (baseline.status, baseline.body), answer
        return
    if verdict.reasons:
        status, code, why = 401, "unauthorized", {f"{r} token" for r in verdict.reasons}
    elif baseline.status is None or baseline.status >= 400:
        assert (answer.status, answer.body) == (baseline.status, baseline.body), answer
        return
    elif refused:
        status, code = 403, "forbidden"
        why = {"symbol not allowed: " + ", ".join(map(repr, refused))}
    else:
        status, code, why = 200, "", set()
    if path == "/ws" and (handshake or status != 401):
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
        assert_authorized(path, baseline, answer, verdict, wanted(path, target),
                          handshake=bool(headers) and path == "/ws" and upgrade)

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
