"""A simulated feed: Poisson tick arrivals, geometric Brownian motion prices, numpy throughout.

Repeatability is the design constraint. Ticks are drawn from the seeded RNG in blocks ahead
of time, each with a *scheduled* offset from the start of the iteration; the live loop only
decides *when* to release them (``np.searchsorted`` over the schedule). So wall-clock jitter
and how ticks get chunked into yields change nothing but the grouping: the same seed gives
the same (sym, price, size, bid, ask) sequence, and ``ts`` is the scheduled time, not the
moment of release.

All randomness of a block comes from one ``rng.random((n, 6))`` call — uniforms turned into
exponential gaps, symbol choices, Box-Muller normals, spreads — because a uniform array is
consumed from the stream in row order: ``generate(a)`` then ``generate(b)`` draws exactly what
``generate(a + b)`` draws.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import AsyncIterator, Sequence

import numpy as np
import numpy.typing as npt

from feeds.base import Feed, FeedError, FeedSpec, FloatArray, IndexArray, Symbol, Ticks
from feeds.instruments import Instrument, default_instruments, instruments_for

#: Seconds of trading in a year (252 sessions of 6.5 h): volatility is quoted per trading time.
TRADING_SECONDS_PER_YEAR = 252 * 6.5 * 3600
#: Longest single wait of the live loop, so a schedule stays responsive at low tick rates.
MAX_WAIT_S = 0.25
#: Highest accepted rate; beyond it a block no longer fits comfortably in memory.
MAX_TICK_RATE = 1_000_000.0
#: Trade sizes: log-normal around a 100-share round lot.
SIZE_LOG_MEDIAN = math.log(100.0)
SIZE_LOG_SIGMA = 1.0
#: Quoted spreads are 1..MAX_SPREAD_TICKS ticks wide.
MAX_SPREAD_TICKS = 3


class SimulatorFeed(Feed):
    """Random but realistic ticks for ``instruments`` at ``tick_rate`` per second in total.

    Each tick picks a symbol uniformly, so every symbol ticks at ``tick_rate / len(symbols)``
    on average. A symbol's price follows GBM stepped by the scheduled time since its own
    previous tick; trades print on the tick grid inside a 1-3 tick bid/ask spread.
    """

    name = "sim"

    def __init__(
        self,
        instruments: Sequence[Instrument],
        tick_rate: float,
        seed: int | None = None,
        step_s: float = 0.005,
    ) -> None:
        if not instruments:
            raise FeedError("the simulator needs at least one instrument")
        names = [i.name for i in instruments]
        if len(set(names)) != len(names):
            raise FeedError("instrument names must be distinct")
        if not (math.isfinite(tick_rate) and 0 < tick_rate <= MAX_TICK_RATE):
            raise FeedError(f"tick rate must be in (0, {MAX_TICK_RATE:g}], not {tick_rate!r}")
        if not (math.isfinite(step_s) and step_s > 0):
            raise FeedError(f"step must be a positive number of seconds, not {step_s!r}")
        if seed is not None and seed < 0:
            raise FeedError(f"seed must be >= 0, not {seed}")
        super().__init__()
        self._instruments = tuple(instruments)
        self._symbols = tuple(names)
        self._tick_rate = float(tick_rate)
        self._step_s = float(step_s)
        self._seed = seed
        self._rng = np.random.default_rng(seed)
        #: Half a second of ticks per block: few refills at high rates, little waste at low.
        self._block = max(256, int(tick_rate * 0.5))

        self._tick_size: FloatArray = np.array([i.tick_size for i in instruments], np.float64)
        self._decimals = np.array([i.decimals for i in instruments], np.int64)
        self._vol: FloatArray = np.array([i.annual_vol for i in instruments], np.float64)
        #: Unrounded log price of each symbol after its latest generated tick.
        self._log_price: FloatArray = np.log(np.array([i.price for i in instruments], np.float64))
        #: Scheduled offset (s) of each symbol's latest tick; 0 = the start price's time.
        self._last_t: FloatArray = np.zeros(len(instruments), np.float64)
        #: Scheduled offset (s) of the latest generated tick over all symbols.
        self._t = 0.0

        self._stopped = False
        self._iterated = False
        #: The live schedule (see :meth:`ticks`): the block being released, each row's
        #: offset, how far it is released, and the origin (None until iteration starts).
        self._offsets: FloatArray = np.empty(0, np.float64)
        self._pending = Ticks.empty()
        self._cursor = 0
        self._t0: float | None = None
        self._start_ms = 0.0
        self._wake: asyncio.Future[None] | None = None

    @classmethod
    def create(cls, spec: FeedSpec) -> SimulatorFeed:
        return cls.from_symbols(spec.symbols, spec.tick_rate, spec.seed)

    @classmethod
    def from_symbols(
        cls,
        symbols: int | Sequence[str],
        tick_rate: float,
        seed: int | None = None,
        step_s: float = 0.005,
    ) -> SimulatorFeed:
        """Build from the CLI's ``--symbols``: a count of default instruments, or names."""
        try:
            if isinstance(symbols, int):
                instruments = default_instruments(symbols)
            else:
                instruments = instruments_for(symbols, seed)
        except (TypeError, ValueError) as e:
            raise FeedError(str(e)) from None
        return cls(instruments, tick_rate, seed=seed, step_s=step_s)

    @property
    def symbols(self) -> Sequence[Symbol]:
        return self._symbols

    @property
    def instruments(self) -> Sequence[Instrument]:
        return self._instruments

    @property
    def tick_rate(self) -> float:
        return self._tick_rate

    @property
    def seed(self) -> int | None:
        return self._seed

    def generate(self, n: int, start_ms: float = 0.0) -> tuple[FloatArray, Ticks]:
        """The next ``n`` ticks and their scheduled offsets in seconds since the start.

        Pure simulation — no clock, no I/O — so tests can check determinism and statistics
        directly. It advances the RNG and the price state: ticks continue where the last call
        stopped. ``ts`` is ``start_ms`` plus the offset in milliseconds, to 0.1 ms.
        """
        if n < 0:
            raise ValueError(f"n must be >= 0, not {n}")
        u = self._rng.random((n, 6))

        # Arrivals: exponential gaps by inverse CDF; a sequential cumsum seeded with the last
        # offset adds in the same order however the ticks are split into calls.
        gaps = -np.log1p(-u[:, 0]) / self._tick_rate
        offsets = np.cumsum(np.concatenate(([self._t], gaps)))[1:]
        # floor(u * S) < S in exact arithmetic; the clip guards the last float rounding.
        sym = np.minimum(u[:, 1] * len(self._symbols), len(self._symbols) - 1).astype(np.int32)
        # Two independent standard normals per tick (Box-Muller): returns and sizes.
        radius = np.sqrt(-2.0 * np.log1p(-u[:, 2]))
        angle = 2.0 * np.pi * u[:, 3]
        z_price = radius * np.cos(angle)
        z_size = radius * np.sin(angle)

        log_price = self._walk(sym, offsets, z_price)
        if n:
            self._t = float(offsets[-1])

        tick = self._tick_size[sym]
        # Integer tick counts keep bid <= price <= ask exact before converting to dollars.
        price_k = np.maximum(np.rint(np.exp(log_price) / tick), 1.0)
        spread_k = 1.0 + np.floor(u[:, 4] * MAX_SPREAD_TICKS)
        below_k = np.minimum(np.floor(u[:, 5] * (spread_k + 1.0)), price_k - 1.0)
        bid_k = price_k - below_k
        ask_k = bid_k + spread_k

        size = np.maximum(np.rint(np.exp(SIZE_LOG_MEDIAN + SIZE_LOG_SIGMA * z_size)), 1.0)
        ts = np.round(start_ms + offsets * 1000.0, 1)
        decimals = self._decimals[sym]
        ticks = Ticks(
            sym=sym,
            price=_to_grid(price_k, tick, decimals),
            size=size.astype(np.float64, copy=False),
            bid=_to_grid(bid_k, tick, decimals),
            ask=_to_grid(ask_k, tick, decimals),
            ts=ts.astype(np.float64, copy=False),
        )
        return offsets.astype(np.float64, copy=False), ticks

    def _walk(self, sym: IndexArray, offsets: FloatArray, z: FloatArray) -> FloatArray:
        """Log prices after each tick, chaining same-symbol ticks in time order.

        Rows are grouped by symbol with a stable sort (time order kept within a group); each
        row's dt is the time since the previous row of its group, or since the symbol's last
        tick of an earlier block; a cumulative sum within groups then chains the increments.
        """
        n = len(sym)
        if n == 0:
            return np.empty(0, np.float64)
        order = np.argsort(sym, kind="stable")
        s = sym[order]
        t = offsets[order]
        first = np.ones(n, np.bool_)
        first[1:] = s[1:] != s[:-1]
        prev_t = np.empty(n, np.float64)
        prev_t[1:] = t[:-1]
        prev_t[first] = self._last_t[s[first]]

        dt_years = (t - prev_t) / TRADING_SECONDS_PER_YEAR
        vol = self._vol[s]
        inc = -0.5 * vol * vol * dt_years + vol * np.sqrt(dt_years) * z[order]

        csum = np.cumsum(inc)
        starts = np.flatnonzero(first)
        before = csum[starts] - inc[starts]  # running sum just before each group
        group = np.cumsum(first) - 1
        walked = self._log_price[s] + (csum - before[group])

        last = np.append(starts[1:] - 1, n - 1)
        self._log_price[s[last]] = walked[last]
        self._last_t[s[last]] = t[last]

        out = np.empty(n, np.float64)
        out[order] = walked
        return out

    async def stop(self) -> None:
        self._stopped = True
        self._wake_up()

    def due(self) -> Ticks | None:
        """The scheduled ticks whose time has come and that :meth:`ticks` has not yielded
        yet (at most ``4 * block`` rows: a long stall is caught up over several calls);
        none before :meth:`ticks` starts the schedule or after :meth:`stop`."""
        if self._t0 is None or self._stopped:
            return None
        now = time.monotonic() - self._t0
        most = 4 * self._block
        parts: list[Ticks] = []
        count = 0
        while count < most:
            end = min(int(np.searchsorted(self._offsets, now, side="right")),
                      self._cursor + most - count)
            if end > self._cursor:
                parts.append(self._pending.take(slice(self._cursor, end)))
                count += end - self._cursor
                self._cursor = end
            if self._cursor < len(self._offsets):
                break
            self._offsets, self._pending = self.generate(self._block, self._start_ms)
            self._cursor = 0
        if not parts:
            return None
        self.health.message()
        return Ticks.concat(parts)

    async def ticks(self) -> AsyncIterator[Ticks]:
        """Release scheduled ticks as their time comes, in non-empty chunks, until stop().

        The schedule's origin is the first ``__anext__``; ``ts`` is that moment's epoch time
        plus each tick's scheduled offset. A feed runs its schedule once: iterating it a
        second time raises :class:`FeedError` rather than silently restarting the clock.
        """
        if self._iterated:
            raise FeedError("a SimulatorFeed can be iterated only once")
        self._iterated = True
        loop = asyncio.get_running_loop()
        self._t0 = time.monotonic()
        self._start_ms = time.time() * 1000.0
        self._offsets, self._pending = self.generate(self._block, self._start_ms)
        while not self._stopped:
            ticks = self.due()
            if ticks is not None:
                yield ticks
                if self._stopped:
                    break
            due = float(self._offsets[self._cursor]) - (time.monotonic() - self._t0)
            # A bare future and timer, not wait_for(): this runs every few milliseconds.
            self._wake = loop.create_future()
            timer = loop.call_later(max(self._step_s, min(due, MAX_WAIT_S)), self._wake_up)
            try:
                await self._wake
            finally:
                timer.cancel()

    def _wake_up(self) -> None:
        if self._wake is not None and not self._wake.done():
            self._wake.set_result(None)


def _to_grid(k: FloatArray, tick: FloatArray, decimals: npt.NDArray[np.int64]) -> FloatArray:
    """Tick counts as prices rounded to the grid's decimals, so they print as ``189.12``.

    ``np.round`` takes one ``decimals``; looping over the distinct values (one or two: cents
    and sub-dollar) keeps the work vectorized.
    """
    raw = k * tick
    values = np.unique(decimals)
    if len(values) == 1:
        return np.round(raw, int(values[0])).astype(np.float64)
    out = np.empty_like(raw)
    for d in values:
        rows = decimals == d
        out[rows] = np.round(raw[rows], int(d))
    return out

