"""Collecting ticks row by row (as exchange messages arrive) into columns for the batcher."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import numpy as np

from feeds.base import Ticks


def decimal(text: str) -> float:
    """An exchange's decimal string as a float, in one correctly rounded step.

    ``float(str)`` rounds once to the nearest double and orjson prints the shortest repr
    that reads back the same, so ``"43210.5"`` leaves the server as ``43210.5``: no detour
    through an intermediate float or a binary fraction that prints as 43210.50000000001.
    """
    value = float(text)
    if value != value or value in (float("inf"), float("-inf")):
        raise ValueError(f"not a finite decimal: {text!r}")
    return value


class RowBuffer:
    """Rows appended by connection tasks; :meth:`drain` yields them as columns, coalescing
    whatever arrived while the consumer was busy."""

    def __init__(self) -> None:
        self._cols: tuple[list[int], list[float], list[float], list[float], list[float],
                          list[float]] = ([], [], [], [], [], [])
        #: Quote-only updates (bid/ask moved, no trade), latest per symbol: a busy book can
        #: change hundreds of times a second, and only its latest state matters.
        self._quotes: dict[int, tuple[float, float, float, float]] = {}
        self._ready = asyncio.Event()
        self._closed = False

    def add(self, sym: int, price: float, size: float, bid: float, ask: float, ts: float) -> None:
        c = self._cols
        c[0].append(sym)
        c[1].append(price)
        c[2].append(size)
        c[3].append(bid)
        c[4].append(ask)
        c[5].append(ts)
        self._ready.set()

    def quote(self, sym: int, price: float, bid: float, ask: float, ts: float) -> None:
        """A bid/ask change without a trade: a row of size 0 at the last trade price."""
        self._quotes[sym] = (price, bid, ask, ts)
        self._ready.set()

    def close(self) -> None:
        self._closed = True
        self._ready.set()

    def take(self) -> Ticks:
        for s, (p, b, a, t) in self._quotes.items():
            self.add(s, p, 0.0, b, a, t)
        self._quotes.clear()
        sym, price, size, bid, ask, ts = self._cols
        ticks = Ticks(
            np.array(sym, np.int32), np.array(price), np.array(size), np.array(bid),
            np.array(ask), np.array(ts),
        )
        for col in self._cols:
            col.clear()
        return ticks

    async def drain(self) -> AsyncIterator[Ticks]:
        while True:
            await self._ready.wait()
            self._ready.clear()
            if self._cols[0] or self._quotes:
                yield self.take()
            if self._closed:
                return
