"""The broker's wire format and the batcher's edge-side intake, with no I/O."""

import numpy as np
import pytest

from dashboard.core.batcher import Batch, Batcher
from dashboard.errors import BrokerDataError
from dashboard.scaleout.codec import (
    FeedInfo,
    decode_batch,
    encode_batch,
    encode_state,
    entry_id,
    restore_state,
    state_arrays,
)
from tests.ticks import ticks

T0 = 1_700_000_000_000.0
NAMES = ["AAPL", "MSFT", "SPY"]
RUN = "run-1"


def state_of(batcher: Batcher, run: str = RUN) -> bytes:
    return encode_state(state_arrays(batcher, run))


def fed(n_batches: int, first_seq: int = 100) -> tuple[Batcher, list[Batch]]:
    """A feed-side batcher after ``n_batches`` batches of a few ticks each."""
    b = Batcher(NAMES, 60.0, first_seq=first_seq)
    made = []
    for i in range(n_batches):
        b.add(ticks([(i % 3, 10.0 + i, 1000 * i + 0.3, 5), ((i + 1) % 3, 20.0 - i,
                                                            1000 * i + 0.7, 2)]))
        batch = b.close(T0 + 1000 * i + 50)
        assert batch is not None
        made.append(batch)
    return b, made


def test_a_batch_survives_the_stream_entry_bit_for_bit():
    _, (batch,) = fed(1)
    fields = {k.encode(): v for k, v in encode_batch(batch).items()}
    back = decode_batch(entry_id(batch.seq).encode(), fields)
    assert back.seq == batch.seq and back.ts == batch.ts
    for column in ("sym", "price", "size", "bid", "ask", "ts"):
        assert np.array_equal(getattr(back.ticks, column), getattr(batch.ticks, column))
        assert getattr(back.ticks, column).dtype == getattr(batch.ticks, column).dtype


def test_a_malformed_entry_is_a_clear_error():
    _, (batch,) = fed(1)
    fields = {k.encode(): v for k, v in encode_batch(batch).items()}
    with pytest.raises(BrokerDataError, match="malformed"):
        decode_batch(b"101-0", {k: v for k, v in fields.items() if k != b"price"})
    with pytest.raises(BrokerDataError, match="different lengths"):
        decode_batch(b"101-0", {**fields, b"bid": b"\0" * 8})
    with pytest.raises(BrokerDataError, match="<seq>-0"):
        decode_batch(b"x-0", fields)


def test_an_edge_rebuilds_quotes_bars_and_history_from_state_plus_stream():
    feed, made = fed(10)
    # The state was saved after batch 6; the stream holds batches 3..9.
    saved_at, _ = fed(7)
    blob = state_of(saved_at)
    edge = Batcher(NAMES, 60.0, first_seq=1)
    state_seq = restore_state(edge, blob, RUN)
    assert state_seq == made[6].seq
    edge.restart(state_seq)
    for batch in made[3:]:
        if batch.seq <= state_seq:
            edge.remember(batch)
        else:
            assert edge.apply(batch)
    assert edge.seq == feed.seq
    for column in ("price", "open", "high", "low", "volume"):
        assert np.array_equal(getattr(edge.quotes, column), getattr(feed.quotes, column))
    for interval in ("1s", "1m"):
        for sym in range(3):
            got, want = edge.bars[interval].bars(sym, 100), feed.bars[interval].bars(sym, 100)
            assert len(want.t) > 0
            for column in ("t", "o", "h", "l", "c", "v"):
                assert np.array_equal(getattr(got, column), getattr(want, column))
    assert [b.seq for b in edge.resume(made[3].seq).replay or []] == [b.seq for b in made[4:]]


def test_state_for_other_symbols_is_refused_before_anything_changes():
    feed, _ = fed(3)
    other = Batcher(["AAPL"], 60.0, first_seq=1)
    with pytest.raises(BrokerDataError, match="does not fit"):
        restore_state(other, state_of(feed), RUN)
    assert not other.quotes.seen.any()
    with pytest.raises(BrokerDataError):
        restore_state(other, b"not an npz", RUN)


def test_another_runs_state_is_left_alone():
    feed, _ = fed(3)
    edge = Batcher(NAMES, 60.0, first_seq=1)
    assert restore_state(edge, state_of(feed, "run-0"), RUN) is None
    assert not edge.quotes.seen.any()


def test_bars_travel_as_their_filled_slots_only():
    feed, _ = fed(3)
    series = feed.bars["1s"]
    assert len(series.arrays()["slot"]) == 6  # 3 batches a second apart, 2 symbols each
    assert len(state_of(feed)) < 20_000  # the full 1 s ring alone is 3 x 900 x 6 x 8 bytes
    edge = Batcher(NAMES, 60.0, first_seq=1)
    edge.bars["1s"].load(series.arrays())
    for sym in range(3):
        got, want = edge.bars["1s"].bars(sym, 900), series.bars(sym, 900)
        assert np.array_equal(got.t, want.t) and np.array_equal(got.c, want.c)
    with pytest.raises(ValueError, match="slots"):
        edge.bars["1s"].load({**series.arrays(), "slot": np.array([10**9] * 6)})


def test_a_seq_that_does_not_follow_on_drops_the_history_it_cannot_bridge():
    _, made = fed(6)
    edge = Batcher(NAMES, 60.0, first_seq=1)
    for batch in made[:3]:
        edge.apply(batch)
    assert not edge.apply(made[5])  # 3 and 4 never arrived
    assert edge.seq == made[5].seq
    assert edge.resume(made[1].seq).replay is None  # a reset, never a replay with a hole
    assert edge.resume(made[5].seq).replay == []


def test_feed_info_round_trips_and_rejects_garbage():
    info = FeedInfo("sim", ("AAPL", "MSFT"), 50.0, 60.0, RUN)
    assert FeedInfo.decode(info.encode()) == info
    with pytest.raises(BrokerDataError):
        FeedInfo.decode(b'{"feed":"sim"}')
