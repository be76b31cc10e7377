import numpy as np

from dashboard.core.batcher import Batcher
from tests.ticks import ticks

T0 = 1_700_000_000_000.0


def make(history_s: float = 1.0) -> Batcher:
    return Batcher(["AAPL", "MSFT", "SPY"], history_s, first_seq=100)


def test_a_batch_coalesces_everything_that_arrived_in_the_interval():
    b = make()
    b.add(ticks([(0, 10.0, 0, 1), (1, 20.0, 5, 1)]))
    b.add(ticks([(0, 10.5, 10, 1)]))
    batch = b.close(T0 + 50)
    assert batch is not None
    assert batch.seq == 100
    assert batch.ts == T0 + 50
    assert batch.ticks.sym.tolist() == [0, 1, 0]
    assert batch.ticks.price.tolist() == [10.0, 20.0, 10.5]


def test_seq_grows_by_exactly_one_per_batch():
    b = make()
    seqs = []
    for i in range(5):
        b.add(ticks([(0, 10.0 + i, i, 1)]))
        batch = b.close(T0 + 50 * i)
        assert batch is not None
        seqs.append(batch.seq)
    assert seqs == [100, 101, 102, 103, 104]


def test_an_interval_with_no_ticks_makes_no_batch_and_leaves_seq_alone():
    b = make()
    b.add(ticks([(0, 10.0, 0, 1)]))
    b.close(T0)
    assert b.close(T0 + 50) is None
    b.add(ticks([(0, 11.0, 60, 1)]))
    batch = b.close(T0 + 100)
    assert batch is not None and batch.seq == 101


def test_resume_replays_exactly_the_batches_after_since():
    b = make(history_s=10)
    for i in range(6):
        b.add(ticks([(i % 3, 10.0 + i, i, 1)]))
        b.close(T0 + 50 * i)
    replay = b.resume(102).replay
    assert replay is not None
    assert [x.seq for x in replay] == [103, 104, 105]
    assert b.resume(105).replay == []


def test_resume_from_before_the_history_window_asks_for_a_reset():
    b = make(history_s=0.1)
    for i in range(10):
        b.add(ticks([(0, 10.0 + i, i, 1)]))
        b.close(T0 + 50 * i)
    # 100 ms of history at 50 ms per batch: only the last three batches are held.
    assert b.resume(b.seq - 1).replay is not None
    assert b.resume(100).replay is None
    oldest_held = b.seq - len(b.resume(b.seq - 3).replay or []) + 1
    assert b.resume(oldest_held - 1).replay is not None
    assert b.resume(oldest_held - 2).replay is None


def test_resume_from_the_future_or_another_server_asks_for_a_reset():
    b = make()
    b.add(ticks([(0, 10.0, 0, 1)]))
    b.close(T0)
    assert b.resume(b.seq + 5).replay is None


def test_quotes_keep_the_latest_tick_and_session_open_high_low_volume():
    b = make()
    b.add(ticks([(0, 10.0, 0, 1), (0, 12.0, 1, 2), (1, 20.0, 2, 1), (0, 9.0, 3, 1)]))
    b.close(T0 + 50)
    b.add(ticks([(0, 11.0, 60, 1)]))
    b.close(T0 + 100)
    q = b.quotes
    assert q.price[0] == 11.0 and q.open[0] == 10.0
    assert q.high[0] == 12.0 and q.low[0] == 9.0
    assert q.volume[0] == 500.0
    assert q.bid[0] == 10.99 and q.ask[0] == 11.01
    assert q.quoted().tolist() == [0, 1]
    assert q.quoted(np.array([1, 2], np.int32)).tolist() == [1]


def test_bars_are_ohlcv_per_second_with_the_newest_possibly_open():
    b = make()
    # Ticks in seconds 0 and 1 of AAPL, within one batch and across batches.
    b.add(ticks([(0, 10.0, 0, 1), (0, 12.0, 400, 1), (0, 9.0, 900, 1), (0, 11.0, 1100, 1)]))
    b.close(T0 + 1200)
    b.add(ticks([(0, 13.0, 1500, 2)]))
    b.close(T0 + 1600)
    bars = b.bars["1s"].bars(0, limit=10)
    assert bars.t.tolist() == [T0 // 1000, T0 // 1000 + 1]
    assert bars.o.tolist() == [10.0, 11.0]
    assert bars.h.tolist() == [12.0, 13.0]
    assert bars.l.tolist() == [9.0, 11.0]
    assert bars.c.tolist() == [9.0, 13.0]
    assert bars.v.tolist() == [300.0, 300.0]
    assert b.bars["1s"].bars(0, limit=1).t.tolist() == [T0 // 1000 + 1]
    assert len(b.bars["1s"].bars(2, limit=10).t) == 0


def test_bars_keep_only_the_most_recent_capacity():
    b = make()
    series = b.bars["1s"]
    n = series.capacity + 5
    for i in range(n):
        b.add(ticks([(1, 100.0 + i, 1000 * i, 1)]))
        b.close(T0 + 1000 * i + 1)
    bars = series.bars(1, limit=series.capacity + 100)
    assert len(bars.t) == series.capacity
    assert bars.t[-1] == T0 // 1000 + n - 1
    assert np.all(np.diff(bars.t) == 1)
    assert bars.c[-1] == 100.0 + n - 1
