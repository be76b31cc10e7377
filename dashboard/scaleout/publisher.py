"""Scale-out over Redis, the feed side: one feed process publishes, any number of edges
(:mod:`dashboard.scaleout.reader`) serve clients.

The :class:`Publisher` holds a lock, so that a second feed process on the same database
stops with an error instead of interleaving its batches. It keeps a Redis Stream in step
with its batcher's history: each batch becomes an entry with id ``<seq>-0``, the stream is
trimmed to the history window, and the quotes and bars are saved now and then for starting
edges. When Redis comes back after an outage (or restarts empty), the publisher re-appends
whatever of its history the stream lacks, so edges that resume from the last entry they
read see no gap. A feed process that starts anew (a new *run*) drops the previous run's
stream and state first: two runs' batches never mix.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import Any

import redis.asyncio as redis
from redis.exceptions import LockError

from dashboard.core.batcher import Batcher, Seq
from dashboard.errors import FeedLockError
from dashboard.scaleout.codec import (
    FeedInfo,
    StateArrays,
    encode_batch,
    encode_state,
    entry_id,
    run_of,
    seq_of,
    state_arrays,
)
from dashboard.scaleout.connection import (
    FAULTS,
    INFO_KEY,
    LOCK_KEY,
    STATE_KEY,
    STREAM_KEY,
    Faults,
    stopping,
)
from dashboard.scaleout.health import BrokerHealth

log = logging.getLogger(__name__)

#: The feed's lock outlives a feed process killed without a chance to release it by this
#: long; the live feed renews it every LOCK_RENEW_S.
LOCK_TTL_MS = 10_000
LOCK_RENEW_S = 2.0
#: The state is saved at most this often and at least this often; in between, by a third
#: of the history window, so a starting edge always finds the stream entries after it.
STATE_EVERY_S = (2.0, 30.0)
#: Entries appended per round trip when the publisher catches up after an outage.
PUBLISH_CHUNK = 500


def state_every_s(history_s: float) -> float:
    low, high = STATE_EVERY_S
    return min(high, max(low, history_s / 3))


class Publisher:
    """Feed side. :meth:`notify` after each batch; :meth:`run` does the writing."""

    def __init__(
        self, client: redis.Redis, batcher: Batcher, info: FeedInfo, health: BrokerHealth
    ) -> None:
        self.client = client
        self.batcher = batcher
        self.info = info
        self.health = health
        self.state_every_s = state_every_s(info.history_s)
        self._faults = Faults(health)
        self._published: Seq = -1
        self._saved: Seq | None = None
        self._wake = asyncio.Event()
        # redis-py's lock: SET NX PX with our run as the token, renewed and released by
        # scripts that check the token. Not thread-local: one event loop, many tasks.
        self._lock = client.lock(LOCK_KEY, timeout=LOCK_TTL_MS / 1000, thread_local=False)

    def notify(self) -> None:
        self._wake.set()

    async def start(self) -> None:
        """Take the lock and sync, before the process says it is listening: another feed's
        lock or a refusal is then a startup error. Waits while Redis is out of reach."""
        await self._faults.retrying(self._connect)

    async def _connect(self) -> None:
        await self._hold_lock()
        await self._sync()

    async def run(self) -> None:
        """Publish until cancelled (after :meth:`start`); raises ``BrokerError`` when another
        feed took the lock or Redis refuses this server (no retry mends either)."""
        synced = True
        state_due = 0.0
        lock_due = time.monotonic() + LOCK_RENEW_S
        while not stopping():
            try:
                self._wake.clear()
                if not synced:
                    await self._connect()
                    synced, state_due = True, 0.0
                    lock_due = time.monotonic() + LOCK_RENEW_S
                    self._faults.passed()
                elif time.monotonic() >= lock_due:
                    await self._hold_lock()
                    lock_due = time.monotonic() + LOCK_RENEW_S
                want_state = time.monotonic() >= state_due and self._saved != self.batcher.seq
                state = await self._publish(want_state)
                if state is not None:
                    await self._save_state(*state)
                    state_due = time.monotonic() + self.state_every_s
                if stopping():
                    break
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(LOCK_RENEW_S):
                        await self._wake.wait()
            except Exception as e:
                synced = False
                await self._faults.failed(e)

    async def release(self) -> None:
        """Give the lock up at shutdown, so a restarted feed need not wait for it to expire
        (when Redis is out of reach, it expires by itself)."""
        with contextlib.suppress(*FAULTS):  # LockError (not ours any more) is a RedisError
            async with asyncio.timeout(1.0):
                await self._lock.release()

    async def _hold_lock(self) -> None:
        """Take or renew the lock. Another run's lock may be that of a feed killed without
        releasing it: wait for it to expire. One still held after that is a live feed's."""
        give_up = time.monotonic() + LOCK_TTL_MS / 1000 + 2 * LOCK_RENEW_S
        waiting = False
        while not await self._take_lock():
            if time.monotonic() > give_up:
                raise FeedLockError(
                    f"another feed process is publishing to redis {self.health.url}: stop it, "
                    "or give this one another database (redis://HOST:PORT/DB)"
                )
            if not waiting:
                log.warning("another feed process holds %s; waiting up to %.0f s for it to "
                            "expire", LOCK_KEY, give_up - time.monotonic())
                waiting = True
            await asyncio.sleep(LOCK_RENEW_S / 4)

    async def _take_lock(self) -> bool:
        """Renew the lock while it is still ours; otherwise try to take it (after Redis came
        back empty, or a dead feed's lock expired)."""
        with contextlib.suppress(LockError):
            await self._lock.reacquire()
            return True
        return bool(await self._lock.acquire(blocking=False, token=self.info.run))

    async def _sync(self) -> None:
        """After (re)connecting: describe the feed, and find where the stream stops so the
        history it lacks is appended again. Another run's stream and state are dropped."""
        current: Any = await self.client.get(INFO_KEY)
        self._saved = None
        if run_of(current) != self.info.run:
            async with self.client.pipeline(transaction=True) as pipe:
                pipe.delete(STREAM_KEY, STATE_KEY)
                pipe.set(INFO_KEY, self.info.encode())
                await pipe.execute()
            self._published = -1
            return
        top: Any = await self.client.xrevrange(STREAM_KEY, count=1)
        self._published = seq_of(top[0][0]) if top else -1

    async def _publish(self, want_state: bool) -> tuple[Seq, StateArrays] | None:
        """Append what the stream lacks. With ``want_state``, also a copy of the quotes and
        bars taken when the batches being appended are all the batcher has: batches keep
        closing while the appends are in flight, so waiting for a quiet moment after them
        could wait forever on a slow link. Each append runs within a socket timeout (5 s)
        well inside the lock's remaining life, so a feed that lost the lock cannot write."""
        # resume() slices the held batches; copying the whole history every batch would
        # cost the event loop O(history) 20 times a second. None: publish all that is held.
        todo = self.batcher.resume(self._published).replay
        if todo is None:
            todo = list(self.batcher.history)
        state = None
        if want_state and not todo and self._published == self.batcher.seq >= 0:
            state = self.batcher.seq, state_arrays(self.batcher, self.info.run)
        oldest = entry_id(self.batcher.oldest_seq)
        for start in range(0, len(todo), PUBLISH_CHUNK):
            chunk = todo[start:start + PUBLISH_CHUNK]
            async with self.client.pipeline(transaction=False) as pipe:
                for batch in chunk:
                    fields: dict[Any, Any] = encode_batch(batch)
                    pipe.xadd(STREAM_KEY, fields, id=entry_id(batch.seq),
                              minid=oldest, approximate=True)
                if want_state and chunk[-1].seq == self.batcher.seq:
                    state = self.batcher.seq, state_arrays(self.batcher, self.info.run)
                await pipe.execute()
            self._published = chunk[-1].seq
            self.health.last_seq = self._published
        return state

    async def _save_state(self, seq: Seq, arrays: StateArrays) -> None:
        """Encoded in a thread: megabytes of bars must not hold up every client's batches.
        Saved only once the stream holds every batch up to ``seq`` (a starting edge replays
        the stream after the state)."""
        blob = await asyncio.to_thread(encode_state, arrays)
        await self.client.set(STATE_KEY, blob)
        self._saved = seq
