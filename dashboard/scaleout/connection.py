"""What the publisher and the reader share: the keys, a client that fails fast, and the one
policy for what goes wrong with Redis.

Keys live under ``market-dashboard:`` in the database the URL names (``redis://h:p/DB``).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TypeVar

import redis.asyncio as redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import (
    AuthenticationError,
    AuthorizationError,
    NoPermissionError,
    RedisError,
)

from dashboard.errors import BrokerDataError, BrokerError
from dashboard.scaleout.health import BrokerHealth
from feeds.base import jittered_backoff

PREFIX = "market-dashboard"
STREAM_KEY = f"{PREFIX}:batches"
STATE_KEY = f"{PREFIX}:state"
INFO_KEY = f"{PREFIX}:feed"
LOCK_KEY = f"{PREFIX}:feed-lock"
#: A blocking read returns at least this often, so a dead connection is noticed.
READ_BLOCK_MS = 1000
INITIAL_BACKOFF_S = 0.1
MAX_BACKOFF_S = 5.0

#: What passes with time: a lost connection (redis-py wraps most socket errors), a timeout,
#: or data this version cannot read (a feed of another version, an entry being rewritten).
FAULTS = (RedisError, OSError, asyncio.TimeoutError, BrokerDataError)
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


def stopping() -> bool:
    """This task is being cancelled. redis-py can swallow a cancel that lands mid-command
    (or turn it into a connection error); carrying on would keep shutdown waiting."""
    task = asyncio.current_task()
    return task is not None and task.cancelling() > 0


class Faults:
    """The one policy for every loop that talks to Redis.

    - A refusal (wrong password, missing rights) raises :class:`BrokerError`: no retry
      mends it.
    - A fault (see :data:`FAULTS`) marks the broker degraded, then pauses — longer after
      each fault in a row, with jitter — before the caller tries again.
    - A fault while the task is being cancelled is the cancel.
    - Anything else is not Redis's doing and propagates.
    """

    def __init__(self, health: BrokerHealth) -> None:
        self.health = health
        self._attempt = 0

    def passed(self) -> None:
        """Redis answered: the broker is up, and the next fault starts the backoff afresh."""
        self._attempt = 0
        self.health.up()

    async def failed(self, error: Exception) -> None:
        """Raise ``error`` as the policy says, or pause before the caller tries again."""
        if isinstance(error, REFUSALS):
            raise BrokerError(f"redis {self.health.url} refused this server: {error}") from None
        if not isinstance(error, FAULTS):
            raise error
        if stopping():
            raise asyncio.CancelledError from error
        self.health.down(error)
        await asyncio.sleep(jittered_backoff(self._attempt, INITIAL_BACKOFF_S, MAX_BACKOFF_S))
        self._attempt += 1

    async def retrying(self, step: Callable[[], Awaitable[T]]) -> T:
        """``step`` until Redis answers it."""
        while True:
            try:
                result = await step()
            except Exception as e:
                await self.failed(e)
            else:
                self.passed()
                return result
