"""``--feed replay --feed-option path=FILE [--feed-option speed=10]``: a recording played
back with its original spacing, scaled by ``speed``.

Tick times are moved to now (``timestamps=shift``, the default: spacing kept, scaled like
the playback) so latency figures and bars make sense; ``timestamps=original`` keeps them.
``loop=true`` starts over at the end. A malformed line is counted and skipped.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Sequence

import orjson

from feeds.base import Feed, FeedError, FeedSpec, FeedState, Symbol, Ticks
from feeds.record import parse_chunk, read_header, read_lines

log = logging.getLogger(__name__)


class ReplayFeed(Feed):
    name = "replay"

    def __init__(self, path: str, speed: float, shift: bool, loop: bool) -> None:
        super().__init__()
        if not speed > 0:
            raise FeedError("--feed-option speed= must be positive")
        self.path = path
        self.speed = speed
        self.shift = shift
        self.loop = loop
        self._symbols = tuple(str(s) for s in read_header(path)["symbols"])
        self._stopped = asyncio.Event()

    @classmethod
    def create(cls, spec: FeedSpec) -> ReplayFeed:
        path = spec.options.get("path")
        if not path:
            raise FeedError("replay needs --feed-option path=FILE (made with --record FILE)")
        timestamps = spec.option("timestamps", "shift")
        if timestamps not in ("shift", "original"):
            raise FeedError("--feed-option timestamps= must be shift or original")
        loop = spec.option("loop", "false").lower()
        if loop not in ("true", "false"):
            raise FeedError("--feed-option loop= must be true or false")
        return cls(path, spec.number("speed", 1.0), timestamps == "shift", loop == "true")

    @property
    def symbols(self) -> Sequence[Symbol]:
        return self._symbols

    async def stop(self) -> None:
        self._stopped.set()

    async def ticks(self) -> AsyncIterator[Ticks]:
        while not self._stopped.is_set():
            async for ticks in self._play_once():
                yield ticks
            if not self.loop:
                break
        self.health.state = FeedState.STOPPED
        log.info("replay of %s finished", self.path)

    async def _play_once(self) -> AsyncIterator[Ticks]:
        started = time.monotonic()
        now_ms = time.time() * 1000.0
        first: float | None = None
        for line in read_lines(self.path):
            if self._stopped.is_set():
                return
            try:
                t, ticks = parse_chunk(line)
            except (orjson.JSONDecodeError, KeyError, TypeError, ValueError) as e:
                self.health.parse_errors += 1
                log.warning("replay: skipped a malformed line of %s: %s", self.path, e)
                continue
            if first is None:
                first = t
            due = started + (t - first) / 1000.0 / self.speed
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._stopped.wait(), max(0.0, due - time.monotonic()))
            if self._stopped.is_set():
                return
            if self.shift:
                ticks = Ticks(ticks.sym, ticks.price, ticks.size, ticks.bid, ticks.ask,
                              now_ms + (ticks.ts - first) / self.speed)
            if len(ticks) and (ticks.sym.min() < 0 or ticks.sym.max() >= len(self._symbols)):
                self.health.parse_errors += 1
                continue
            self.health.message()
            yield ticks
