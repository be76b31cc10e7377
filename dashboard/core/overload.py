"""Whether the server keeps up with its own batches, judged from the CPU time each fan-out
took against the batch interval. No clock of its own: the caller times each fan-out.

When fan-outs outlast the interval, every batch waits for the one before. Overloaded —
after ``TRIP`` fan-outs in a row longer than the interval, or one longer than the longest
stretch — the server degrades visibly, in two steps:

1. It refuses new streams (503 with Retry-After, WebSocket close 1013) and stretches the
   interval to ``STRETCH`` times the last fan-out, so reads, pings and the kernel's buffers
   keep a fifth of the loop. A fan-out costs about the same per client whatever its batch
   holds, so fewer, bigger batches keep up, and every tick is still delivered.
2. Once a fan-out is too long for even a stretch of ``MAX_STRETCH`` intervals to leave the
   loop its fifth (the cost grows with the ticks, as with clients compressing each batch
   on their own connection, and each batch would take longer than the one before it: at
   once, not after a few more), it also publishes each batch conflated to the latest tick
   per symbol (bounded by the symbols, whatever the interval), and waits twice the last
   fan-out. The caller leaves full garbage collections out of a fan-out's time: a pause
   of the collector is no trend of the fan-out's.

``CLEAR`` fan-outs in a row under half the interval end both; ``CLEAR`` under half of where
conflation starts end the conflation alone. (Judged on conflated batches, which cost less,
that may stop too soon and come back after one long fan-out; but with a cost that is per
client, not per tick, waiting for the overload to end would conflate for good.)

The same figure sets what the next batch may spend on the best compression: smaller
messages for every client are worth a few milliseconds of CPU a batch while the server has
them to spare, and not once fan-outs take a good part of the interval (see
:meth:`Overload.best_compression_s`).
"""

from __future__ import annotations

TRIP = 3
CLEAR = 20
STRETCH = 1.25
MAX_STRETCH = 4.0
#: The share of the interval that fan-outs and the best compression together may take before
#: the best compression is left out: a fifth, 10 ms of a 50 ms interval.
BEST_SHARE = 0.2


class Overload:
    def __init__(self, interval_s: float, stretches: bool = True) -> None:
        """``stretches``: the caller's batch clock waits :meth:`wait_s`. One that does not
        (an edge publishes batches as the broker brings them) conflates as soon as it is
        overloaded."""
        self.interval_s = interval_s
        self.stretches = stretches
        #: Fan-outs outlast the interval: new streams are refused, batches stretched.
        self.overloaded = False
        #: Fan-outs outlast even the longest stretch: batches are conflated too.
        self.conflating = False
        #: Times the server became overloaded.
        self.trips = 0
        #: The last fan-out's CPU time, and the part of it the best compression took.
        self.last_s = 0.0
        self.last_best_s = 0.0
        self._over = self._under = self._within = 0

    def fanned_out(self, took_s: float, best_s: float = 0.0) -> None:
        """A batch's fan-out took ``took_s``, ``best_s`` of it on the best compression."""
        self.last_s, self.last_best_s = took_s, best_s
        # Past this, the next stretch would be capped short of what the loop is promised.
        longest = MAX_STRETCH * self.interval_s / STRETCH
        self._over = self._over + 1 if took_s > self.interval_s else 0
        self._under = self._under + 1 if took_s < self.interval_s / 2 else 0
        self._within = self._within + 1 if took_s < longest / 2 else 0
        if not self.overloaded and (self._over >= TRIP or took_s > longest):
            self.overloaded = True
            self.trips += 1
        elif self.overloaded and self._under >= CLEAR:
            self.overloaded = self.conflating = False
        if self.overloaded and (took_s > longest or not self.stretches):
            self.conflating = True
        elif self.conflating and self.stretches and self._within >= CLEAR:
            self.conflating = False

    def best_compression_s(self) -> float:
        """The CPU the next batch may spend on the best compression: what the last fan-out,
        without its own best compression, left of ``BEST_SHARE`` of the interval (counting
        that in would grant it every other batch); none while overloaded."""
        if self.overloaded:
            return 0.0
        return max(0.0, BEST_SHARE * self.interval_s - max(0.0, self.last_s - self.last_best_s))

    def wait_s(self) -> float:
        """How long the batch clock waits before it closes the next batch."""
        if self.conflating:
            return max(self.interval_s, 2 * self.last_s)
        if self.overloaded:
            return min(MAX_STRETCH * self.interval_s,
                       max(self.interval_s, STRETCH * self.last_s))
        return self.interval_s
