"""The recording format: JSON lines, written by ``--record FILE`` and played by
``--feed replay``.

The first line is a header, every other line one chunk of ticks as the feed yielded it,
with the time it arrived::

    {"record":1,"feed":"binance","symbols":["BTCUSDT","ETHUSDT"]}
    {"t":1763900000012.5,"sym":[0,1],"price":[97000.1,3400.5],"size":[0.01,0.2],
     "bid":[...],"ask":[...],"ts":[...]}
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import IO, Any

import numpy as np
import orjson

from feeds.base import FeedError, Symbol, Ticks

VERSION = 1
COLUMNS = ("sym", "price", "size", "bid", "ask", "ts")


class RecordWriter:
    def __init__(self, path: str | Path, feed: str, symbols: Sequence[Symbol]) -> None:
        try:
            self._file: IO[bytes] = open(path, "wb")
        except OSError as e:
            raise FeedError(f"cannot record to {path}: {e.strerror}") from None
        self._write({"record": VERSION, "feed": feed, "symbols": list(symbols)})

    def _write(self, line: dict[str, Any]) -> None:
        self._file.write(orjson.dumps(line, option=orjson.OPT_SERIALIZE_NUMPY) + b"\n")

    def write(self, ticks: Ticks, arrived_ms: float) -> None:
        self._write({"t": arrived_ms, **{c: getattr(ticks, c) for c in COLUMNS}})

    def flush(self) -> None:
        self._file.flush()

    def close(self) -> None:
        self._file.close()


def read_header(path: str | Path) -> dict[str, Any]:
    try:
        with open(path, "rb") as f:
            header = orjson.loads(f.readline())
    except OSError as e:
        raise FeedError(f"cannot read {path}: {e.strerror}") from None
    except orjson.JSONDecodeError:
        raise FeedError(f"{path} is not a recording (no JSON header line)") from None
    if not isinstance(header, dict) or header.get("record") != VERSION:
        raise FeedError(f"{path} is not a version {VERSION} recording")
    if not isinstance(header.get("symbols"), list) or not header["symbols"]:
        raise FeedError(f"{path} names no symbols")
    return header


def read_lines(path: str | Path) -> Iterator[bytes]:
    """The chunk lines of a recording (after the header), not yet parsed."""
    with open(path, "rb") as f:
        f.readline()
        for line in f:
            if line.strip():
                yield line


def parse_chunk(line: bytes) -> tuple[float, Ticks]:
    """A chunk's arrival time and ticks; ValueError (or KeyError, TypeError) if malformed."""
    chunk = orjson.loads(line)
    ticks = Ticks(
        np.asarray(chunk["sym"], np.int32),
        *(np.asarray(chunk[c], np.float64) for c in COLUMNS[1:]),
    )
    if len({len(getattr(ticks, c)) for c in COLUMNS}) != 1:
        raise ValueError("columns of different lengths")
    return float(chunk["t"]), ticks


def read_chunks(path: str | Path) -> Iterator[tuple[float, Ticks]]:
    """Every chunk of a well-formed recording."""
    return (parse_chunk(line) for line in read_lines(path))
