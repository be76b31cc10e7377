"""Scale-out over Redis: one feed process publishes, any number of edges serve clients.

The feed side (:class:`Publisher`) holds a lock, so that a second feed process on the same
database stops with an error instead of interleaving its batches. It keeps a Redis Stream in
step with its batcher's history: each batch becomes an entry with id ``<seq>-0``, the stream
is trimmed to the history window, and the quotes and bars are saved now and then for
starting edges. When Redis comes back after an outage (or restarts empty), the publisher
re-appends whatever of its history the stream lacks, so edges that resume from the last
entry they read see no gap. A feed process that starts anew (a new *run*) drops the previous
run's stream and state first: two runs' batches never mix.

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
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import redis.asyncio as redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import (
    AuthenticationError,
    AuthorizationError,
    LockError,
    NoPermissionError,
    RedisError,
)

from dashboard.core.batcher import Batch, Batcher, Seq
from dashboard.errors import BrokerDataError, BrokerError, FeedLockError
from dashboard.scaleout.codec import (
    FeedInfo,
    StateArrays,
    decode_batch,
    encode_batch,
    encode_state,
    entry_id,
    restore_state,
    seq_of,
    state_arrays,
)
from dashboard.scaleout.health import BrokerHealth
from feeds.base import jittered_backoff

log = logging.getLogger(__name__)

PREFIX = "market-dashboard"
STREAM_KEY = f"{PREFIX}:batches"
STATE_KEY = f"{PREFIX}:state"
INFO_KEY = f"{PREFIX}:feed"
LOCK_KEY = f"{PREFIX}:feed-lock"
#: The feed's lock outlives a feed process killed without a chance to release it by this
#: long; the live feed renews it every LOCK_RENEW_S.
LOCK_TTL_MS = 10_000
LOCK_RENEW_S = 2.0
#: The state is saved at most this often and at least this often; in between, by a third
#: of the history window, so a starting edge always finds the stream entries after it.
STATE_EVERY_S = (2.0, 30.0)
#: A blocking read returns at least this often, so a dead connection is noticed.
READ_BLOCK_MS = 1000
READ_COUNT = 1000
INITIAL_BACKOFF_S = 0.1
MAX_BACKOFF_S = 5.0
#: Entries appended per round trip when the publisher catches up after an outage.
PUBLISH_CHUNK = 500

#: What a lost connection to Redis looks like (redis-py wraps most socket errors).
FAULTS = (RedisError, OSError, asyncio.TimeoutError)
#: What no retry mends: a wrong password or missing rights. The process stops with an error.
REFUSALS = (AuthenticationError, AuthorizationError, NoPermissionError)

T = TypeVar("T")


def connect(url: str) -> redis.Redis:
    """A client that fails fast: the loops here retry with their own backoff, and a command
    that hangs in a library retry would hide an outage from /healthz."""
    return redis.Redis.from_url(
        url, socket_connect_timeout=2.0, socket_timeout=READ_BLOCK_MS / 1000 + 4.0,
        retry=Retry(NoBackoff(), 0), health_check_interval=0,
    )


def state_every_s(history_s: float) -> float:
    low, high = STATE_EVERY_S
    return min(high, max(low, history_s / 3))


def _stopping() -> bool:
    """This task is being cancelled. redis-py can swallow a cancel that lands mid-command
    (or turn it into a connection error); carrying on would keep shutdown waiting."""
    task = asyncio.current_task()
    return task is not None and task.cancelling() > 0


async def _pause(attempt: int) -> None:
    await asyncio.sleep(jittered_backoff(attempt, INITIAL_BACKOFF_S, MAX_BACKOFF_S))


def _refused(health: BrokerHealth, error: Exception) -> BrokerError:
    return BrokerError(f"redis {health.url} refused this server: {error}")


async def _retrying(health: BrokerHealth, step: Callable[[], Awaitable[T]]) -> T:
    """``step`` until Redis answers it, marking the broker down meanwhile."""
    attempt = 0
    while True:
        try:
            return await step()
        except REFUSALS as e:
            raise _refused(health, e) from None
        except FAULTS as e:
            if _stopping():
                raise asyncio.CancelledError from e
            health.down(e)
            await _pause(attempt)
            attempt += 1


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


def _run_of(blob: bytes | None) -> str | None:
    try:
        return FeedInfo.decode(blob).run if blob is not None else None
    except BrokerDataError:
        return None


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
        await _retrying(self.health, self._connect)
        self.health.up()

    async def _connect(self) -> None:
        await self._hold_lock()
        await self._sync()

    async def run(self) -> None:
        """Publish until cancelled (after :meth:`start`); raises ``BrokerError`` when another
        feed took the lock or Redis refuses this server (no retry mends either)."""
        attempt = 0
        synced = True
        state_due = 0.0
        lock_due = time.monotonic() + LOCK_RENEW_S
        while not _stopping():
            try:
                self._wake.clear()
                if not synced:
                    await self._connect()
                    synced, attempt, state_due = True, 0, 0.0
                    lock_due = time.monotonic() + LOCK_RENEW_S
                    self.health.up()
                elif time.monotonic() >= lock_due:
                    await self._hold_lock()
                    lock_due = time.monotonic() + LOCK_RENEW_S
                want_state = time.monotonic() >= state_due and self._saved != self.batcher.seq
                state = await self._publish(want_state)
                if state is not None:
                    await self._save_state(*state)
                    state_due = time.monotonic() + self.state_every_s
                if _stopping():
                    break
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(LOCK_RENEW_S):
                        await self._wake.wait()
            except FeedLockError:
                raise
            except REFUSALS as e:
                raise _refused(self.health, e) from None
            except FAULTS as e:
                if _stopping():
                    raise asyncio.CancelledError from e
                synced = False
                self.health.down(e)
                await _pause(attempt)
                attempt += 1

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
        if _run_of(current) != self.info.run:
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


class Reader:
    """Edge side: load what the feed published, then follow the stream."""

    def __init__(self, client: redis.Redis, health: BrokerHealth) -> None:
        self.client = client
        self.health = health
        self.last: Seq = 0
        #: The id of the last stream entry taken in, good or not: where the next read starts.
        self.cursor: bytes | str = "0-0"
        #: The feed run the batcher's quotes and bars come from (None before the first load).
        self.info: FeedInfo | None = None

    async def feed_info(self) -> FeedInfo:
        """The feed's description, once Redis is reachable and a feed has published one."""
        waiting = False
        while True:
            blob: Any = await _retrying(self.health, lambda: self.client.get(INFO_KEY))
            if blob is not None:
                return FeedInfo.decode(blob)
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
            info, blob, entries = await _retrying(self.health, self._read_all)
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
        self.health.up()

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
        attempt = 0
        while not _stopping():
            try:
                reply: Any = await self.client.xread(
                    {STREAM_KEY: self.cursor}, count=READ_COUNT, block=READ_BLOCK_MS
                )
                self.health.up()
                attempt = 0
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
            except REFUSALS as e:
                raise _refused(self.health, e) from None
            except FAULTS as e:
                if _stopping():
                    raise asyncio.CancelledError from e
                self.health.down(e)
                await _pause(attempt)
                attempt += 1

    async def _run_changed(self) -> bool:
        """A quiet stream may be a new feed run whose seqs lie below ours (its clock behind
        the last one's), which a read after our last entry would never return."""
        blob: Any = await self.client.get(INFO_KEY)
        run = _run_of(blob)
        return run is not None and self.info is not None and run != self.info.run

    async def _reload(self, batcher: Batcher, reset: Callable[[], None], why: str) -> None:
        log.warning("%s: reloading and resetting clients", why)
        await self.load(batcher)
        self.health.resets += 1
        reset()
