"""Per-connection flow control: what a client is owed and when it may be sent. Pure.

The slow-client ladder, every step counted and logged by the transport::

    LIVE ──write not taken by the kernel──▶ BEHIND ──stuck past the timeout──▶ DROPPED
      ▲                                        │
      └──────── drained: one fresh frame ◀─────┘

- LIVE: each batch's shared bytes are written as they come — unless the client's pace
  (``max_hz``, bytes per second) says not yet; then batches conflate until it does.
- BEHIND: the socket buffer is full (the kernel did not take a whole write). New batches
  are merged into the pending state, never queued: memory is bounded by the symbols, not by
  time. When the kernel has taken everything, the client gets one fresh merged frame.
- DROPPED: stuck for longer than the slow-client timeout, counted from the moment the
  kernel stopped taking its bytes. The transport closes it (WebSocket 1013) and aborts the
  socket at once.

Time is in seconds from any monotonic origin, passed in.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from dashboard.core.conflation import Conflator
from dashboard.core.limits import TokenBucket
from dashboard.core.payload import Form, Payload
from feeds.base import Ticks


class Phase(enum.Enum):
    LIVE = "live"
    BEHIND = "behind"
    DROPPED = "dropped"


@dataclass(frozen=True, slots=True)
class Pace:
    """A connection's outbound limits; None means no limit."""

    max_hz: float | None = None
    max_bytes_per_s: float | None = None
    slow_client_timeout_s: float = 10.0


class Outbox:
    def __init__(self, pace: Pace, form: Form, names: npt.NDArray[np.object_], now: float) -> None:
        self.pace = pace
        self.form = form
        self._names = names
        self.phase = Phase.LIVE
        #: When the kernel stopped taking this client's bytes; None while it takes them.
        self.stuck_since: float | None = None
        self._pending = Conflator()
        self._next_frame_at = now
        self._bytes = (
            TokenBucket(pace.max_bytes_per_s, pace.max_bytes_per_s, now)
            if pace.max_bytes_per_s else None
        )
        #: Ticks merged away for this client so far (the sum of ``conflated``).
        self.conflated = 0
        self._unpaced = not pace.max_hz and not pace.max_bytes_per_s

    def is_free(self) -> bool:
        """Live, owed nothing, unpaced: the next batch's shared bytes may simply be written
        (and a write the kernel takes whole changes nothing here)."""
        return self._unpaced and self.phase is Phase.LIVE and not self._pending

    # -- batches ----------------------------------------------------------------------------

    def offer(self, now: float, payload: Payload, data: bytes) -> bytes | None:
        """A new batch (``data`` is its shared bytes): what to write now, or None if it was
        merged into the pending state (behind, or paced)."""
        if self.phase is Phase.DROPPED:
            return None
        if self.phase is Phase.LIVE and not self._pending and now >= self.ready_at(now):
            return data
        assert payload.batch is not None and payload.ticks is not None, "offer batches only"
        self._pending.add(payload.batch, payload.ticks, payload)
        return self.due(now)

    def due(self, now: float) -> bytes | None:
        """The pending merged frame, if there is one and it may be written now."""
        if self.phase is not Phase.LIVE or now < self.ready_at(now):
            return None
        return self.take_pending()

    def take_pending(self) -> bytes | None:
        """The pending merged frame now, whatever the pace: a snapshot must not overtake
        batches it does not reflect, or the client would see their seq as old and skip
        them."""
        if not self._pending or self.phase is Phase.DROPPED:
            return None
        payload, conflated = self._pending.take(self._names)
        self.conflated += conflated
        return payload.form(self.form)

    def wake_at(self, now: float) -> float | None:
        """When :meth:`due` will have something to write (None: nothing pending, or behind —
        a drain, not a clock, will move it)."""
        if self.phase is not Phase.LIVE or not self._pending:
            return None
        return self.ready_at(now)

    def restrict(self, keep: Callable[[Ticks], Ticks]) -> None:
        """The client changed its subscription: what it is owed keeps only its symbols."""
        self._pending.restrict(keep)

    def ready_at(self, now: float) -> float:
        at = self._next_frame_at
        if self._bytes is not None:
            at = max(at, self._bytes.ready_at(now))
        return at

    # -- the socket -------------------------------------------------------------------------

    def wrote(self, now: float, nbytes: int, taken: bool, paced: bool = True) -> Phase | None:
        """Bytes were handed to the transport; ``taken`` says the kernel took them all.

        ``paced`` frames (batches) count against ``max_hz``; replies and snapshots do not,
        but every byte counts against the bytes-per-second cap. Returns the new phase when it
        changed.
        """
        if paced and self.pace.max_hz:
            self._next_frame_at = now + 1.0 / self.pace.max_hz
        if self._bytes is not None:
            self._bytes.spend(now, nbytes)
        if not taken and self.phase is Phase.LIVE:
            self.phase = Phase.BEHIND
            self.stuck_since = now
            return Phase.BEHIND
        return None

    def drained(self, now: float) -> Phase | None:
        """The kernel has taken everything written so far."""
        self.stuck_since = None
        if self.phase is Phase.BEHIND:
            self.phase = Phase.LIVE
            return Phase.LIVE
        return None

    def expired(self, now: float) -> bool:
        """Stuck past the timeout: the client is dropped (True once)."""
        if (
            self.phase is Phase.BEHIND and self.stuck_since is not None
            and now - self.stuck_since >= self.pace.slow_client_timeout_s
        ):
            self.phase = Phase.DROPPED
            return True
        return False
