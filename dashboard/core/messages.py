"""The contract's messages as plain dicts of numpy columns, ready for :func:`codecs.dumps`."""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt

from dashboard.core.batcher import Batch, Seq
from dashboard.core.quotes import QuoteTable
from feeds.base import FloatArray, Ticks

Message = dict[str, Any]


def _compact(values: FloatArray) -> FloatArray | npt.NDArray[np.int64]:
    """Whole numbers as integers: ``100`` instead of ``100.0`` is bytes saved on every tick."""
    if np.all(np.mod(values, 1.0) == 0.0) and np.all(np.abs(values) < 2**53):
        return values.astype(np.int64)
    return values


def tick_columns(ticks: Ticks, names: npt.NDArray[np.object_]) -> Message:
    return {
        "sym": names[ticks.sym].tolist(),
        "price": ticks.price,
        "size": _compact(ticks.size),
        "bid": ticks.bid,
        "ask": ticks.ask,
        "ts": ticks.ts,
    }


def batch_message(
    batch: Batch,
    ticks: Ticks,
    names: npt.NDArray[np.object_],
    *,
    first_seq: Seq | None = None,
    conflated: int | None = None,
) -> Message:
    """A batch for one subscription (``ticks`` already filtered to it).

    ``first_seq``/``conflated`` mark a message that stands for batches ``first_seq..seq``.
    """
    msg: Message = {"type": "batch", "seq": batch.seq, "ts": batch.ts}
    if first_seq is not None:
        msg["first_seq"] = first_seq
        msg["conflated"] = conflated or 0
    msg["ticks"] = tick_columns(ticks, names)
    return msg


def snapshot_message(
    quotes: QuoteTable,
    indices: npt.NDArray[np.int32],
    names: npt.NDArray[np.object_],
    *,
    seq: Seq,
    now_ms: float,
    reset: bool,
) -> Message:
    """Latest quote and session open/high/low/volume of every symbol in ``indices`` that has
    ticked; ``seq`` is the last batch it reflects."""
    s = quotes.quoted(indices)
    return {
        "type": "snapshot",
        "seq": seq,
        "ts": now_ms,
        "reset": reset,
        "quotes": {
            "sym": names[s].tolist(),
            "price": quotes.price[s],
            "bid": quotes.bid[s],
            "ask": quotes.ask[s],
            "ts": quotes.ts[s],
            "open": quotes.open[s],
            "high": quotes.high[s],
            "low": quotes.low[s],
            "volume": _compact(quotes.volume[s]),
        },
    }


def error_message(code: str, message: str) -> Message:
    return {"type": "error", "code": code, "message": message}


def pong_message(ping_id: object, now_ms: float) -> Message:
    return {"type": "pong", "id": ping_id, "ts": now_ms}


def heartbeat_message(now_ms: float) -> Message:
    return {"type": "heartbeat", "ts": now_ms}
