"""Running the feed: its ticks into the batcher, and a feed that fails restarted with backoff.

A feed whose iteration raises (a plug-in's bug, a source that broke in a way the adapter
did not handle) would leave the server serving frozen prices while /healthz said "ok".
Instead its health turns ``failed`` (/healthz 503, ``dashboard_feed_state``, the page's
status bar), the failure is logged once with its traceback, and the feed is started again
after a growing, jittered pause: a new instance built from the command line, or the same
instance iterated again when it was handed to the server. Its health is back to ``live``
as soon as ticks flow again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable

from feeds.base import Feed, FeedError, FeedState, Ticks, jittered_backoff

log = logging.getLogger(__name__)

RESTART_S = (0.5, 30.0)


class FeedSupervisor:
    def __init__(self, feed: Feed, rebuild: Callable[[], Feed] | None) -> None:
        """``rebuild``: a fresh instance of the same feed; None to iterate ``feed`` again."""
        self.feed = feed
        self._rebuild = rebuild

    async def run(self, take: Callable[[Ticks], None], stopping: Callable[[], bool]) -> None:
        """Pump ticks into ``take`` until the feed ends on its own or the server stops."""
        failures = 0
        while True:
            try:
                async for ticks in self.feed:
                    if self.feed.health.state is FeedState.FAILED:  # it came back
                        self.feed.health.state = FeedState.LIVE
                        log.info("feed %s is live again", self.feed.name)
                        failures = 0
                    take(ticks)
            except Exception as e:
                if stopping():
                    return
                if failures == 0:
                    log.exception("feed %s failed; restarting it", self.feed.name)
                else:
                    log.warning("feed %s failed again (%s); restarting it", self.feed.name, e)
                self.feed.health.state = FeedState.FAILED
            else:
                if not stopping():
                    self._ended()
                return
            while True:
                await asyncio.sleep(jittered_backoff(failures, *RESTART_S))
                failures += 1
                if await self._restart():
                    break

    def _ended(self) -> None:
        if self.feed.health.state is FeedState.STOPPED:  # a replay that finished, say
            log.info("feed %s ended", self.feed.name)
        else:
            log.error("feed %s ended; no more ticks will arrive", self.feed.name)

    async def _restart(self) -> bool:
        """A fresh instance keeps the old one's health (what /healthz and /metrics read)
        and must have the same symbols; False when it could not start."""
        if self._rebuild is None:
            return True
        old = self.feed
        with contextlib.suppress(Exception):
            await old.stop()
        try:
            new = self._rebuild()
            if tuple(new.symbols) != tuple(old.symbols):
                raise FeedError(f"feed {old.name} restarted with other symbols")
            new.health = old.health
            await new.start()
        except Exception as e:
            log.warning("feed %s did not restart (%s); trying again", old.name, e)
            return False
        self.feed = new
        return True
