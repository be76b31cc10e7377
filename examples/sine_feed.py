"""A complete feed plug-in: prices that swing along a sine wave, one tick per symbol each
``interval`` seconds. Copy it, replace the body of ``ticks()`` with your vendor's stream.

    market-dashboard --feed examples.sine_feed:SineFeed --symbols FOO,BAR \\
        --feed-option interval=0.1

or, once packaged with an entry point (``dashboard.feeds``: ``sine = sine_feed:SineFeed``),
``market-dashboard --feed sine --symbols FOO,BAR``.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from collections.abc import AsyncIterator, Sequence

import numpy as np

from feeds.base import Feed, FeedError, FeedSpec, Ticks


class SineFeed(Feed):
    name = "sine"

    def __init__(self, symbols: Sequence[str], interval_s: float) -> None:
        super().__init__()  # sets self.health
        if interval_s <= 0:
            raise FeedError("--feed-option interval= must be positive")
        self._symbols = tuple(symbols)
        self.interval_s = interval_s
        self._stopped = asyncio.Event()

    @classmethod
    def create(cls, spec: FeedSpec) -> SineFeed:
        """Build from the command line: --symbols names, --feed-option key=value."""
        return cls(spec.names(cls.name), spec.number("interval", 0.5))

    @property
    def symbols(self) -> Sequence[str]:
        return self._symbols

    async def start(self) -> None:
        """Connect to your source here; raise FeedError if it cannot be reached."""

    async def stop(self) -> None:
        self._stopped.set()

    async def ticks(self) -> AsyncIterator[Ticks]:
        n = len(self._symbols)
        sym = np.arange(n, dtype=np.int32)
        base = 100.0 + 10.0 * np.arange(n)
        while not self._stopped.is_set():
            now = time.time()
            price = np.round(base + 5.0 * math.sin(now / 10.0), 2)
            self.health.message()  # counts a message, marks the feed live
            yield Ticks(sym, price, np.full(n, 10.0), price - 0.01, price + 0.01,
                        np.full(n, now * 1000.0))
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._stopped.wait(), self.interval_s)
