"""Scale-out over Redis: one feed process publishes, any number of edges serve clients.

The feed side (:class:`Publisher`) keeps a Redis Stream in step with its batcher's history:
each batch becomes an entry with id ``<seq>-0``, the stream is trimmed to the history
window, and the quotes and bars are saved every few seconds for starting edges. When Redis
comes back after an outage (or restarts empty), the publisher re-appends whatever of its
history the stream lacks, so edges that resume from the last entry they read see no gap.

The edge side (:class:`Reader`) loads the feed's description, state and stream, then
follows the stream with blocking reads and hands each batch to the same batcher and hub a
single server uses. A ``seq`` that does not follow on (entries trimmed away while Redis was
out of reach, a restarted feed) reloads the state and sends every client a reset snapshot.

Keys live under ``market-dashboard:`` in the database the URL names (``redis://h:p/DB``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from typing import Any

import redis.asyncio as redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError

from dashboard.batcher import Batch, Batcher, Seq
from dashboard.broker import BrokerError, BrokerHealth
from dashboard.stream_codec import (
    BrokerDataError,
    FeedInfo,
    decode_batch,
    encode_batch,
    encode_state,
    entry_id,
    restore_state,
    seq_of,
)
from feeds.base import jittered_backoff

log = logging.getLogger(__name__)

PREFIX = "market-dashboard"
STREAM_KEY = f"{PREFIX}:batches"
STATE_KEY = f"{PREFIX}:state"
INFO_KEY = f"{PREFIX}:feed"
#: How often the feed saves quotes and bars; a starting edge replays the stream after them.
STATE_EVERY_S = 2.0
#: A blocking read returns at least this often, so a dead connection is noticed.
READ_BLOCK_MS = 1000
READ_COUNT = 1000
INITIAL_BACKOFF_S = 0.1
MAX_BACKOFF_S = 5.0
#: Entries appended per round trip when the publisher catches up after an outage.
PUBLISH_CHUNK = 500

#: What a lost connection to Redis looks like (redis-py wraps most socket errors).
FAULTS = (RedisError, OSError, asyncio.TimeoutError)


def connect(url: str) -> redis.Redis:
    """A client that fails fast: the loops here retry with their own backoff, and a command
    that hangs in a library retry would hide an outage from /healthz."""
    return redis.Redis.from_url(
        url, socket_connect_timeout=2.0, socket_timeout=READ_BLOCK_MS / 1000 + 4.0,
        retry=Retry(NoBackoff(), 0), health_check_interval=0,
    )


def _stopping() -> bool:
    """This task is being cancelled. redis-py can swallow a cancel that lands mid-command
    (or turn it into a connection error); carrying on would keep shutdown waiting."""
    task = asyncio.current_task()
    return task is not None and task.cancelling() > 0


async def _pause(attempt: int) -> None:
    await asyncio.sleep(jittered_backoff(attempt, INITIAL_BACKOFF_S, MAX_BACKOFF_S))


class Publisher:
    """Feed side. :meth:`notify` after each batch; :meth:`run` does the writing."""

    def __init__(
        self, client: redis.Redis, batcher: Batcher, info: FeedInfo, health: BrokerHealth
    ) -> None:
        self.client = client
        self.batcher = batcher
        self.info = info
        self.health = health
        self._published: Seq = -1
        self._wake = asyncio.Event()

    def notify(self) -> None:
        self._wake.set()

    async def run(self) -> None:
        attempt = 0
        synced = False
        state_due = 0.0
        while not _stopping():
            try:
                self._wake.clear()
                if not synced:
                    await self._sync()
                    synced, attempt, state_due = True, 0, 0.0
                    self.health.up()
                await self._publish()
                if time.monotonic() >= state_due and self._published == self.batcher.seq:
                    await self.client.set(STATE_KEY, encode_state(self.batcher))
                    state_due = time.monotonic() + STATE_EVERY_S
                if _stopping():
                    break
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(STATE_EVERY_S):
                        await self._wake.wait()
            except (*FAULTS, BrokerError) as e:
                if _stopping():
                    raise asyncio.CancelledError from e
                synced = False
                self.health.down(e)
                await _pause(attempt)
                attempt += 1

    async def _sync(self) -> None:
        """After (re)connecting: describe the feed, and find where the stream stops so the
        history it lacks is appended again."""
        await self.client.set(INFO_KEY, self.info.encode())
        top: Any = await self.client.xrevrange(STREAM_KEY, count=1)
        last = seq_of(top[0][0]) if top else -1
        if last > self.batcher.seq:
            raise BrokerError(
                f"{STREAM_KEY} already holds seq {last}, ahead of this feed's "
                f"{self.batcher.seq}: is another feed process publishing to it?"
            )
        self._published = last

    async def _publish(self) -> None:
        # resume() slices the held batches; copying the whole history every batch would
        # cost the event loop O(history) 20 times a second. None: publish all that is held.
        todo = self.batcher.resume(self._published).replay
        if todo is None:
            todo = list(self.batcher.history)
        if not todo:
            return
        oldest = entry_id(self.batcher.oldest_seq)
        for start in range(0, len(todo), PUBLISH_CHUNK):
            chunk = todo[start:start + PUBLISH_CHUNK]
            async with self.client.pipeline(transaction=False) as pipe:
                for batch in chunk:
                    fields: dict[Any, Any] = encode_batch(batch)
                    pipe.xadd(STREAM_KEY, fields, id=entry_id(batch.seq),
                              minid=oldest, approximate=True)
                await pipe.execute()
            self._published = chunk[-1].seq
            self.health.last_seq = self._published


class Reader:
    """Edge side: load what the feed published, then follow the stream."""

    def __init__(self, client: redis.Redis, health: BrokerHealth) -> None:
        self.client = client
        self.health = health
        self.last: Seq = 0

    async def feed_info(self) -> FeedInfo:
        """The feed's description; waits for a feed process to publish one. Unreachable
        Redis here is a startup error (``BrokerError``), not something to wait out."""
        waiting = False
        while True:
            try:
                blob: Any = await self.client.get(INFO_KEY)
            except FAULTS as e:
                raise BrokerError(f"cannot reach redis {self.health.url}: {e}") from None
            if blob is not None:
                return FeedInfo.decode(blob)
            if not waiting:
                log.info("waiting for a feed process to publish to %s", self.health.url)
                waiting = True
            await asyncio.sleep(0.2)

    async def start(self, batcher: Batcher) -> None:
        """:meth:`load` at startup, where unreachable Redis is an error for the command line."""
        try:
            await self.load(batcher)
        except FAULTS as e:
            raise BrokerError(f"cannot load from redis {self.health.url}: {e}") from None

    async def load(self, batcher: Batcher) -> None:
        """Quotes and bars from the saved state, then every held entry: those the state
        already reflects only go to the resume history, the rest are applied."""
        blob: Any = await self.client.get(STATE_KEY)
        state_seq = -1
        if blob is not None:
            try:
                state_seq = restore_state(batcher, blob)
            except BrokerDataError as e:  # quotes and bars then start from the stream
                log.error("%s", e)
        entries: Any = await self.client.xrange(STREAM_KEY)
        while not entries and state_seq < 0:  # a feed that has only just started
            await asyncio.sleep(0.05)
            entries = await self.client.xrange(STREAM_KEY)
        for entry, fields in entries:
            batch = decode_batch(entry, fields)
            if batch.seq <= state_seq:
                batcher.remember(batch)
            else:
                batcher.apply(batch)
        self.last = max(batcher.seq, state_seq, 0)
        self.health.last_seq = batcher.seq
        self.health.up()

    async def run(
        self, batcher: Batcher, publish: Callable[[Batch], None], reset: Callable[[], None]
    ) -> None:
        """Follow the stream forever; ``publish`` each batch in order, ``reset`` after a
        discontinuity has been reloaded."""
        attempt = 0
        while not _stopping():
            try:
                reply: Any = await self.client.xread(
                    {STREAM_KEY: entry_id(self.last)}, count=READ_COUNT, block=READ_BLOCK_MS
                )
                self.health.up()
                attempt = 0
                for _, entries in reply or ():
                    for entry, fields in entries:
                        batch = decode_batch(entry, fields)
                        if batch.seq != self.last + 1:
                            log.warning("stream jumped from seq %d to %d: resetting clients",
                                        self.last, batch.seq)
                            await self.load(batcher)
                            self.health.resets += 1
                            reset()
                            break
                        batcher.apply(batch)
                        self.last = self.health.last_seq = batch.seq
                        publish(batch)
            except FAULTS as e:
                if _stopping():
                    raise asyncio.CancelledError from e
                self.health.down(e)
                await _pause(attempt)
                attempt += 1
            except BrokerDataError as e:  # written by another version: skip the entry
                log.error("%s; skipping it", e)
                self.last += 1
