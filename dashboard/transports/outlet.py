"""The I/O side of flow control, shared by every streaming transport.

A transport implements the abstract hooks: ``_write_bytes`` (hand bytes to the socket: True
when the kernel took them all at once, else a future that resolves once it has),
``_drop_slow`` (close and abort a stuck client) and ``peer`` (for the logs). This mixin
feeds the pure :class:`~dashboard.core.flow.Outbox` with what happens — writes taken or
not, drains, timers — and writes what it says, counting and logging each step of the ladder
once per connection. Every write to a client passes here, so this is where frames and bytes
are counted, for every transport.

:func:`offer_all` is the fan-out's hot path: a batch goes straight to the socket of every
free client whose transport writes the hub's bytes as they are, in one loop with no call of
ours per client; a client is touched only when the kernel does not take the whole write.
"""

from __future__ import annotations

import abc
import asyncio
import logging
from asyncio import Future
from collections.abc import Sequence

from dashboard.core.flow import Outbox, Pace, Phase
from dashboard.core.payload import Form, Payload
from dashboard.core.symbols import Selection
from dashboard.state import ServerState
from dashboard.transports.socket_writer import SocketWriter

log = logging.getLogger(__name__)


class Outlet(abc.ABC):
    state: ServerState
    transport: str
    outbox: Outbox
    _wake: asyncio.TimerHandle | None = None
    _stuck_timer: asyncio.TimerHandle | None = None
    _fell_behind = False
    #: The outbox said is_free() after its last change: batches skip it entirely.
    _free = False
    #: While free, the writer batches go straight to (a transport writing the hub's bytes
    #: as they are, see :meth:`_direct`); None otherwise.
    _fast: SocketWriter | None = None
    _conflated_counted = 0
    _latest: Future[None] | None = None
    #: Bytes handed to the transport since the kernel last took everything: an upper bound
    #: of what the server holds for this client.
    outstanding_bytes = 0

    @abc.abstractmethod
    def _write_bytes(self, data: bytes) -> Future[None] | bool | None:
        """Hand ``data`` to the socket: True if the kernel took it all now, a future if some
        of it waits in a buffer, None when the connection is gone."""

    @abc.abstractmethod
    def _drop_slow(self) -> None:
        """Close a client stuck past the slow-client timeout, and abort its socket."""

    @abc.abstractmethod
    def peer(self) -> str:
        """The client's address, for the logs."""

    def _direct(self) -> SocketWriter | None:
        """The writer :func:`offer_all` may hand the hub's bytes to, as they are, while the
        outbox is free; None: every batch goes through :meth:`_write_bytes`."""
        return None

    def _update_free(self) -> None:
        """Call after the outbox or the connection changed."""
        self._free = self.outbox.is_free()
        self._fast = self._direct() if self._free else None

    def open_outbox(self, pace: Pace, form: Form) -> None:
        self._loop = asyncio.get_running_loop()
        self.outbox = Outbox(pace, form, self.state.table.array, self._loop.time())
        self._update_free()
        self._sent = self.state.metrics.sent[self.transport]

    # -- what the hub calls -----------------------------------------------------------------

    def offer(self, payload: Payload, data: bytes) -> None:
        """A batch for this client: written now, or merged into what it is owed."""
        if self._free:  # a free client: one write, one count, nothing else
            written = self._write_bytes(data)
            if written is True:
                self._sent.add(len(data))
            else:
                self._settle(written, len(data), True)
            return
        out = self.outbox.offer(self._loop.time(), payload, data)
        if out is None:
            self._arm_wake()
            self._update_free()
            return
        self._send(out, paced=True)

    def deliver(self, data: bytes, after_pending: bool = False) -> None:
        """A snapshot or a reply: written now, outside the pace (but it can still find the
        socket full, which starts the slow-client clock like any write). A snapshot comes
        ``after_pending``: what the client is still owed goes out first, in seq order."""
        if after_pending and (pending := self.outbox.take_pending()) is not None:
            self._send(pending, paced=True)
        self._send(data, paced=False)

    def restrict(self, selection: Selection) -> None:
        self.outbox.restrict(selection.select)
        self._update_free()

    # -- writing ----------------------------------------------------------------------------

    def _send(self, data: bytes, paced: bool) -> None:
        self._settle(self._write_bytes(data), len(data), paced)

    def _settle(self, written: Future[None] | bool | None, n: int, paced: bool) -> None:
        """Count a write of ``n`` bytes, and tell the outbox what became of it."""
        if written is None:
            return
        self._sent.add(n)
        taken = written is True or (not isinstance(written, bool) and written.done())
        if taken:
            self.outstanding_bytes = 0
        else:
            assert isinstance(written, Future)
            self.outstanding_bytes += n
            self._latest = written
            written.add_done_callback(self._drained)
        if self.outbox.wrote(self._loop.time(), n, taken, paced) is Phase.BEHIND:
            self._behind()
        if self.outbox.conflated != self._conflated_counted:
            merged = self.outbox.conflated - self._conflated_counted
            self._conflated_counted = self.outbox.conflated
            self.state.metrics.conflated_ticks.labels(self.transport).inc(merged)
        self._update_free()

    def _behind(self) -> None:
        m = self.state.metrics
        m.slow_client_steps.labels(self.transport, "behind").inc()
        if not self._fell_behind:
            self._fell_behind = True
            log.info("%s client %s fell behind; conflating", self.transport, self.peer())
        timeout = self.outbox.pace.slow_client_timeout_s
        self._stuck_timer = self._loop.call_later(timeout, self._check_stuck)

    def _drained(self, future: Future[None]) -> None:
        if not future.cancelled():
            future.exception()  # retrieved: a failed write is handled by the close path
        if future is not self._latest:
            return  # writes complete in order: only the latest one means all are taken
        self._latest = None
        self.outstanding_bytes = 0
        caught_up = self.outbox.drained(self._loop.time()) is Phase.LIVE
        self._update_free()
        if caught_up:
            self.state.metrics.slow_client_steps.labels(self.transport, "caught_up").inc()
            if self._stuck_timer is not None:
                self._stuck_timer.cancel()
                self._stuck_timer = None
        self._flush_due()

    def _flush_due(self) -> None:
        if self._wake is not None:  # called by a drain before the timer fired
            self._wake.cancel()
            self._wake = None
        data = self.outbox.due(self._loop.time())
        if data is None:
            self._arm_wake()
            return
        self._send(data, paced=True)

    def _arm_wake(self) -> None:
        if self._wake is not None:
            return
        at = self.outbox.wake_at(self._loop.time())
        if at is not None:
            self._wake = self._loop.call_at(at, self._flush_due)

    def _check_stuck(self) -> None:
        self._stuck_timer = None
        if self.outbox.expired(self._loop.time()):
            self.state.metrics.slow_client_steps.labels(self.transport, "dropped").inc()
            self.state.metrics.slow_consumers_dropped.labels(self.transport).inc()
            log.warning(
                "%s client %s stuck for %gs; dropped", self.transport, self.peer(),
                self.outbox.pace.slow_client_timeout_s,
            )
            self._drop_slow()

    def close_outlet(self) -> None:
        """Cancel this connection's timers (it is gone)."""
        for timer in (self._wake, self._stuck_timer):
            if timer is not None:
                timer.cancel()
        self._wake = self._stuck_timer = None


def offer_all(subs: Sequence[Outlet], payload: Payload, data: bytes) -> None:
    """Hand a batch to each of ``subs`` (the hub's ``offer_all``). A free client with a
    direct writer costs one ``send`` and nothing else while the kernel takes it all; the
    others take :meth:`Outlet.offer`'s way, and a write the kernel does not take whole is
    settled as that way settles it. Frames written whole are counted once per run of
    clients sharing a tally."""
    size = len(data)
    tally = None
    whole = 0
    try:
        for sub in subs:
            writer = sub._fast
            if writer is None or writer.pending._size:
                sub.offer(payload, data)
                continue
            try:
                sent = writer.send(data)
            except OSError as e:
                sent = writer.unsent(e)
            if sent != size:
                sub._settle(writer.rest(data, sent), size, True)
            elif sub._sent is tally:
                whole += 1
            else:
                if tally is not None:
                    tally.add(size, whole)
                tally, whole = sub._sent, 1
    finally:
        if tally is not None:
            tally.add(size, whole)
