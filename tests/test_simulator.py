"""The simulated feed: repeatable, realistic-looking, and well-behaved in the event loop."""

from __future__ import annotations

import asyncio
import math
import time

import numpy as np
import pytest

from feeds.base import FeedError, Ticks
from feeds.instruments import (
    REAL_INSTRUMENTS,
    Instrument,
    default_instruments,
    instruments_for,
)
from feeds.simulator import TRADING_SECONDS_PER_YEAR, SimulatorFeed


def feed(symbols: int | list[str] = 20, rate: float = 2000.0, seed: int | None = 7,
         step_s: float = 0.005) -> SimulatorFeed:
    return SimulatorFeed.from_symbols(symbols, rate, seed=seed, step_s=step_s)


def columns(t: Ticks) -> tuple[np.ndarray, ...]:
    """The repeatable columns (everything but the wall-clock-anchored ``ts``)."""
    return (t.sym, t.price, t.size, t.bid, t.ask)


def assert_same_ticks(a: Ticks, b: Ticks) -> None:
    for x, y in zip(columns(a), columns(b), strict=True):
        np.testing.assert_array_equal(x, y)


def collect(f: SimulatorFeed, want: int, timeout_s: float = 2.0) -> list[Ticks]:
    """Chunks from the live loop until ``want`` ticks arrived, then stop; bounded in time."""

    async def run() -> list[Ticks]:
        chunks: list[Ticks] = []
        async for ticks in f:
            chunks.append(ticks)
            if sum(map(len, chunks)) >= want:
                await f.stop()
        return chunks

    return asyncio.run(asyncio.wait_for(run(), timeout_s))


# --- repeatability ------------------------------------------------------------------------


def test_same_seed_gives_the_same_ticks_however_they_are_generated() -> None:
    _, whole = feed().generate(1000)
    split = feed()
    parts = [split.generate(n)[1] for n in (1, 299, 0, 450, 250)]
    assert_same_ticks(whole, Ticks.concat(parts))


def test_same_seed_gives_the_same_ticks_however_the_live_loop_chunks_them() -> None:
    fine = collect(feed(rate=20_000, step_s=0.001), 2000)
    coarse = collect(feed(rate=20_000, step_s=0.03), 2000)
    a, b = Ticks.concat(fine), Ticks.concat(coarse)
    n = min(len(a), len(b))
    assert n >= 2000
    assert_same_ticks(a.take(np.arange(n)), b.take(np.arange(n)))


def test_due_hands_over_what_came_due_between_steps_once_and_in_order() -> None:
    """What a batch takes with ``due()`` right before it closes and what the live loop
    yields interleave into exactly the schedule: nothing twice, nothing skipped."""
    f = feed(rate=2000.0, step_s=0.2)  # long steps: ticks come due between them
    assert f.due() is None  # not started: nothing is due yet

    async def run() -> tuple[list[Ticks], int]:
        chunks: list[Ticks] = []
        from_due = 0

        async def consume() -> None:
            async for ticks in f:
                chunks.append(ticks)

        task = asyncio.create_task(consume())
        for _ in range(6):
            await asyncio.sleep(0.05)
            if (ticks := f.due()) is not None:
                chunks.append(ticks)
                from_due += len(ticks)
        await f.stop()
        await asyncio.sleep(0.05)
        assert f.due() is None  # stopped: nothing more, though ticks came due
        await asyncio.wait_for(task, 1.0)
        return chunks, from_due

    chunks, from_due = asyncio.run(asyncio.wait_for(run(), 2.0))
    got = Ticks.concat(chunks)
    assert from_due > len(got) / 2  # most of it came through due(), between the steps
    _, scheduled = feed(rate=2000.0).generate(len(got))
    assert_same_ticks(got, scheduled)
    assert np.all(np.diff(got.ts) >= 0)


def test_different_seeds_give_different_ticks() -> None:
    _, a = feed(seed=1).generate(500)
    _, b = feed(seed=2).generate(500)
    assert not np.array_equal(a.sym, b.sym)
    assert not np.array_equal(a.size, b.size)


def test_no_seed_gives_a_fresh_sequence_each_time() -> None:
    _, a = feed(seed=None).generate(500)
    _, b = feed(seed=None).generate(500)
    assert not np.array_equal(a.size, b.size)


# --- what a tick looks like ---------------------------------------------------------------


def test_prices_sit_on_the_tick_grid_inside_the_quote() -> None:
    f = feed(["AAPL", "NKLA", "BKNG", "SPY"], rate=100.0)
    _, t = f.generate(20_000)
    tick = np.array([i.tick_size for i in f.instruments])[t.sym]
    for column in (t.price, t.bid, t.ask):
        steps = column / tick
        np.testing.assert_allclose(steps, np.rint(steps), rtol=0, atol=1e-6)
    assert np.all(t.bid < t.ask)
    assert np.all((t.bid <= t.price) & (t.price <= t.ask))
    assert np.all(t.bid > 0)
    spread = np.rint((t.ask - t.bid) / tick)
    assert set(np.unique(spread)) == {1.0, 2.0, 3.0}


def test_prices_print_short() -> None:
    f = feed(["AAPL", "NKLA"])
    _, t = f.generate(2000)
    for sym, price in zip(t.sym[:200], t.price[:200], strict=True):
        decimals = f.instruments[sym].decimals
        assert len(repr(float(price)).split(".")[1]) <= decimals


def test_sizes_are_positive_whole_shares() -> None:
    _, t = feed().generate(20_000)
    assert t.size.dtype == np.float64
    assert np.all(t.size >= 1)
    np.testing.assert_array_equal(t.size, np.rint(t.size))
    assert 50 <= np.median(t.size) <= 200  # around a round lot


def test_columns_have_the_base_dtypes() -> None:
    _, t = feed().generate(10)
    assert t.sym.dtype == np.int32
    assert all(c.dtype == np.float64 for c in (t.price, t.size, t.bid, t.ask, t.ts))


# --- arrivals -----------------------------------------------------------------------------


@pytest.mark.parametrize("rate", [1.0, 2000.0, 100_000.0])
def test_tick_count_over_simulated_time_is_near_the_rate(rate: float) -> None:
    seconds = 10_000 / rate  # ~10,000 expected: Poisson sd 1 %, bound 10 %
    offsets, _ = feed(rate=rate).generate(int(rate * seconds * 1.3) + 100)
    count = np.count_nonzero(offsets <= seconds)
    assert abs(count - rate * seconds) <= 0.1 * rate * seconds


def test_every_symbol_gets_ticks() -> None:
    f = feed(120)
    _, t = f.generate(24_000)  # ~200 each
    counts = np.bincount(t.sym, minlength=120)
    assert len(counts) == 120
    assert counts.min() >= 100


def test_ticks_come_in_time_order_with_sub_millisecond_stamps() -> None:
    start_ms = 1_700_000_000_000.0
    f = feed(rate=50_000)
    offsets, t = f.generate(5000, start_ms)
    later_offsets, later = f.generate(5000, start_ms)
    assert np.all(np.diff(np.concatenate([offsets, later_offsets])) >= 0)
    assert np.all(np.diff(np.concatenate([t.ts, later.ts])) >= 0)
    np.testing.assert_allclose(t.ts, start_ms + offsets * 1000, rtol=0, atol=0.051)
    np.testing.assert_allclose(t.ts * 10, np.rint(t.ts * 10), rtol=0, atol=1e-3)


# --- the random walk ----------------------------------------------------------------------


def test_log_returns_scale_with_sigma_root_dt_for_each_symbol() -> None:
    vols = [0.2, 0.8, 1.6]
    # High prices make the cent grid negligible next to the moves being measured.
    instruments = [Instrument(f"X{i}", 5000.0, 0.01, v) for i, v in enumerate(vols)]
    f = SimulatorFeed(instruments, tick_rate=1.0, seed=3)
    parts = [f.generate(3000) for _ in range(10)]  # chained across blocks
    offsets = np.concatenate([p[0] for p in parts])
    t = Ticks.concat([p[1] for p in parts])
    for i, vol in enumerate(vols):
        mine = t.sym == i
        returns = np.diff(np.log(np.concatenate([[5000.0], t.price[mine]])))
        dt_years = np.diff(np.concatenate([[0.0], offsets[mine]])) / TRADING_SECONDS_PER_YEAR
        expected = vol * math.sqrt(dt_years.mean())
        assert 0.9 < returns.std() / expected < 1.1
        assert abs(returns.mean()) < 5 * expected / math.sqrt(len(returns))  # no drift


def test_a_flat_instrument_never_moves() -> None:
    f = SimulatorFeed([Instrument("FLAT", 42.0, 0.01, 0.0)], tick_rate=10.0, seed=1)
    _, t = f.generate(1000)
    assert np.all(t.price == 42.0)


# --- symbols ------------------------------------------------------------------------------


def test_named_symbols_keep_their_known_prices() -> None:
    f = feed(["MSFT", "AAPL", "ZZZZ"], rate=10.0)
    assert f.symbols == ("MSFT", "AAPL", "ZZZZ")
    _, t = f.generate(1000)
    first_aapl = t.price[t.sym == 1][0]
    assert abs(first_aapl / 189.12 - 1) < 0.01
    assert f.instruments[1].price == 189.12


def test_unknown_names_get_the_same_made_up_price_every_time() -> None:
    a, b = instruments_for(["ZZZZ", "QWERTY"]), instruments_for(["ZZZZ", "QWERTY"])
    assert a == b
    assert all(5 <= i.price <= 500 and i.tick_size == 0.01 for i in a)
    assert instruments_for(["ZZZZ"], seed=1) != instruments_for(["ZZZZ"], seed=2)


def test_default_instruments_are_real_names_then_simulated_ones() -> None:
    many = default_instruments(len(REAL_INSTRUMENTS) + 30)
    assert [i.name for i in many[:3]] == [n for n, _, _ in REAL_INSTRUMENTS[:3]]
    extra = many[len(REAL_INSTRUMENTS):]
    assert extra[0].name == f"SIM{len(REAL_INSTRUMENTS) + 1:04d}"
    assert all(5 <= i.price <= 500 for i in extra)
    assert default_instruments(len(REAL_INSTRUMENTS) + 300)[-300:][:30] == extra
    assert len({i.name for i in many}) == len(many)
    assert default_instruments(5) == many[:5]


def test_sub_dollar_names_tick_in_hundredths_of_a_cent() -> None:
    (nkla,) = instruments_for(["NKLA"])
    assert nkla.tick_size == 0.0001
    assert nkla.decimals == 4


@pytest.mark.parametrize(
    "symbols, rate",
    [(0, 100.0), ([], 100.0), (["A", "A"], 100.0), ([""], 100.0), ("AAPL", 100.0),
     (5, 0.0), (5, -1.0), (5, math.nan), (5, math.inf)],
)
def test_unusable_options_raise_feed_error(symbols: int | list[str], rate: float) -> None:
    with pytest.raises(FeedError):
        SimulatorFeed.from_symbols(symbols, rate)


# --- the live loop ------------------------------------------------------------------------


def test_the_feed_yields_soon_and_stops_promptly_after_stop() -> None:
    f = feed(rate=5000.0)

    async def run() -> tuple[list[Ticks], float]:
        chunks: list[Ticks] = []

        async def consume() -> None:
            async for ticks in f:
                chunks.append(ticks)

        task = asyncio.create_task(consume())
        await asyncio.sleep(0.2)
        await f.stop()
        await f.stop()  # idempotent
        asked = time.monotonic()
        await asyncio.wait_for(task, 1.0)
        return chunks, time.monotonic() - asked

    before_ms = time.time() * 1000
    chunks, stop_s = asyncio.run(asyncio.wait_for(run(), 2.0))
    after_ms = time.time() * 1000
    assert chunks and all(len(c) > 0 for c in chunks)
    assert stop_s < 0.5
    t = Ticks.concat(chunks)
    assert np.all(np.diff(t.ts) >= 0)
    assert before_ms - 1000 <= t.ts[0] and t.ts[-1] <= after_ms + 1000  # epoch ms


def test_a_feed_stopped_before_iterating_yields_nothing() -> None:
    f = feed()

    async def run() -> list[Ticks]:
        await f.stop()
        return [t async for t in f]

    assert asyncio.run(asyncio.wait_for(run(), 1.0)) == []


def test_a_feed_runs_its_schedule_only_once() -> None:
    f = feed(rate=20_000)
    collect(f, 10)

    async def again() -> None:
        async for _ in f:
            pass

    with pytest.raises(FeedError):
        asyncio.run(again())
