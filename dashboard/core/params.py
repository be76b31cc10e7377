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

from dashboard.core.batcher import BAR_INTERVALS_S, Seq
from dashboard.core.symbols import SymbolTable
from dashboard.errors import BadRequest, UnknownOp
from dashboard.wire.codecs import Encoding

Query = Callable[[str], str | None]
"""Looks a query argument up by name (the last value when repeated), None when absent."""

#: Client messages are small JSON objects; anything larger is refused (WebSocket close 1009).
MAX_CLIENT_MESSAGE_BYTES = 4096
#: A ping id is echoed back; it is a correlation token, not a payload.
MAX_PING_ID = 128
#: Digits of the longest integer a query may carry: beyond any seq or count, and far below
#: Python's limit on converting a string to int (4300 digits), past which ``int()`` raises.
MAX_DIGITS = 18
#: Bars a ``/api/bars`` request gets when it names no ``limit``, and the most it may ask for.
DEFAULT_BARS = 300
MAX_BARS = max(capacity for _, capacity in BAR_INTERVALS_S.values())


@dataclass(frozen=True, slots=True)
class StreamRequest:
    """What a streaming client asked for: the same shape for every transport."""

    symbols: npt.NDArray[np.int32] | None
    encoding: Encoding
    since: Seq | None
    max_hz: float | None


@dataclass(frozen=True, slots=True)
class BarsRequest:
    """``/api/bars?symbol=S&interval=1s|1m&limit=N``: one symbol's newest bars."""

    symbol: int
    interval: str
    limit: int


def _natural(raw: str) -> int | None:
    """A non-negative decimal integer of at most ``MAX_DIGITS`` ASCII digits, else None."""
    if raw.isascii() and raw.isdigit() and len(raw) <= MAX_DIGITS:
        return int(raw)
    return None


def parse_seq(raw: str | None, name: str) -> Seq | None:
    if raw is None or raw == "":
        return None
    seq = _natural(raw)
    if seq is None:
        raise BadRequest(f"{name} must be a non-negative integer seq, got {raw[:40]!r}")
    return seq


#: The slowest pace a client may ask for: one frame an hour. Below it (``max_hz=1e-300``)
#: no frame would ever come, and the connection would only hold a slot.
MIN_MAX_HZ = 1 / 3600


def parse_max_hz(raw: str | None) -> float | None:
    if raw is None or raw == "":
        return None
    try:
        value = float(raw)
    except ValueError:
        raise BadRequest(f"max_hz must be a positive number, got {raw[:40]!r}") from None
    if not math.isfinite(value) or value <= 0:
        raise BadRequest(f"max_hz must be a positive number, got {raw[:40]!r}")
    if value < MIN_MAX_HZ:
        raise BadRequest(f"max_hz must be at least {MIN_MAX_HZ:.6f} (one frame an hour), "
                         f"got {raw[:40]!r}")
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


def bars_request(query: Query, table: SymbolTable) -> BarsRequest:
    name = query("symbol")
    if not name:
        raise BadRequest("symbol is required")
    (sym,) = table.resolve([name]).tolist()
    interval = query("interval") or "1s"
    if interval not in BAR_INTERVALS_S:
        raise BadRequest(f"interval must be one of {', '.join(BAR_INTERVALS_S)}")
    raw = query("limit")
    limit = _natural(raw) if raw else DEFAULT_BARS
    if limit is None or not 1 <= limit <= MAX_BARS:
        raise BadRequest(f"limit must be an integer from 1 to {MAX_BARS}")
    return BarsRequest(sym, interval, limit)


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
