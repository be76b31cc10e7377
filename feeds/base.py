"""The feed interface every adapter implements: the simulator now, exchanges later.

A feed knows its symbols up front and yields :class:`Ticks` — columns of numpy arrays, one row
per tick — as they arrive. Columns, not tick objects, because the batcher, the hub and the
encoders all work on whole columns at once.

Lifecycle::

    feed = SomeFeed(...)
    await feed.start()            # connect, warm up; raises FeedError if it cannot
    async for ticks in feed:      # runs until stop() is called
        ...
    await feed.stop()             # idempotent; ends the iteration cleanly
"""

from __future__ import annotations

import abc
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

Symbol = str

FloatArray = npt.NDArray[np.float64]
IndexArray = npt.NDArray[np.int32]


class FeedError(Exception):
    """A feed could not be built or started (bad option, unreachable source)."""


@dataclass(frozen=True, slots=True)
class Ticks:
    """Tick columns of equal length.

    ``sym`` indexes the feed's ``symbols``; ``ts`` is when each tick was made at its source,
    in epoch milliseconds (float, sub-millisecond digits).
    """

    sym: IndexArray
    price: FloatArray
    size: FloatArray
    bid: FloatArray
    ask: FloatArray
    ts: FloatArray

    def __len__(self) -> int:
        return len(self.sym)

    @classmethod
    def empty(cls) -> Ticks:
        f = np.empty(0, np.float64)
        return cls(np.empty(0, np.int32), f, f, f, f, f)

    @classmethod
    def concat(cls, parts: Sequence[Ticks]) -> Ticks:
        """One column set from several, in order (a single part is returned as is)."""
        if not parts:
            return cls.empty()
        if len(parts) == 1:
            return parts[0]
        return cls(
            np.concatenate([p.sym for p in parts]),
            np.concatenate([p.price for p in parts]),
            np.concatenate([p.size for p in parts]),
            np.concatenate([p.bid for p in parts]),
            np.concatenate([p.ask for p in parts]),
            np.concatenate([p.ts for p in parts]),
        )

    def take(self, rows: npt.NDArray[np.intp] | npt.NDArray[np.bool_] | slice) -> Ticks:
        """The rows selected by an index, a boolean mask, or a slice (views, no copy)."""
        return Ticks(
            self.sym[rows], self.price[rows], self.size[rows],
            self.bid[rows], self.ask[rows], self.ts[rows],
        )


class Feed(abc.ABC):
    """A source of ticks. Subclasses implement :meth:`ticks`; start/stop are optional hooks."""

    name: str = "feed"

    @property
    @abc.abstractmethod
    def symbols(self) -> Sequence[Symbol]:
        """Every symbol this feed may tick, in index order (fixed once started)."""

    async def start(self) -> None:  # noqa: B027 - optional hook
        """Connect or warm up. Raise :class:`FeedError` when the feed cannot run."""

    async def stop(self) -> None:  # noqa: B027 - optional hook
        """Ask the iteration to end soon; safe to call more than once."""

    @abc.abstractmethod
    def ticks(self) -> AsyncIterator[Ticks]:
        """Yield tick columns as they arrive until :meth:`stop` is called."""

    def __aiter__(self) -> AsyncIterator[Ticks]:
        return self.ticks()
