"""The feed interface every adapter implements: the simulator, the exchanges, replay, and
third-party plug-ins (``docs/feeds.md`` has a complete example).

A feed knows its symbols up front and yields :class:`Ticks` — columns of numpy arrays, one row
per tick — as they arrive. Columns, not tick objects, because the batcher, the hub and the
encoders all work on whole columns at once.

Lifecycle::

    feed = SomeFeed.create(FeedSpec(symbols=("BTCUSDT",), options={...}))
    await feed.start()            # connect, warm up; raises FeedError if it cannot
    async for ticks in feed:      # runs until stop() is called
        ...
    await feed.stop()             # idempotent; ends the iteration cleanly

Health: ``feed.health`` is a :class:`FeedHealth` the feed keeps up to date; the server shows
it in ``/healthz`` and ``/metrics``.
"""

from __future__ import annotations

import abc
import enum
import random
import time
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

Symbol = str

FloatArray = npt.NDArray[np.float64]
IndexArray = npt.NDArray[np.int32]


class FeedError(Exception):
    """A feed could not be built or started (bad option, unreachable source)."""


def jittered_backoff(attempt: int, initial_s: float, max_s: float) -> float:
    """Exponential, capped, with jitter so many reconnecting peers do not come back in step."""
    ceiling = min(max_s, initial_s * 2.0 ** min(attempt, 30))
    return float(ceiling * random.uniform(0.5, 1.0))


@dataclass(frozen=True, slots=True)
class FeedSpec:
    """What the command line says about the feed: ``--symbols``, ``--feed-url``,
    ``--feed-option key=value`` (strings, for the adapter to parse), and the simulator's
    ``--tick-rate`` and ``--seed``."""

    symbols: int | tuple[str, ...] = 100
    url: str | None = None
    options: Mapping[str, str] = field(default_factory=dict)
    tick_rate: float = 2000.0
    seed: int | None = None

    def names(self, feed: str) -> tuple[str, ...]:
        """Explicit symbol names, which every real feed needs."""
        if isinstance(self.symbols, int):
            raise FeedError(f"{feed} needs symbol names: --symbols A,B,...")
        return self.symbols

    def option(self, key: str, default: str) -> str:
        return self.options.get(key, default)

    def number(self, key: str, default: float) -> float:
        raw = self.options.get(key)
        if raw is None:
            return default
        try:
            return float(raw)
        except ValueError:
            raise FeedError(f"--feed-option {key}= must be a number, got {raw!r}") from None


class FeedState(enum.Enum):
    STARTING = "starting"
    LIVE = "live"
    STALE = "stale"  # connected, but nothing (not even a heartbeat) for a while
    RECONNECTING = "reconnecting"
    STOPPED = "stopped"
    FAILED = "failed"  # its iteration raised: the server restarts it with backoff


@dataclass
class FeedHealth:
    """Counters and state a feed keeps; plain attributes, read by /healthz and /metrics."""

    state: FeedState = FeedState.STARTING
    messages: int = 0
    reconnects: int = 0
    gaps: int = 0
    parse_errors: int = 0
    last_message_at: float | None = None  # time.monotonic()

    def message(self) -> None:
        self.messages += 1
        self.last_message_at = time.monotonic()
        if self.state is not FeedState.LIVE:
            self.state = FeedState.LIVE

    def as_json(self) -> dict[str, object]:
        age = None if self.last_message_at is None else time.monotonic() - self.last_message_at
        return {
            "state": self.state.value, "messages": self.messages, "reconnects": self.reconnects,
            "gaps": self.gaps, "parse_errors": self.parse_errors,
            "last_message_age_s": None if age is None else round(age, 3),
        }


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
    """A source of ticks. Subclasses implement :meth:`create`, :attr:`symbols` and
    :meth:`ticks`; start/stop are optional hooks."""

    name: str = "feed"

    def __init__(self) -> None:
        self.health = FeedHealth()

    @classmethod
    @abc.abstractmethod
    def create(cls, spec: FeedSpec) -> Feed:
        """Build the feed from the command line; raise :class:`FeedError` for a bad spec."""

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

    def due(self) -> Ticks | None:
        """Ticks whose time has come that :meth:`ticks` has not yielded yet, taken right
        before each batch closes. A feed that releases ticks on its own clock (the
        simulator steps every few milliseconds) returns them here, so they go out in the
        batch their time belongs to, not one interval later; a feed that yields ticks as
        they arrive has none."""
        return None

    def __aiter__(self) -> AsyncIterator[Ticks]:
        return self.ticks()
