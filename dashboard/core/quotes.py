"""The latest quote and session open/high/low/volume per symbol, for snapshots."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from dashboard.core.arraystate import ArrayState
from feeds.base import FloatArray, Ticks


def last_rows(sym: npt.NDArray[np.int32]) -> npt.NDArray[np.intp]:
    """Row index of the last occurrence of each distinct symbol in ``sym``.

    Fancy assignment with repeated indices does not promise which value wins, so the last
    tick per symbol is picked explicitly.
    """
    _, first_from_end = np.unique(sym[::-1], return_index=True)
    return len(sym) - 1 - first_from_end


class QuoteTable(ArrayState):
    """Per-symbol state updated column-wise from each batch; no I/O."""

    STATE_FIELDS = ("seen", "price", "bid", "ask", "ts", "open", "high", "low", "volume")

    def __init__(self, n_symbols: int) -> None:
        self.seen = np.zeros(n_symbols, np.bool_)
        nan = np.full(n_symbols, np.nan)
        self.price: FloatArray = nan.copy()
        self.bid: FloatArray = nan.copy()
        self.ask: FloatArray = nan.copy()
        self.ts: FloatArray = nan.copy()
        self.open: FloatArray = nan.copy()
        self.high: FloatArray = np.full(n_symbols, -np.inf)
        self.low: FloatArray = np.full(n_symbols, np.inf)
        self.volume: FloatArray = np.zeros(n_symbols)

    def update(self, ticks: Ticks) -> None:
        if not len(ticks):
            return
        sym = ticks.sym
        np.maximum.at(self.high, sym, ticks.price)
        np.minimum.at(self.low, sym, ticks.price)
        np.add.at(self.volume, sym, ticks.size)
        present, first = np.unique(sym, return_index=True)
        opening = ~self.seen[present]
        self.open[present[opening]] = ticks.price[first[opening]]
        self.seen[present] = True
        last = last_rows(sym)
        s = sym[last]
        self.price[s] = ticks.price[last]
        self.bid[s] = ticks.bid[last]
        self.ask[s] = ticks.ask[last]
        self.ts[s] = ticks.ts[last]

    def quoted(self, among: npt.NDArray[np.int32] | None = None) -> npt.NDArray[np.int32]:
        """Indices of symbols that have ticked (of ``among``, or all), ascending."""
        if among is None:
            return np.flatnonzero(self.seen).astype(np.int32)
        return among[self.seen[among]]
