"""Fan-out without a server: one encode per (selection, form), the same bytes for everyone."""

from __future__ import annotations

import brotli
import numpy as np
import orjson

from dashboard.core.batcher import Batcher
from dashboard.core.hub import Hub
from dashboard.core.payload import Form
from dashboard.core.symbols import SymbolTable
from dashboard.wire import codecs
from tests.ticks import ticks

T0 = 1_700_000_000_000.0
NAMES = ["AAPL", "MSFT", "SPY"]


def payload(frame: bytes) -> bytes:
    """A server frame's payload (unmasked, 7-, 16- or 64-bit length)."""
    n = frame[1] & 0x7F
    return frame[2 + {126: 2, 127: 8}.get(n, 0):]


class Recorder:
    """A subscriber that keeps what it was handed."""

    def __init__(self) -> None:
        self.frames: list[bytes] = []

    def deliver(self, data: bytes, after_pending: bool = False) -> int:
        self.frames.append(data)
        return len(data)

    def offer(self, payload, data: bytes) -> int:
        return self.deliver(data)

    def restrict(self, selection) -> None:
        pass


def make_hub(wait_ahead_ms: float = 0.0) -> tuple[Hub, Batcher]:
    table = SymbolTable(NAMES)
    batcher = Batcher(NAMES, history_s=10, first_seq=1)
    return Hub(batcher, table, wait_ahead_ms=wait_ahead_ms), batcher


def publish(hub: Hub, batcher: Batcher, rows, **kwargs) -> None:
    batcher.add(ticks(rows))
    batch = batcher.close(T0 + batcher.seq)
    assert batch is not None
    hub.publish(batch, **kwargs)


def test_clients_sharing_a_selection_and_form_get_the_very_same_bytes():
    hub, batcher = make_hub()
    aapl = np.array([0], np.int32)
    groups = {
        ("all", Form.WS_JSON): [Recorder() for _ in range(50)],
        ("all", Form.WS_BR): [Recorder() for _ in range(50)],
        ("aapl", Form.WS_JSON): [Recorder() for _ in range(50)],
    }
    for (which, form), subs in groups.items():
        for sub in subs:
            hub.join(sub, form, aapl if which == "aapl" else None, since=None, now_ms=T0)
    publish(hub, batcher, [(0, 10.0, 0, 1), (1, 20.0, 1, 1)])
    for subs in groups.values():
        first = subs[0].frames[-1]
        assert all(s.frames[-1] is first for s in subs), "one encode, shared"
    all_br = groups[("all", Form.WS_BR)][0].frames[-1]
    assert orjson.loads(brotli.decompress(payload(all_br)))["ticks"]["sym"] == ["AAPL", "MSFT"]
    aapl_json = groups[("aapl", Form.WS_JSON)][0].frames[-1]
    assert orjson.loads(payload(aapl_json))["ticks"]["sym"] == ["AAPL"]
    # The same selection listed in another order is the same group.
    late = Recorder()
    hub.join(late, Form.WS_JSON, np.array([0], np.int32), since=None, now_ms=T0)
    publish(hub, batcher, [(0, 10.5, 2, 1)])
    assert late.frames[-1] is groups[("aapl", Form.WS_JSON)][0].frames[-1]


def test_a_snapshot_comes_first_and_a_reconnect_storm_shares_it():
    hub, batcher = make_hub()
    publish(hub, batcher, [(0, 10.0, 0, 1)])
    subs = [Recorder() for _ in range(10)]
    for s in subs:
        hub.join(s, Form.WS_JSON, None, since=None, now_ms=T0)
    assert all(s.frames[0] is subs[0].frames[0] for s in subs)
    snapshot = orjson.loads(payload(subs[0].frames[0]))
    assert snapshot["type"] == "snapshot" and snapshot["seq"] == batcher.seq


def test_join_with_since_replays_then_goes_live_and_leave_stops_delivery():
    hub, batcher = make_hub()
    for i in range(5):
        publish(hub, batcher, [(i % 3, 10.0 + i, i, 1)])
    sub = Recorder()
    hub.join(sub, Form.NDJSON, None, since=batcher.seq - 2, now_ms=T0)
    publish(hub, batcher, [(0, 11.0, 9, 1)])
    seqs = [orjson.loads(f)["seq"] for f in sub.frames]
    assert seqs == [batcher.seq - 2, batcher.seq - 1, batcher.seq]
    hub.leave(sub)
    publish(hub, batcher, [(0, 12.0, 10, 1)])
    assert len(sub.frames) == 3
    assert len(hub) == 0


def test_clients_resuming_from_far_back_share_one_catch_up_message():
    from dashboard.core.hub import MAX_EXACT_REPLAY

    hub, batcher = make_hub()
    for i in range(MAX_EXACT_REPLAY + 20):
        publish(hub, batcher, [(i % 3, 10.0 + i / 100, i, 1)])
    since = batcher.seq - MAX_EXACT_REPLAY - 10
    storm = [Recorder() for _ in range(5)]
    for sub in storm:
        hub.join(sub, Form.WS_JSON, None, since=since, now_ms=T0)
    assert all(len(s.frames) == 1 and s.frames[0] is storm[0].frames[0] for s in storm)
    msg = orjson.loads(payload(storm[0].frames[0]))
    assert msg["first_seq"] == since + 1 and msg["seq"] == batcher.seq


def messages(sub: Recorder) -> list[dict]:
    return [orjson.loads(f) for f in sub.frames]


def test_a_client_ahead_of_an_edge_waits_for_its_since_then_follows_on_without_a_reset():
    hub, batcher = make_hub(wait_ahead_ms=5000)
    publish(hub, batcher, [(0, 10.0, 0, 1)])
    ahead, behind = Recorder(), Recorder()
    hub.join(ahead, Form.NDJSON, None, since=batcher.seq + 2, now_ms=T0)
    hub.join(behind, Form.NDJSON, None, since=batcher.seq + 1, now_ms=T0)
    publish(hub, batcher, [(1, 11.0, 1, 1)])
    assert ahead.frames == [] and behind.frames == []  # behind's since is this very batch
    publish(hub, batcher, [(2, 12.0, 2, 1)])
    publish(hub, batcher, [(0, 13.0, 3, 1)])
    assert [m["seq"] for m in messages(behind)] == [batcher.seq - 1, batcher.seq]
    assert [m["seq"] for m in messages(ahead)] == [batcher.seq]
    assert all(m["type"] == "batch" for m in messages(ahead) + messages(behind))
    hub.expire_waiting(T0 + 10_000)  # no longer waiting: nothing more comes of it
    assert len(ahead.frames) == 1


def test_a_client_whose_since_never_comes_gets_a_reset_snapshot_after_the_wait():
    hub, batcher = make_hub(wait_ahead_ms=5000)
    publish(hub, batcher, [(0, 10.0, 0, 1)])
    sub, gone = Recorder(), Recorder()
    hub.join(sub, Form.NDJSON, None, since=batcher.seq + 1000, now_ms=T0)
    hub.join(gone, Form.NDJSON, None, since=batcher.seq + 1000, now_ms=T0)
    hub.leave(gone)
    hub.expire_waiting(T0 + 4999)
    assert sub.frames == []
    hub.expire_waiting(T0 + 5000)
    (snapshot,) = messages(sub)
    assert snapshot["type"] == "snapshot" and snapshot["reset"] and snapshot["seq"] == batcher.seq
    publish(hub, batcher, [(1, 11.0, 1, 1)])
    assert messages(sub)[-1]["seq"] == batcher.seq
    assert gone.frames == [] and len(hub) == 1


def test_a_waiting_client_that_changes_its_symbols_starts_on_a_reset_snapshot():
    hub, batcher = make_hub(wait_ahead_ms=5000)
    publish(hub, batcher, [(0, 10.0, 0, 1), (1, 20.0, 0, 1)])
    sub = Recorder()
    hub.join(sub, Form.NDJSON, None, since=batcher.seq + 5, now_ms=T0)
    hub.resubscribe(sub, np.array([1], np.int32), now_ms=T0)
    (snapshot,) = messages(sub)
    assert snapshot["reset"] and snapshot["quotes"]["sym"] == ["MSFT"]
    publish(hub, batcher, [(1, 11.0, 1, 1)])
    assert messages(sub)[-1]["ticks"]["sym"] == ["MSFT"]


def test_a_single_server_resets_a_client_from_the_future_at_once():
    hub, batcher = make_hub()
    publish(hub, batcher, [(0, 10.0, 0, 1)])
    sub = Recorder()
    hub.join(sub, Form.NDJSON, None, since=batcher.seq + 1, now_ms=T0)
    assert messages(sub)[0]["reset"] is True


def test_a_big_batch_is_compressed_at_the_best_quality_and_a_small_one_at_the_default():
    hub, batcher = make_hub()
    everything, spy = Recorder(), Recorder()
    hub.join(everything, Form.WS_BR, None, None, T0)
    hub.join(spy, Form.WS_BR, np.array([2], np.int32), None, T0)
    rows = [(2 if i % 40 == 0 else i % 2, 100.0 + i / 100, i / 10, 1.0) for i in range(200)]
    publish(hub, batcher, rows)
    for sub, quality in ((everything, codecs.BROTLI_BEST_QUALITY), (spy, codecs.BROTLI_QUALITY)):
        data = brotli.decompress(payload(sub.frames[-1]))
        assert (len(data) >= codecs.BEST_MIN_BYTES) == (sub is everything)
        assert payload(sub.frames[-1]) == codecs.brotli_compress(data, quality)


def test_a_batch_given_no_cpu_for_the_best_compression_gets_the_default_quality():
    hub, batcher = make_hub()
    sub = Recorder()
    hub.join(sub, Form.WS_BR, None, None, T0)
    rows = [(i % 3, 100.0 + i / 100, i / 10, 1.0) for i in range(200)]
    publish(hub, batcher, rows, best_s=0.0)
    data = brotli.decompress(payload(sub.frames[-1]))
    assert len(data) >= codecs.BEST_MIN_BYTES
    assert payload(sub.frames[-1]) == codecs.brotli_compress(data, codecs.BROTLI_QUALITY)


class Ordered(Recorder):
    """A subscriber that notes its place in each fan-out."""

    def __init__(self, served: list[Recorder]) -> None:
        super().__init__()
        self.served = served

    def offer(self, payload, data: bytes) -> int:
        self.served.append(self)
        return super().offer(payload, data)


def test_every_client_is_served_once_a_batch_and_not_always_at_the_same_place():
    hub, batcher = make_hub()
    served: list[Recorder] = []
    subs = [Ordered(served) for _ in range(10)]
    for sub in subs:
        hub.join(sub, Form.WS_JSON, None, None, T0)
    firsts, lasts = set(), set()
    for i in range(20):
        served.clear()
        publish(hub, batcher, [(0, 100.0 + i, 1.0, 1.0)])
        assert sorted(map(id, served)) == sorted(map(id, subs))  # each exactly once
        firsts.add(served[0])
        lasts.add(served[-1])
    assert len(firsts) >= 8 and len(lasts) >= 8
