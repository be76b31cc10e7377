"""Building tick columns by hand for core tests."""

from __future__ import annotations

import numpy as np

from feeds.base import Ticks


def ticks(rows: list[tuple[int, float, float, float]], ts0: float = 1_700_000_000_000.0,
          size: float = 100.0) -> Ticks:
    """Rows of (sym, price, ts offset ms, size multiplier); bid/ask one cent around price."""
    sym = np.array([r[0] for r in rows], np.int32)
    price = np.array([r[1] for r in rows], np.float64)
    ts = ts0 + np.array([r[2] for r in rows], np.float64)
    sizes = size * np.array([r[3] for r in rows], np.float64)
    return Ticks(sym, price, sizes, np.round(price - 0.01, 2), np.round(price + 0.01, 2), ts)
