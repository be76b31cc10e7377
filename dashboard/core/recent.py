"""Batch payloads kept after their fan-out, so that a client resuming after a blip replays
bytes already encoded instead of costing every other client a new encode.

What is kept follows the history, not a fixed count: nothing older than the batcher still
holds (a resume from further back gets a snapshot anyway), and at most ``budget_bytes`` of
encoded forms in all — a resume past what that holds is encoded again from the batcher's
ticks, which the history window bounds.
"""

from __future__ import annotations

from collections import OrderedDict

from dashboard.core.batcher import Seq
from dashboard.core.payload import Payload

Key = tuple[Seq, frozenset[int] | None]

#: 8 MiB of encoded forms: at the default 2,000 ticks/s about a minute of the full feed's
#: WebSocket JSON and br frames, at 10,000 ticks/s about 12 s: a blip's worth of resumes. The
#: cache costs about twice that in RSS (measured: the heap it leaves behind).
BUDGET_BYTES = 8 * 1024 * 1024


class RecentPayloads:
    def __init__(self, budget_bytes: int = BUDGET_BYTES) -> None:
        self.budget_bytes = budget_bytes
        self.nbytes = 0
        self._payloads: OrderedDict[Key, Payload] = OrderedDict()
        self._sizes: dict[Key, int] = {}
        #: Put or replayed since the last settle: their forms are built meanwhile.
        self._unsettled: dict[Key, None] = {}

    def __len__(self) -> int:
        return len(self._payloads)

    def get(self, key: Key) -> Payload | None:
        """A payload a resume replays: the forms it builds count, and are compacted again,
        at the next settle."""
        payload = self._payloads.get(key)
        if payload is not None:
            self._unsettled[key] = None
        return payload

    def put(self, key: Key, payload: Payload) -> None:
        self._payloads[key] = payload
        self._sizes[key] = 0
        self._unsettled[key] = None

    def settle(self, oldest_seq: Seq) -> None:
        """After a fan-out: count what the new payloads hold now, then drop what is older
        than ``oldest_seq`` or over the budget, oldest first."""
        for key in self._unsettled:
            payload = self._payloads.get(key)
            if payload is not None:
                payload.compact()
                size = payload.nbytes
                self.nbytes += size - self._sizes[key]
                self._sizes[key] = size
        self._unsettled.clear()
        while self._payloads:
            key = next(iter(self._payloads))
            if key[0] >= oldest_seq and self.nbytes <= self.budget_bytes:
                break
            del self._payloads[key]
            self.nbytes -= self._sizes.pop(key)

    def clear(self) -> None:
        self._payloads.clear()
        self._sizes.clear()
        self._unsettled.clear()
        self.nbytes = 0
