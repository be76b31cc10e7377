"""OHLCV bars per symbol at a fixed interval, kept in a ring of the most recent bars.

Storage is one ``(symbols, capacity)`` array per field; bar number ``b`` (start time //
interval) lives in slot ``b % capacity``, so old bars are overwritten in place and memory is
fixed from the start.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from dashboard.core.arraystate import Arrays, ArrayState
from feeds.base import Ticks


@dataclass(frozen=True, slots=True)
class BarColumns:
    """Bars of one symbol, oldest first; ``t`` is each bar's start in epoch seconds."""

    t: npt.NDArray[np.int64]
    o: npt.NDArray[np.float64]
    h: npt.NDArray[np.float64]
    l: npt.NDArray[np.float64]  # noqa: E741 - the contract's column name
    c: npt.NDArray[np.float64]
    v: npt.NDArray[np.float64]


class BarSeries(ArrayState):
    STATE_FIELDS = ("_bar", "_o", "_h", "_l", "_c", "_v")

    def __init__(self, n_symbols: int, interval_s: int, capacity: int) -> None:
        self.interval_s = interval_s
        self.capacity = capacity
        shape = (n_symbols, capacity)
        self._bar = np.full(shape, -1, np.int64)  # bar number held by each slot
        self._o = np.zeros(shape)
        self._h = np.zeros(shape)
        self._l = np.zeros(shape)
        self._c = np.zeros(shape)
        self._v = np.zeros(shape)

    def update(self, ticks: Ticks) -> None:
        if not len(ticks):
            return
        bar = (ticks.ts // (1000 * self.interval_s)).astype(np.int64)
        # Group rows by (symbol, bar) in time order, then reduce each group.
        order = np.lexsort((ticks.ts, bar, ticks.sym))
        sym, bar = ticks.sym[order], bar[order]
        price, size = ticks.price[order], ticks.size[order]
        starts = np.flatnonzero(np.r_[True, (sym[1:] != sym[:-1]) | (bar[1:] != bar[:-1])])
        ends = np.r_[starts[1:], len(sym)] - 1
        g_sym, g_bar = sym[starts], bar[starts]
        g_o, g_c = price[starts], price[ends]
        g_h = np.maximum.reduceat(price, starts)
        g_l = np.minimum.reduceat(price, starts)
        g_v = np.add.reduceat(size, starts)
        slot = g_bar % self.capacity
        held = self._bar[g_sym, slot]
        fresh = held != g_bar
        cur = ~fresh
        # A batch never holds two groups for the same (symbol, slot): bars in one batch are
        # consecutive and far fewer than the capacity, so these assignments do not collide.
        self._bar[g_sym, slot] = g_bar
        self._o[g_sym[fresh], slot[fresh]] = g_o[fresh]
        self._h[g_sym, slot] = np.where(fresh, g_h, np.maximum(self._h[g_sym, slot], g_h))
        self._l[g_sym, slot] = np.where(fresh, g_l, np.minimum(self._l[g_sym, slot], g_l))
        self._c[g_sym, slot] = g_c
        self._v[g_sym, slot] = np.where(cur, self._v[g_sym, slot] + g_v, g_v)

    def arrays(self) -> Arrays:
        """Only the slots that hold a bar: most are empty for a young feed or a thin symbol,
        and the state travels to every starting edge."""
        slot = np.flatnonzero(self._bar.ravel() >= 0)
        held = {name: getattr(self, name).ravel()[slot] for name in self.STATE_FIELDS}
        return {"slot": slot, **held}

    def load(self, arrays: Arrays) -> None:
        slot = arrays.get("slot")
        size = self._bar.size
        if slot is None or slot.dtype.kind not in "iu" or (len(slot) and (
                slot.min() < 0 or slot.max() >= size)):
            raise ValueError("bar slots do not fit this server")
        full: Arrays = {}
        for name in self.STATE_FIELDS:
            held, new = getattr(self, name), arrays.get(name)
            if new is None or new.shape != slot.shape or new.dtype != held.dtype:
                raise ValueError(f"state field {name!r} does not fit this server")
            full[name] = np.full_like(held, -1 if name == "_bar" else 0)
            full[name].ravel()[slot] = new
        super().load(full)

    def bars(self, sym: int, limit: int) -> BarColumns:
        """The newest ``limit`` bars of ``sym``, oldest first (the newest possibly still open)."""
        held = self._bar[sym]
        valid = held >= 0
        if valid.any():
            valid &= held > held.max() - self.capacity
        slots = np.flatnonzero(valid)
        slots = slots[np.argsort(held[slots])][-limit:] if limit > 0 else slots[:0]
        return BarColumns(
            held[slots] * self.interval_s,
            self._o[sym, slots], self._h[sym, slots], self._l[sym, slots],
            self._c[sym, slots], self._v[sym, slots],
        )
