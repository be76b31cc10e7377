"""What the hub keeps for resumes follows the history window and a byte budget."""

from __future__ import annotations

import numpy as np
import orjson

from dashboard.core.batcher import Batcher
from dashboard.core.hub import Hub
from dashboard.core.payload import Form
from dashboard.core.recent import RecentPayloads
from dashboard.core.symbols import SymbolTable
from dashboard.wire import wsframe
from tests.ticks import ticks

NAMES = [f"S{i}" for i in range(50)]
T0 = 1_700_000_000_000.0


class Recorder:
    def deliver(self, data: bytes, after_pending: bool = False) -> None:
        pass

    def offer(self, payload, data: bytes) -> None:
        pass

    def restrict(self, selection) -> None:
        pass


def run(history_s: float, budget_bytes: int, batches: int) -> tuple[Hub, Batcher]:
    table = SymbolTable(NAMES)
    batcher = Batcher(NAMES, history_s=history_s, first_seq=1)
    hub = Hub(batcher, table)
    hub._recent = RecentPayloads(budget_bytes)
    for form in (Form.WS_BR, Form.SSE_ZSTD, Form.WS_JSON):
        hub.join(Recorder(), form, None, since=None, now_ms=T0)
    rng = np.random.default_rng(1)
    for i in range(batches):
        batcher.add(ticks([(int(s), 10.0 + i, i, 1) for s in rng.integers(0, 50, 200)]))
        batch = batcher.close(T0 + 50 * i)
        assert batch is not None
        hub.publish(batch)
    return hub, batcher


def test_nothing_older_than_the_history_is_kept():
    hub, batcher = run(history_s=2.0, budget_bytes=1 << 30, batches=400)
    assert len(batcher.history) <= 41
    assert len(hub._recent) == len(batcher.history)


def test_a_long_history_is_kept_only_up_to_the_byte_budget():
    hub, batcher = run(history_s=60.0, budget_bytes=200_000, batches=400)
    assert len(batcher.history) == 400
    assert 0 < hub._recent.nbytes <= 200_000
    assert len(hub._recent) < 100
    # A resume past what the budget held is encoded again from the batcher's ticks.
    sub = Recorder()
    got: list[bytes] = []
    sub.offer = lambda payload, data: got.append(data)  # type: ignore[method-assign]
    hub.join(sub, Form.WS_JSON, None, since=batcher.seq - 150, now_ms=T0)
    assert len(got) == 150


def kept_as_built(hub: Hub) -> bool:
    """Every kept payload holds its JSON and compressed forms, not the framed JSON, and the
    cache counts exactly that."""
    payloads = list(hub._recent._payloads.values())
    held = [len(p.json) + len(p.form(Form.WS_BR)) + len(p.form(Form.SSE_ZSTD)) for p in payloads]
    return bool(payloads) and [p.nbytes for p in payloads] == held and (
        hub._recent.nbytes == sum(held))


def test_what_is_kept_is_the_json_and_its_compressed_forms_not_its_frames():
    hub, batcher = run(history_s=2.0, budget_bytes=1 << 30, batches=20)
    assert kept_as_built(hub)
    # A resume frames the kept JSON again, as the live fan-out did.
    resumed = Recorder()
    got: list[bytes] = []
    resumed.offer = lambda payload, data: got.append(data)  # type: ignore[method-assign]
    hub.join(resumed, Form.WS_JSON, None, since=batcher.seq - 10, now_ms=T0)
    assert not kept_as_built(hub)  # the frames are held, for other resumes, until then
    seqs = list(range(batcher.seq - 9, batcher.seq + 1))
    assert got == [wsframe.frame(hub._recent.get((seq, None)).json, wsframe.OP_TEXT)
                   for seq in seqs]
    assert [orjson.loads(frame[4:])["seq"] for frame in got] == seqs  # 16-bit lengths
    # ... and the frames it built go again after the next batch.
    batcher.add(ticks([(1, 11.0, 1, 1)]))
    batch = batcher.close(T0 + 50 * 20)
    assert batch is not None
    hub.publish(batch)
    assert kept_as_built(hub)
