"""A plug-in feed (``--feed tests.crashing_feed:CrashingFeed``) whose first instances tick
a while and then raise, as a buggy adapter does; later instances tick on."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Sequence

import numpy as np

from feeds.base import Feed, FeedSpec, Ticks


class CrashingFeed(Feed):
    name = "crashing"
    #: Instances made so far, and how many of the first ones crash.
    made = 0
    crashes = 1
    TICKS_BEFORE_CRASH = 30

    def __init__(self, crash: bool) -> None:
        super().__init__()
        self.crash = crash

    @classmethod
    def create(cls, spec: FeedSpec) -> Feed:
        cls.made += 1
        return cls(crash=cls.made <= cls.crashes)

    @property
    def symbols(self) -> Sequence[str]:
        return ("AAPL", "MSFT")

    async def ticks(self) -> AsyncIterator[Ticks]:
        for i in range(10**9):
            if self.crash and i == self.TICKS_BEFORE_CRASH:
                raise RuntimeError("the adapter's bug")
            price = np.array([100.0 + i % 7])
            yield Ticks(np.array([i % 2], np.int32), price, np.array([1.0]), price - 0.01,
                        price + 0.01, np.array([time.time() * 1000]))
            await asyncio.sleep(0.005)
