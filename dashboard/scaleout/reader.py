"""Scale-out over Redis, the edge side: the :class:`Reader` loads the feed's description,
state and stream, then follows the stream with blocking reads and hands each batch to the
same batcher and hub a single server uses. A ``seq`` that does not follow on (entries
trimmed away while Redis was out of reach, a restarted feed) reloads the state and sends
every client a reset snapshot.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

import redis.asyncio as redis

from dashboard.core.batcher import Batch, Batcher, Seq
from dashboard.errors import BrokerDataError, BrokerError
from dashboard.scaleout.codec import FeedInfo, decode_batch, restore_state, run_of
from dashboard.scaleout.connection import (
    INFO_KEY,
    READ_BLOCK_MS,
    STATE_KEY,
    STREAM_KEY,
    Faults,
    stopping,
)
from dashboard.scaleout.health import BrokerHealth

log = logging.getLogger(__name__)

READ_COUNT = 1000


def _settings(info: FeedInfo) -> tuple[object, ...]:
    return info.symbols, info.batch_ms, info.history_s


def _decoded(entry: bytes | str, fields: Any) -> Batch | None:
    """The entry's batch, or None (logged) for one this version cannot read: the batch is
    lost, which the reader handles as a jump in seq."""
    try:
        return decode_batch(entry, fields)
    except BrokerDataError as e:
        log.error("%s; skipping it", e)
        return None


class Reader:
    """Edge side: load what the feed published, then follow the stream."""

    def __init__(self, client: redis.Redis, health: BrokerHealth) -> None:
        self.client = client
        self.health = health
        self._faults = Faults(health)
        self.last: Seq = 0
        #: The id of the last stream entry taken in, good or not: where the next read starts.
        self.cursor: bytes | str = "0-0"
        #: The feed run the batcher's quotes and bars come from (None before the first load).
        self.info: FeedInfo | None = None

    async def feed_info(self) -> FeedInfo:
        """The feed's description, once Redis is reachable and a feed has published one."""
        waiting = False
        while True:
            info = await self._faults.retrying(self._read_info)
            if info is not None:
                return info
            if not waiting:
                log.info("waiting for a feed process to publish to %s", self.health.url)
                waiting = True
            await asyncio.sleep(0.2)

    async def load(self, batcher: Batcher) -> None:
        """Quotes and bars from the saved state, then every held entry: those the quotes
        already reflect only go to the resume history, the rest are applied. Retries while
        Redis is out of reach; a feed now run with other symbols or settings is a
        ``BrokerError`` (this process must restart to serve them)."""
        while True:
            info, blob, entries = await self._faults.retrying(self._read_all)
            if info is not None and (blob is not None or entries):
                break
            await asyncio.sleep(0.05)  # a feed that has only just started
        if (self.info is not None and _settings(info) != _settings(self.info)) or (
                info.symbols != batcher.symbols):
            raise BrokerError("the feed process now runs with other symbols or settings: "
                              "restart this edge to serve them")
        state_seq = None
        if blob is not None:
            try:
                state_seq = restore_state(batcher, blob, info.run)
            except BrokerDataError as e:  # quotes and bars then come from the stream
                log.error("%s", e)
        base: Seq | None = state_seq
        if state_seq is not None:
            batcher.restart(state_seq)
        elif self.info is not None and self.info.run == info.run:
            base = batcher.seq  # a reload within one run: the quotes reflect this far
        else:
            batcher.clear_state()  # another run's quotes must not sit under this run's ticks
        for entry, fields in entries:
            self.cursor = entry
            batch = _decoded(entry, fields)
            if batch is None:
                continue
            if base is not None and batch.seq <= base:
                batcher.remember(batch)
            else:
                batcher.apply(batch)
        self.info = info
        self.last = self.health.last_seq = batcher.seq

    async def _read_info(self) -> FeedInfo | None:
        blob: Any = await self.client.get(INFO_KEY)
        return None if blob is None else FeedInfo.decode(blob)

    async def _read_all(self) -> tuple[FeedInfo | None, bytes | None, Any]:
        """Description, state and stream as of one moment (a transaction)."""
        async with self.client.pipeline(transaction=True) as pipe:
            pipe.get(INFO_KEY)
            pipe.get(STATE_KEY)
            pipe.xrange(STREAM_KEY)
            info, blob, entries = await pipe.execute()
        return (None if info is None else FeedInfo.decode(info)), blob, entries

    async def run(
        self, batcher: Batcher, publish: Callable[[Batch], None], reset: Callable[[], None]
    ) -> None:
        """Follow the stream until cancelled; ``publish`` each batch in order, ``reset`` after
        a discontinuity has been reloaded. Raises ``BrokerError`` when Redis refuses this
        server or the feed's symbols changed."""
        while not stopping():
            try:
                reply: Any = await self.client.xread(
                    {STREAM_KEY: self.cursor}, count=READ_COUNT, block=READ_BLOCK_MS
                )
                self._faults.passed()
                if not reply and await self._run_changed():
                    await self._reload(batcher, reset, "the feed process restarted")
                for _, entries in reply or ():
                    for entry, fields in entries:
                        self.cursor = entry
                        batch = _decoded(entry, fields)
                        if batch is None or batch.seq != self.last + 1:
                            await self._reload(batcher, reset, f"stream jumped from seq "
                                               f"{self.last} to entry {entry!r}")
                            break
                        batcher.apply(batch)
                        self.last = self.health.last_seq = batch.seq
                        publish(batch)
            except Exception as e:
                await self._faults.failed(e)

    async def _run_changed(self) -> bool:
        """A quiet stream may be a new feed run whose seqs lie below ours (its clock behind
        the last one's), which a read after our last entry would never return."""
        blob: Any = await self.client.get(INFO_KEY)
        run = run_of(blob)
        return run is not None and self.info is not None and run != self.info.run

    async def _reload(self, batcher: Batcher, reset: Callable[[], None], why: str) -> None:
        log.warning("%s: reloading and resetting clients", why)
        await self.load(batcher)
        self.health.resets += 1
        reset()
