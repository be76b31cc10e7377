"""Fan-out: each batch is filtered and encoded once per (selection, wire form), and the same
bytes are handed to every client in that group.

Broadcast is synchronous — no await per client. A subscriber's :meth:`Subscriber.deliver`
only hands bytes to its socket (or, later, merges them into what it still owes); a client
that failed is skipped and cleans itself up. The hub counts nothing: what reaches a socket
is counted where it is written (the transports' outlet), whoever asked for it.

A group's clients are handed a batch by one call (``offer_all``: the transports' one writes
every free socket in one tight loop), and in an order that turns with each batch: a fan-out
to thousands of sockets takes milliseconds, and the same clients must not always wait for
all the others.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Protocol, TypeVar

import numpy as np
import numpy.typing as npt

from dashboard.core.batcher import Batch, Batcher, Seq
from dashboard.core.conflation import Conflator, latest_per_symbol
from dashboard.core.messages import batch_message, snapshot_message
from dashboard.core.payload import Form, Payload
from dashboard.core.recent import RecentPayloads
from dashboard.core.symbols import Selection, SymbolTable
from dashboard.wire.codecs import BEST_SECONDS_PER_BATCH, CompressionBudget

#: A resume of more batches than this gets one merged catch-up message instead of a replay:
#: replaying minutes of batches one by one would cost the server (and every other client)
#: far more than the client gains from seeing each of them.
MAX_EXACT_REPLAY = 200
MAX_CACHED_SNAPSHOTS = 64


class Subscriber(Protocol):
    def offer(self, payload: Payload, data: bytes) -> None:
        """A batch (``data``: its shared bytes in the subscriber's form), subject to the
        client's flow control: written now, or held and conflated."""
        ...

    def deliver(self, data: bytes, after_pending: bool = False) -> None:
        """A snapshot or reply, written now. A snapshot comes ``after_pending``: batches the
        client is still owed are written before it."""
        ...

    def restrict(self, selection: Selection) -> None:
        """The subscription changed: drop what is owed for symbols no longer in it."""
        ...


#: Hands one batch to each of a group's subscribers, in order (typed Any: it is given the
#: subscribers as they were joined, which its maker knows the type of).
OfferAll = Callable[[Sequence[Any], Payload, bytes], None]


def offer_each(subs: Sequence[Subscriber], payload: Payload, data: bytes) -> None:
    for sub in subs:
        sub.offer(payload, data)


#: 2**64 over the golden ratio: the place a fan-out starts at moves by this fraction of the
#: whole from one batch to the next, so that no client's turn repeats soon, whatever the
#: number of clients (Fibonacci hashing, in integers: a seq is in the trillions).
_TURN = 0x9E3779B97F4A7C15
T = TypeVar("T")


def turned(items: Sequence[T], seq: Seq) -> list[T]:
    """``items`` in the fan-out order of batch ``seq``: started at a place that moves with
    each batch, so every client (and every group) is served early as often as late."""
    start = (seq * _TURN % 2**64 * len(items)) >> 64
    return [*items[start:], *items[:start]]


class Hub:
    def __init__(
        self, batcher: Batcher, table: SymbolTable, wait_ahead_ms: float = 0.0,
        offer_all: OfferAll = offer_each,
    ) -> None:
        """``wait_ahead_ms``: how long a client resuming from a ``since`` this hub has not
        reached yet waits for it (an edge a little behind the one the client left) before
        it gets a reset snapshot. 0: at once (a single server, the source of every seq).
        ``offer_all``: how a group's clients are handed a batch."""
        self.batcher = batcher
        self._offer_all = offer_all
        self.table = table
        self.wait_ahead_ms = wait_ahead_ms
        #: Joined clients waiting for their ``since``: (since, give up at ms).
        self._ahead: dict[Subscriber, tuple[Seq, float]] = {}
        self._selections: dict[frozenset[int] | None, tuple[Selection, int]] = {}
        self._groups: dict[tuple[Selection, Form], set[Subscriber]] = {}
        self._member: dict[Subscriber, tuple[Selection, Form]] = {}
        self._snapshots: dict[tuple[frozenset[int] | None, bool], Payload] = {}
        self._catch_ups: dict[tuple[Seq, frozenset[int] | None], Payload] = {}
        #: Each batch's share of the best compression (see codecs.CompressionBudget).
        self._budget = CompressionBudget()
        #: Recent batch payloads by (seq, selection): live fan-out fills it, so clients
        #: resuming after a blip replay bytes that were already encoded.
        self._recent = RecentPayloads()

    def __len__(self) -> int:
        return len(self._member)

    @property
    def best_spent_s(self) -> float:
        """What the last batch's best compression took, about."""
        return self._budget.spent_s

    @property
    def seq(self) -> Seq:
        return self.batcher.seq

    # -- membership -------------------------------------------------------------------------

    def join(
        self, sub: Subscriber, form: Form, indices: npt.NDArray[np.int32] | None,
        since: Seq | None, now_ms: float,
    ) -> None:
        """Subscribe ``sub`` and deliver what must come first: a snapshot, or the batches
        after ``since`` while they are held (a reset snapshot when they are not)."""
        selection = self._acquire(indices)
        if since is not None and since > self.batcher.seq and self.wait_ahead_ms > 0:
            self._member[sub] = (selection, form)  # in no group: nothing comes until then
            self._ahead[sub] = (since, now_ms + self.wait_ahead_ms)
            return
        self._start(sub, selection, form, since, now_ms)

    def _start(
        self, sub: Subscriber, selection: Selection, form: Form, since: Seq | None,
        now_ms: float,
    ) -> None:
        if since is None:
            sub.deliver(self._snapshot(selection, reset=False, now_ms=now_ms).form(form))
        else:
            replay = self.batcher.resume(since).replay
            if replay is None:
                sub.deliver(self._snapshot(selection, reset=True, now_ms=now_ms).form(form))
            elif len(replay) > MAX_EXACT_REPLAY:
                sub.deliver(self._catch_up(since, replay, selection).form(form))
            else:
                for batch in replay:
                    payload = self._batch_payload(batch, selection)
                    sub.offer(payload, payload.form(form))
        self._add(sub, selection, form)

    def resubscribe(
        self, sub: Subscriber, indices: npt.NDArray[np.int32] | None, now_ms: float
    ) -> None:
        """Change what ``sub`` receives; symbols new to it get a snapshot first."""
        old, form = self._member[sub]
        selection = self._acquire(indices)
        if sub in self._ahead:  # still waiting for its since: start it on a reset instead
            since, _ = self._ahead[sub]
            self._remove(sub)
            self._start(sub, selection, form, since, now_ms)
            return
        added = selection.indices[[i not in old for i in selection.indices.tolist()]]
        self._remove(sub)
        sub.restrict(selection)
        if len(added):
            snapshot = Payload(snapshot_message(  # not cached: rarely shared
                self.batcher.quotes, added, self.table.array,
                seq=self.batcher.seq, now_ms=now_ms, reset=False,
            ))
            sub.deliver(snapshot.form(form), after_pending=True)
        self._add(sub, selection, form)

    def selection_of(self, sub: Subscriber) -> Selection:
        return self._member[sub][0]

    def leave(self, sub: Subscriber) -> None:
        if sub in self._member:
            self._remove(sub)

    def _add(self, sub: Subscriber, selection: Selection, form: Form) -> None:
        self._member[sub] = (selection, form)
        self._groups.setdefault((selection, form), set()).add(sub)

    def _remove(self, sub: Subscriber) -> None:
        selection, form = self._member.pop(sub)
        if self._ahead.pop(sub, None) is None:
            group = self._groups[(selection, form)]
            group.discard(sub)
            if not group:
                del self._groups[(selection, form)]
        self._release(selection)

    def _start_waiting(self, ready: Callable[[Seq, float], bool], now_ms: float) -> None:
        """Start the waiting clients whose ``(since, give-up time)`` is ``ready``."""
        for sub, (since, give_up) in list(self._ahead.items()):
            if ready(since, give_up):
                del self._ahead[sub]
                selection, form = self._member[sub]
                self._start(sub, selection, form, since, now_ms)

    def expire_waiting(self, now_ms: float) -> None:
        """Clients that waited too long for their ``since`` get a reset snapshot."""
        if self._ahead:
            self._start_waiting(lambda _, give_up: give_up <= now_ms, now_ms)

    def _acquire(self, indices: npt.NDArray[np.int32] | None) -> Selection:
        key = None if indices is None or len(indices) == len(self.table) else frozenset(
            indices.tolist()
        )
        entry = self._selections.get(key)
        selection = entry[0] if entry else Selection(
            len(self.table), None if key is None else indices
        )
        self._selections[key] = (selection, (entry[1] if entry else 0) + 1)
        return selection

    def _release(self, selection: Selection) -> None:
        held, count = self._selections[selection.key]
        if count > 1:
            self._selections[selection.key] = (held, count - 1)
        else:
            del self._selections[selection.key]

    # -- messages ---------------------------------------------------------------------------

    def _snapshot(self, selection: Selection, reset: bool, now_ms: float) -> Payload:
        """Cached per selection until the next batch: a reconnect storm costs one encode."""
        key = (selection.key, reset)
        payload = self._snapshots.get(key)
        if payload is None:
            if len(self._snapshots) >= MAX_CACHED_SNAPSHOTS:
                self._snapshots.clear()
            payload = Payload(snapshot_message(
                self.batcher.quotes, selection.indices, self.table.array,
                seq=self.batcher.seq, now_ms=now_ms, reset=reset,
            ))
            self._snapshots[key] = payload
        return payload

    def _catch_up(self, since: Seq, replay: list[Batch], selection: Selection) -> Payload:
        """One merged message standing for ``replay``, like any slow client's. Cached until
        the next batch: clients reconnecting after a blip mostly resume from the same seq,
        and merging minutes of batches for each of them would stall everyone else."""
        key = (since, selection.key)
        payload = self._catch_ups.get(key)
        if payload is None:
            if len(self._catch_ups) >= MAX_CACHED_SNAPSHOTS:
                self._catch_ups.clear()
            merged = Conflator()
            for batch in replay:
                merged.add(batch, selection.select(batch.ticks))
            payload = self._catch_ups[key] = merged.take(self.table.array)[0]
        return payload

    def _batch_payload(self, batch: Batch, selection: Selection, conflated: int = 0) -> Payload:
        """``conflated``: the batch was merged to the latest tick per symbol, this many
        ticks fewer; its message says so, as a merged one does (``first_seq`` its own)."""
        key = (batch.seq, selection.key)
        payload = self._recent.get(key)
        if payload is None:
            ticks = selection.select(batch.ticks)
            payload = Payload(batch_message(
                batch, ticks, self.table.array, first_seq=batch.seq if conflated else None,
                conflated=conflated,
            ), batch, ticks)
            self._recent.put(key, payload)
        return payload

    def snapshot(self, indices: npt.NDArray[np.int32] | None, now_ms: float) -> Payload:
        """A snapshot for an HTTP request (not cached: nothing shares it)."""
        selection = Selection(len(self.table), indices)
        return Payload(snapshot_message(
            self.batcher.quotes, selection.indices, self.table.array,
            seq=self.batcher.seq, now_ms=now_ms, reset=False,
        ))

    # -- fan-out ----------------------------------------------------------------------------

    def reset(self, now_ms: float) -> None:
        """The batches' sequence broke (a broker lost entries, the feed restarted): every
        client gets a reset snapshot, after what it is still owed, before the next batch."""
        self._snapshots.clear()
        self._catch_ups.clear()
        self._recent.clear()
        for (selection, form), group in list(self._groups.items()):
            data = self._snapshot(selection, reset=True, now_ms=now_ms).form(form)
            for sub in tuple(group):
                sub.deliver(data, after_pending=True)
        self._start_waiting(lambda _, __: True, now_ms)

    def publish(
        self, batch: Batch, conflate: bool = False, best_s: float = BEST_SECONDS_PER_BATCH
    ) -> int:
        """Fan ``batch`` out; with ``conflate`` (an overloaded server, see
        :mod:`dashboard.core.overload`), merged to the latest tick per symbol first. Its
        encoding may spend ``best_s`` of CPU on the best compression. Returns how many
        ticks the merge took away."""
        self._snapshots.clear()
        self._catch_ups.clear()
        self._budget.reset(best_s)
        conflated = 0
        if conflate:
            merged = latest_per_symbol(batch.ticks)
            conflated = len(batch.ticks) - len(merged)
            batch = Batch(batch.seq, batch.ts, merged)
        payloads: dict[Selection, Payload] = {}
        for (selection, form), group in turned(tuple(self._groups.items()), batch.seq):
            payload = payloads.get(selection)
            if payload is None:
                payload = payloads[selection] = self._batch_payload(batch, selection, conflated)
            data = payload.form(form, self._budget)
            self._offer_all(turned(tuple(group), batch.seq), payload, data)
        if self._ahead:  # after the fan-out: their replay includes this batch
            self._start_waiting(lambda since, _: since <= batch.seq, batch.ts)
        self._recent.settle(self.batcher.oldest_seq)
        return conflated
