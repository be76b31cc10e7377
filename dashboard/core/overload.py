"""Whether the server keeps up with its own batches, judged from the CPU time each fan-out
took against the batch interval. No clock of its own: the caller times each fan-out.

When fan-outs outlast the interval, every batch waits for the one before and holds more
ticks, whose fan-out takes longer still: latency would grow without bound. Overloaded —
after ``TRIP`` fan-outs in a row longer than the interval — the server degrades visibly
instead: it refuses new streams (503 with Retry-After, WebSocket close 1013), publishes
each batch conflated to the latest tick per symbol (bounded by the symbols, whatever the
interval), and waits twice the last fan-out before closing the next batch, so reads, pings
and the kernel's buffers keep half of the loop. ``CLEAR`` fan-outs in a row under half the
interval end it.
"""

from __future__ import annotations

TRIP = 3
CLEAR = 20


class Overload:
    def __init__(self, interval_s: float) -> None:
        self.interval_s = interval_s
        self.overloaded = False
        #: Times the server became overloaded.
        self.trips = 0
        self.last_s = 0.0
        self._over = self._under = 0

    def fanned_out(self, took_s: float) -> None:
        """A batch's fan-out took ``took_s``."""
        self.last_s = took_s
        self._over = self._over + 1 if took_s > self.interval_s else 0
        self._under = self._under + 1 if took_s < self.interval_s / 2 else 0
        if not self.overloaded and self._over >= TRIP:
            self.overloaded = True
            self.trips += 1
        elif self.overloaded and self._under >= CLEAR:
            self.overloaded = False

    def wait_s(self) -> float:
        """How long the batch clock waits before it closes the next batch."""
        return max(self.interval_s, 2 * self.last_s) if self.overloaded else self.interval_s
