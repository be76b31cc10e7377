"""Parsing and validating what a client asks for in a query string or a client message.

Pure functions over plain values; handlers call them before upgrading or streaming, so a bad
request gets a 400 with a JSON body instead of a half-open stream.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import orjson

from dashboard.batcher import Seq
from dashboard.codecs import Encoding
from dashboard.errors import BadRequest, UnknownOp
from dashboard.symbols import SymbolTable

Query = Callable[[str], str | None]
"""Looks a query argument up by name (the last value when repeated), None when absent."""

#: Client messages are small JSON objects; anything larger is refused (WebSocket close 1009).
MAX_CLIENT_MESSAGE_BYTES = 4096
#: A ping id is echoed back; it is a correlation token, not a payload.
MAX_PING_ID = 128


@dataclass(frozen=True, slots=True)
class StreamRequest:
    """What a streaming client asked for: the same shape for every transport."""

    symbols: npt.NDArray[np.int32] | None
    encoding: Encoding
    since: Seq | None
    max_hz: float | None


def parse_seq(raw: str | None, name: str) -> Seq | None:
    if raw is None or raw == "":
        return None
    if not raw.isascii() or not raw.isdigit() or len(raw) > 18:
        raise BadRequest(f"{name} must be a non-negative integer seq, got {raw[:40]!r}")
    return int(raw)


def parse_max_hz(raw: str | None) -> float | None:
    if raw is None or raw == "":
        return None
    try:
        value = float(raw)
    except ValueError:
        raise BadRequest(f"max_hz must be a positive number, got {raw[:40]!r}") from None
    if not math.isfinite(value) or value <= 0:
        raise BadRequest(f"max_hz must be a positive number, got {raw[:40]!r}")
    return value


def parse_encoding(raw: str | None) -> Encoding:
    if raw is None or raw == "":
        return Encoding.JSON
    try:
        return Encoding(raw)
    except ValueError:
        raise BadRequest(f"encoding must be json, br or deflate, got {raw[:40]!r}") from None


def stream_request(
    query: Query, table: SymbolTable, *, since: str | None, allow_encoding: bool
) -> StreamRequest:
    """Validate a streaming request; ``since`` is the raw resume point for this transport."""
    encoding = parse_encoding(query("encoding")) if allow_encoding else Encoding.JSON
    return StreamRequest(
        symbols=table.parse_list(query("symbols")),
        encoding=encoding,
        since=parse_seq(since, "since"),
        max_hz=parse_max_hz(query("max_hz")),
    )


# -- client → server messages -----------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Subscribe:
    symbols: npt.NDArray[np.int32]


@dataclass(frozen=True, slots=True)
class Unsubscribe:
    symbols: npt.NDArray[np.int32]


@dataclass(frozen=True, slots=True)
class Ping:
    id: Any


ClientOp = Subscribe | Unsubscribe | Ping


def client_op(text: str | bytes, table: SymbolTable) -> ClientOp:
    """One client text frame: ``{"op":"subscribe"|"unsubscribe","symbols":[...]}`` or
    ``{"op":"ping","id":X}``."""
    try:
        msg = orjson.loads(text)
    except orjson.JSONDecodeError:
        raise BadRequest("message is not valid JSON") from None
    if not isinstance(msg, dict):
        raise BadRequest("message must be a JSON object")
    op = msg.get("op")
    if op == "ping":
        ping_id = msg.get("id")
        if not (ping_id is None or isinstance(ping_id, int | float | bool)
                or (isinstance(ping_id, str) and len(ping_id) <= MAX_PING_ID)):
            raise BadRequest(f"ping id must be a number, null or a string of at most "
                             f"{MAX_PING_ID} characters")
        return Ping(ping_id)
    if op in ("subscribe", "unsubscribe"):
        names = msg.get("symbols")
        if not isinstance(names, list):
            raise BadRequest(f"{op} needs a list of symbols")
        indices = table.resolve(names)
        return Subscribe(indices) if op == "subscribe" else Unsubscribe(indices)
    raise UnknownOp(f"unknown op {str(op)[:40]!r}; expected subscribe, unsubscribe or ping")


def apply_op(
    current: npt.NDArray[np.int32], op: Subscribe | Unsubscribe
) -> npt.NDArray[np.int32]:
    """The subscribed set after ``op`` (sorted, distinct)."""
    if isinstance(op, Subscribe):
        return np.union1d(current, op.symbols).astype(np.int32)
    return np.setdiff1d(current, op.symbols).astype(np.int32)
