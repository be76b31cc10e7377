"""Flow control without a server: token bucket, conflation merge, and the slow-client ladder
driven by a fake clock."""

from __future__ import annotations

import orjson
import pytest

from dashboard.core.batcher import Batcher
from dashboard.core.conflation import MERGE_AFTER, MERGE_ROWS, Conflator, latest_per_symbol
from dashboard.core.flow import Outbox, Pace, Phase
from dashboard.core.limits import TokenBucket
from dashboard.core.messages import batch_message
from dashboard.core.payload import Form, Payload
from dashboard.core.symbols import SymbolTable
from tests.ticks import ticks

NAMES = ["AAPL", "MSFT", "SPY"]
TABLE = SymbolTable(NAMES)
T0 = 1_700_000_000_000.0


class Batches:
    """Batch payloads as the hub makes them (everything selected)."""

    def __init__(self) -> None:
        self.batcher = Batcher(NAMES, history_s=60, first_seq=1)

    def next(self, rows) -> Payload:
        self.batcher.add(ticks(rows))
        batch = self.batcher.close(T0 + self.batcher.seq)
        assert batch is not None
        return Payload(batch_message(batch, batch.ticks, TABLE.array), batch, batch.ticks)


def hold(c: Conflator, p: Payload) -> None:
    c.add(p.batch, p.ticks, p)


def message(data: bytes) -> dict:
    return orjson.loads(data)


# -- token bucket -----------------------------------------------------------------------------


def test_a_bucket_starts_full_refills_at_its_rate_and_caps_at_its_burst():
    b = TokenBucket(rate=10, burst=3, now=0.0)
    assert [b.take(0.0) for _ in range(4)] == [True, True, True, False]
    assert b.take(0.1)  # one token back after 1/rate
    assert not b.take(0.1)
    assert b.tokens(100.0) == 3  # never more than the burst


def test_spending_into_debt_delays_readiness_by_the_debt_over_the_rate():
    b = TokenBucket(rate=1000, burst=1000, now=0.0)
    b.spend(0.0, 3000)
    assert b.ready_at(0.0) == pytest.approx(2.0)
    assert b.ready_at(2.5) == 2.5


# -- conflation -------------------------------------------------------------------------------


def test_latest_per_symbol_keeps_last_quote_and_sums_sizes_in_order_of_last_tick():
    t = ticks([(0, 10.0, 0, 1), (1, 20.0, 1, 2), (0, 11.0, 2, 3), (2, 30.0, 3, 1),
               (1, 21.0, 4, 1)])
    m = latest_per_symbol(t)
    assert m.sym.tolist() == [0, 2, 1]
    assert m.price.tolist() == [11.0, 30.0, 21.0]
    assert m.size.tolist() == [400.0, 100.0, 300.0]
    assert m.ts.tolist() == [T0 + 2, T0 + 3, T0 + 4]
    assert m.bid.tolist() == [10.99, 29.99, 20.99]


def test_a_single_held_batch_goes_out_as_the_shared_payload():
    b, c = Batches(), Conflator()
    p = b.next([(0, 10.0, 0, 1)])
    c.add(p.batch, p.ticks, p)
    out, conflated = c.take(TABLE.array)
    assert out is p and conflated == 0
    assert not c


def test_held_batches_merge_into_one_message_with_first_seq_and_conflated():
    b, c = Batches(), Conflator()
    first = b.next([(0, 10.0, 0, 1), (1, 20.0, 1, 1)])
    c.add(first.batch, first.ticks, first)
    hold(c, b.next([(0, 10.5, 2, 1)]))
    last = b.next([(0, 10.6, 3, 2), (2, 30.0, 4, 1)])
    hold(c, last)
    out, conflated = c.take(TABLE.array)
    msg = message(out.json)
    assert msg["type"] == "batch"
    assert msg["first_seq"] == first.batch.seq and msg["seq"] == last.batch.seq
    assert msg["ts"] == last.batch.ts
    assert msg["ticks"]["sym"] == ["MSFT", "AAPL", "SPY"]
    assert msg["ticks"]["price"] == [20.0, 10.6, 30.0]
    assert msg["ticks"]["size"] == [100, 400, 100]
    assert conflated == msg["conflated"] == 5 - 3


def test_restricting_drops_unsubscribed_symbols_even_from_a_single_shared_batch():
    b, c = Batches(), Conflator()
    hold(c, b.next([(0, 10.0, 0, 1), (1, 20.0, 1, 1)]))
    c.restrict(lambda t: t.take(t.sym != 0))
    out, conflated = c.take(TABLE.array)
    assert message(out.json)["ticks"]["sym"] == ["MSFT"] and conflated == 0


def test_memory_is_bounded_by_symbols_not_by_how_long_a_client_is_behind():
    b, c = Batches(), Conflator()
    for i in range(10 * MERGE_AFTER):
        hold(c, b.next([(i % 3, 10.0 + i / 100, i, 1)]))
        assert len(c._parts) <= MERGE_AFTER + 1
        assert sum(len(p) for p in c._parts) <= MERGE_AFTER + len(NAMES)
    msg = message(c.take(TABLE.array)[0].json)
    assert msg["conflated"] == 10 * MERGE_AFTER - 3
    assert sum(msg["ticks"]["size"]) == 100 * 10 * MERGE_AFTER


def test_big_batches_merge_at_once_and_no_shared_payload_stays_pinned():
    """A client behind at 50,000 ticks/s holds rows bounded by its symbols, not 16 batches
    of thousands of rows, and drops the first batch's shared bytes once it is not alone."""
    b, c = Batches(), Conflator()
    big = [(i % 3, 10.0 + i / 100, i, 1) for i in range(MERGE_ROWS // 2 + 1)]
    first = b.next(big)
    hold(c, first)
    assert c._first is first
    hold(c, b.next(big))
    assert c._first is None
    assert sum(len(p) for p in c._parts) <= len(NAMES)  # merged: over MERGE_ROWS


# -- the ladder -------------------------------------------------------------------------------


def outbox(**pace) -> Outbox:
    return Outbox(Pace(**pace), Form.NDJSON, TABLE.array, now=0.0)


def test_a_client_that_keeps_up_gets_the_shared_bytes_of_every_batch():
    b, o = Batches(), outbox()
    for i in range(5):
        p = b.next([(0, 10.0 + i, i, 1)])
        data = p.form(Form.NDJSON)
        assert o.offer(i * 0.05, p, data) is data
        assert o.wrote(i * 0.05, len(data), taken=True) is None
    assert o.phase is Phase.LIVE


def test_max_hz_holds_batches_between_frames_and_merges_them():
    b, o = Batches(), outbox(max_hz=2)
    p = b.next([(0, 10.0, 0, 1)])
    assert o.offer(0.0, p, p.form(Form.NDJSON)) is not None
    o.wrote(0.0, 10, taken=True)
    held = [b.next([(0, 10.1, 1, 1)]), b.next([(1, 20.0, 2, 1)]), b.next([(0, 10.2, 3, 1)])]
    for i, p in enumerate(held):
        assert o.offer(0.1 + i * 0.1, p, p.form(Form.NDJSON)) is None
    assert o.wake_at(0.3) == pytest.approx(0.5)
    assert o.due(0.49) is None
    merged = message(o.due(0.5))
    assert merged["first_seq"] == held[0].batch.seq and merged["seq"] == held[-1].batch.seq
    assert merged["ticks"]["price"] == [20.0, 10.2] and merged["conflated"] == 1
    assert o.due(0.5) is None  # nothing more owed
    assert o.conflated == 1


def test_a_paced_batch_arriving_when_the_frame_is_due_goes_out_merged_at_once():
    b, o = Batches(), outbox(max_hz=10)
    p = b.next([(0, 10.0, 0, 1)])
    o.wrote(0.0, len(o.offer(0.0, p, p.form(Form.NDJSON))), taken=True)
    held = b.next([(0, 10.1, 1, 1)])
    assert o.offer(0.05, held, held.form(Form.NDJSON)) is None
    late = b.next([(0, 10.2, 2, 1)])
    out = o.offer(0.2, late, late.form(Form.NDJSON))
    assert out is not None and message(out)["first_seq"] == held.batch.seq


def test_the_bytes_cap_paces_frames_by_size():
    b, o = Batches(), outbox(max_bytes_per_s=1000)
    o.wrote(0.0, 3000, taken=True, paced=True)  # 2000 bytes of debt: two seconds
    q = b.next([(0, 10.5, 1, 1)])
    assert o.offer(1.0, q, q.form(Form.NDJSON)) is None
    assert o.wake_at(1.0) == pytest.approx(2.0)
    assert o.due(2.0) is q.form(Form.NDJSON)


def test_a_full_socket_puts_the_client_behind_where_batches_merge_until_it_drains():
    b, o = Batches(), outbox(slow_client_timeout_s=5)
    p = b.next([(0, 10.0, 0, 1)])
    assert o.wrote(0.0, len(o.offer(0.0, p, p.form(Form.NDJSON))), taken=False) is Phase.BEHIND
    assert o.stuck_since == 0.0
    for i in range(20):
        q = b.next([(i % 3, 11.0 + i, i, 1)])
        assert o.offer(0.05 * i, q, q.form(Form.NDJSON)) is None
    assert o.wake_at(1.0) is None  # a drain, not the clock, moves a client that is behind
    assert o.due(1.0) is None
    assert o.drained(1.5) is Phase.LIVE and o.stuck_since is None
    fresh = message(o.due(1.5))
    assert fresh["seq"] == b.batcher.seq and len(fresh["ticks"]["sym"]) == 3
    assert not o.expired(100.0)


def test_a_client_stuck_past_the_timeout_is_dropped_once():
    b, o = Batches(), outbox(slow_client_timeout_s=2)
    o.wrote(0.0, 100, taken=False)
    assert not o.expired(1.99)
    assert o.expired(2.0)
    assert o.phase is Phase.DROPPED
    assert not o.expired(3.0)
    q = b.next([(0, 10.0, 0, 1)])
    assert o.offer(3.0, q, q.form(Form.NDJSON)) is None


def test_catching_up_then_falling_behind_again_restarts_the_clock():
    o = outbox(slow_client_timeout_s=2)
    o.wrote(0.0, 100, taken=False)
    o.drained(1.5)
    o.wrote(1.6, 100, taken=False)
    assert not o.expired(3.0)
    assert o.expired(3.6)


def test_snapshots_and_replies_do_not_count_against_max_hz():
    b, o = Batches(), outbox(max_hz=1)
    o.wrote(0.0, 500, taken=True, paced=False)  # the snapshot
    p = b.next([(0, 10.0, 0, 1)])
    assert o.offer(0.01, p, p.form(Form.NDJSON)) is not None


def test_the_server_cap_bounds_a_clients_max_hz():
    from dashboard.config import Config

    assert Config(max_hz=5).pace(10).max_hz == 5
    assert Config(max_hz=5).pace(2).max_hz == 2
    assert Config(max_hz=0).pace(None).max_hz is None
    assert Config(max_hz=5).pace(None).max_hz == 5
    assert Config(max_bytes_per_s=0).pace(None).max_bytes_per_s is None

