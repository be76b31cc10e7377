"""Conflation: what a client is owed, merged to the latest per symbol.

A client that may not be sent every batch (its ``max_hz``, its bytes-per-second cap, or a
full socket) keeps the batches it missed here instead of in a queue. Merging keeps the
latest price, bid, ask and ts of each symbol and sums sizes, so memory is bounded by the
number of symbols, not by how long the client is behind, and the client's final state equals
an unthrottled client's.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import numpy.typing as npt

from dashboard.core.batcher import Batch, Seq
from dashboard.core.messages import batch_message
from dashboard.core.payload import Payload
from dashboard.core.quotes import last_rows
from feeds.base import Ticks

#: Batches held as shared views before they are merged into one: merging is cheap but not
#: free, and a client that is throttled to a few Hz usually holds only a few.
MERGE_AFTER = 16
#: ... or as soon as they hold this many rows: what a client that is behind pins stays
#: bounded by its symbols, not by how many ticks a second the feed makes.
MERGE_ROWS = 1024


def latest_per_symbol(ticks: Ticks) -> Ticks:
    """One row per symbol, in the order of each symbol's last tick: its last price, bid,
    ask and ts, and the sum of its sizes."""
    if len(ticks) == 0:
        return ticks
    _, inverse = np.unique(ticks.sym, return_inverse=True)
    sums = np.bincount(inverse, weights=ticks.size).astype(np.float64)
    last = last_rows(ticks.sym)  # aligned with the sorted distinct symbols, as ``sums`` is
    order = np.argsort(last)
    rows = last[order]
    return Ticks(
        ticks.sym[rows], ticks.price[rows], sums[order], ticks.bid[rows], ticks.ask[rows],
        ticks.ts[rows],
    )


class Conflator:
    def __init__(self) -> None:
        self._reset()

    def _reset(self) -> None:
        self._parts: list[Ticks] = []
        self._first: Payload | None = None
        self._last: Batch | None = None
        self._first_seq: Seq = 0
        self._batches = 0
        self._rows = 0
        self.ticks_in = 0

    def __bool__(self) -> bool:
        return self._batches > 0

    def add(self, batch: Batch, ticks: Ticks, shared: Payload | None = None) -> None:
        """Hold ``batch`` (``ticks``: filtered to the client's selection); ``shared`` is the
        payload every client got for it, sent as is if it turns out to be alone."""
        if not self._batches:
            self._first, self._first_seq = shared, batch.seq
        else:
            self._first = None  # not alone: never sent as is, so not pinned either
        self._batches += 1
        self._last = batch
        self._parts.append(ticks)
        self._rows += len(ticks)
        self.ticks_in += len(ticks)
        if len(self._parts) > MERGE_AFTER or self._rows > MERGE_ROWS:
            self._parts = [latest_per_symbol(Ticks.concat(self._parts))]
            self._rows = len(self._parts[0])

    def restrict(self, keep: Callable[[Ticks], Ticks]) -> None:
        """Drop held ticks of symbols the client no longer subscribes to."""
        self._parts = [keep(part) for part in self._parts]
        self.ticks_in = self._rows = sum(len(part) for part in self._parts)
        self._first = None  # the shared bytes may hold a dropped symbol

    def take(self, names: npt.NDArray[np.object_]) -> tuple[Payload, int]:
        """The message standing for everything held, and how many ticks it merged away.

        A single held batch goes out as the shared payload itself (same bytes as everyone).
        """
        assert self._last is not None
        if self._batches == 1 and self._first is not None:
            payload, conflated = self._first, 0
        else:
            merged = latest_per_symbol(Ticks.concat(self._parts))
            conflated = self.ticks_in - len(merged)
            payload = Payload(batch_message(
                self._last, merged, names, first_seq=self._first_seq, conflated=conflated,
            ))
        self._reset()
        return payload, conflated
