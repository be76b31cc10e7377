"""Coalescing ticks into numbered batches, and the state kept from them.

The batcher is pure: ticks come in through :meth:`Batcher.add`, the caller closes a batch
every interval with the current time, and gets a :class:`Batch` back. It keeps the recent
batches (resume), the quote table (snapshots) and bars (history) up to date as it goes.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass

from dashboard.core.bars import BarSeries
from dashboard.core.quotes import QuoteTable
from feeds.base import Symbol, Ticks

Seq = int

#: Bars kept per symbol: 15 minutes of 1 s bars, 10 hours of 1 min bars.
BAR_INTERVALS_S = {"1s": (1, 900), "1m": (60, 600)}


@dataclass(frozen=True, slots=True)
class Batch:
    """What arrived in one interval. ``ts`` is when the batcher closed it (epoch ms)."""

    seq: Seq
    ts: float
    ticks: Ticks


@dataclass(frozen=True, slots=True)
class Resume:
    """How to bring a client that last saw ``since`` up to date.

    Either ``replay`` holds exactly the batches after ``since`` (possibly none), or
    ``replay`` is None and the client needs a reset snapshot.
    """

    replay: list[Batch] | None


class Batcher:
    def __init__(self, symbols: Sequence[Symbol], history_s: float, first_seq: Seq) -> None:
        """``first_seq`` is the seq of the first batch.

        The server starts it at the epoch time in ms: seq then advances far slower than the
        clock, so a client resuming against a restarted server never mistakes the new
        server's batches for the ones it missed — its ``since`` is simply too old, and it
        gets a reset snapshot.
        """
        self.symbols = tuple(symbols)
        self.history_ms = history_s * 1000.0
        self.seq: Seq = first_seq - 1
        self._pending: list[Ticks] = []
        self._history: deque[Batch] = deque()
        self.clear_state()

    def clear_state(self) -> None:
        """Forget every quote and bar (an edge whose feed restarted without saved state)."""
        self.quotes, self.bars = self.empty_state()

    def empty_state(self) -> tuple[QuoteTable, dict[str, BarSeries]]:
        """Quotes and bars as before the first tick, for these symbols."""
        return QuoteTable(len(self.symbols)), {
            name: BarSeries(len(self.symbols), interval_s, capacity)
            for name, (interval_s, capacity) in BAR_INTERVALS_S.items()
        }

    def add(self, ticks: Ticks) -> None:
        if len(ticks):
            self._pending.append(ticks)

    def close(self, now_ms: float) -> Batch | None:
        """Close the current interval. Nothing arrived: no batch, and ``seq`` does not move."""
        if not self._pending:
            self._trim(now_ms)
            return None
        ticks = Ticks.concat(self._pending)
        self._pending = []
        batch = Batch(self.seq + 1, now_ms, ticks)
        self.apply(batch)
        return batch

    def apply(self, batch: Batch) -> bool:
        """Take in a batch made elsewhere (an edge reading the broker), as :meth:`close` does
        its own. A ``seq`` that does not follow on is a discontinuity: the history before it
        can no longer be replayed without a gap, so it is dropped; returns False then."""
        follows = batch.seq == self.seq + 1
        if not follows:
            self._history.clear()
        self.seq = batch.seq
        self.quotes.update(batch.ticks)
        for series in self.bars.values():
            series.update(batch.ticks)
        self._history.append(batch)
        self._trim(batch.ts)
        return follows

    def remember(self, batch: Batch) -> None:
        """Hold ``batch`` for resume only: its ticks are already in the quotes and bars (an
        edge loading the broker's stream up to the state it restored)."""
        if batch.seq != self.seq + 1:
            self._history.clear()
        self.seq = batch.seq
        self._history.append(batch)
        self._trim(batch.ts)

    def restart(self, seq: Seq) -> None:
        """The quotes and bars now reflect batch ``seq`` (an edge restored the feed's state):
        the history held no longer leads up to them."""
        self._history.clear()
        self.seq = seq

    @property
    def oldest_seq(self) -> Seq:
        """The oldest batch held for resume (``seq + 1`` when none is)."""
        return self._history[0].seq if self._history else self.seq + 1

    @property
    def history(self) -> tuple[Batch, ...]:
        return tuple(self._history)

    def _trim(self, now_ms: float) -> None:
        horizon = now_ms - self.history_ms
        while self._history and self._history[0].ts < horizon:
            self._history.popleft()

    def resume(self, since: Seq) -> Resume:
        """The batches after ``since`` while they are all held; a reset otherwise."""
        if since == self.seq:
            return Resume([])
        if not self._history or since > self.seq or since < self._history[0].seq - 1:
            return Resume(None)
        first = since + 1 - self._history[0].seq
        return Resume([self._history[i] for i in range(first, len(self._history))])
