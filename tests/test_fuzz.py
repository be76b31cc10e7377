"""Property-based fuzzing (Hypothesis) of everything a client sends, against one live server
while a healthy WebSocket client keeps reading on its own thread.

Every query of every endpoint is answered with a success or a 4xx carrying the contract's
JSON error, never a 5xx, a traceback or a path of the server; every WebSocket message with
what the contract says (an error, a pong, nothing, or close 1009 when too big); garbage
frames end in a closed connection. Meanwhile nothing is logged as an error or with a
traceback, no log line is forged, every connection the fuzzer opened is cleaned up, and
the healthy client gets every seq on a connection that stays open.
"""

from __future__ import annotations

import dataclasses
import socket
import time
from collections.abc import Callable

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from tests import fuzzing
from tests.conftest import TEST_CONFIG
from tests.fuzzing import (
    BINARY_MESSAGES,
    ENDPOINTS,
    ESCAPES,
    HEADER_VALUES,
    STREAMS,
    SYMBOLS,
    TEXT_MESSAGES,
    Conversation,
    ask,
    assert_answered,
    converse,
    fuzz,
    queries,
    query,
    quoted,
)
from tests.healthy import Watched
from tests.rawws import (
    OP_BINARY,
    OP_CLOSE,
    OP_TEXT,
    RawWebSocket,
    encode_frame,
    handshake_headers,
)
from tests.threaded import ServerThread

#: The fuzzing server (auth off) and its healthy client, fixtures of this module too.
server, live = fuzzing.server, fuzzing.live


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


@pytest.mark.parametrize("opcode, messages, examples", [
    pytest.param(OP_TEXT, TEXT_MESSAGES, 1500, id="text"),
    pytest.param(OP_BINARY, BINARY_MESSAGES, 300, id="binary"),
])
def test_any_message_gets_the_contract_answer(
    live: Watched, opcode: int, messages: st.SearchStrategy[bytes], examples: int,
) -> None:
    converse(live, Conversation(live.port), opcode, messages, examples, frozenset(SYMBOLS))


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
