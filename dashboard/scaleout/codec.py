"""How batches and state travel through the broker, with no I/O.

A batch is one Redis Stream entry whose id is ``<seq>-0`` — so ``since``, the stream
position and the trim point are all the same number — and whose fields are the batch's
close time and its columns as raw little-endian arrays (decoded without parsing). The
feed's quotes and bars travel as one ``.npz`` blob tagged with the seq they reflect and the
feed's run, and its symbols, settings and run as a small JSON document.
"""

from __future__ import annotations

import io
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import orjson

from dashboard.core.batcher import Batch, Batcher, Seq
from dashboard.errors import BrokerDataError
from feeds.base import Symbol, Ticks

#: Column name → wire dtype, in the order of :class:`Ticks`.
COLUMNS: dict[str, np.dtype[Any]] = {
    "sym": np.dtype("<i4"), "price": np.dtype("<f8"), "size": np.dtype("<f8"),
    "bid": np.dtype("<f8"), "ask": np.dtype("<f8"), "ts": np.dtype("<f8"),
}


def entry_id(seq: Seq) -> str:
    return f"{seq}-0"


def seq_of(entry: bytes | str) -> Seq:
    raw = entry.decode() if isinstance(entry, bytes) else entry
    head, _, _ = raw.partition("-")
    if not head.isdigit():
        raise BrokerDataError(f"stream entry id {raw!r} is not <seq>-0")
    return int(head)


def encode_batch(batch: Batch) -> dict[str, bytes]:
    fields = {"close_ts": repr(batch.ts).encode()}
    for name, dtype in COLUMNS.items():
        fields[name] = np.ascontiguousarray(getattr(batch.ticks, name), dtype).tobytes()
    return fields


def decode_batch(entry: bytes | str, fields: Mapping[bytes, bytes]) -> Batch:
    try:
        ts = float(fields[b"close_ts"])
        columns: list[npt.NDArray[Any]] = [
            np.frombuffer(fields[name.encode()], dtype) for name, dtype in COLUMNS.items()
        ]
    except (KeyError, ValueError) as e:
        raise BrokerDataError(f"stream entry {entry!r} is malformed: {e}") from None
    if len({len(c) for c in columns}) != 1:
        raise BrokerDataError(f"stream entry {entry!r} has columns of different lengths")
    sym, price, size, bid, ask, tick_ts = columns
    return Batch(seq_of(entry), ts, Ticks(sym, price, size, bid, ask, tick_ts))


StateArrays = dict[str, Any]


def state_arrays(batcher: Batcher, run: str) -> StateArrays:
    """Copies of the quotes and bars as of ``batcher.seq``, tagged with the feed's run: cheap
    enough for the event loop, and safe to encode in a thread while batches go on."""
    arrays: StateArrays = {f"quotes.{k}": v.copy() for k, v in batcher.quotes.arrays().items()}
    for interval, series in batcher.bars.items():
        arrays.update({f"bars.{interval}.{k}": v for k, v in series.arrays().items()})
    arrays["seq"] = np.int64(batcher.seq)
    arrays["run"] = np.str_(run)
    return arrays


def encode_state(arrays: StateArrays) -> bytes:
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    return buf.getvalue()


def restore_state(batcher: Batcher, blob: bytes, run: str) -> Seq | None:
    """Load quotes and bars from :func:`encode_state`; returns the seq they reflect, or None
    when they are another run's of the feed. All or nothing: an unusable blob changes nothing.
    Leaves ``batcher.seq`` and its history alone: the caller replays the stream after it."""
    quotes, bars = batcher.empty_state()
    try:
        with np.load(io.BytesIO(blob), allow_pickle=False) as npz:
            arrays = {k: npz[k] for k in npz.files}
        if str(arrays.pop("run")) != run:
            return None
        seq = int(arrays.pop("seq"))
        quotes.load(_part(arrays, "quotes."))
        for interval, series in bars.items():
            series.load(_part(arrays, f"bars.{interval}."))
    except (OSError, KeyError, ValueError) as e:
        raise BrokerDataError(f"the feed's state is unusable: {e}") from None
    batcher.quotes, batcher.bars = quotes, bars
    return seq


def _part(arrays: dict[str, npt.NDArray[Any]], prefix: str) -> dict[str, npt.NDArray[Any]]:
    return {k[len(prefix):]: v for k, v in arrays.items() if k.startswith(prefix)}


@dataclass(frozen=True, slots=True)
class FeedInfo:
    """What an edge needs to know about the feed process before it can serve."""

    feed: str
    symbols: tuple[Symbol, ...]
    batch_ms: float
    history_s: float
    #: New each time a feed process starts: state and entries of another run never mix.
    run: str

    def encode(self) -> bytes:
        return orjson.dumps({"feed": self.feed, "symbols": self.symbols,
                             "batch_ms": self.batch_ms, "history_s": self.history_s,
                             "run": self.run})

    @classmethod
    def decode(cls, blob: bytes) -> FeedInfo:
        try:
            doc = orjson.loads(blob)
            return cls(str(doc["feed"]), tuple(str(s) for s in doc["symbols"]),
                       float(doc["batch_ms"]), float(doc["history_s"]), str(doc["run"]))
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError) as e:
            raise BrokerDataError(f"the feed's description is unusable: {e}") from None


def run_of(blob: bytes | None) -> str | None:
    """The run of a feed description, or None when there is none or it cannot be read."""
    try:
        return FeedInfo.decode(blob).run if blob is not None else None
    except BrokerDataError:
        return None
