"""The garbage collector, kept out of the fan-out's way and in sight.

A full (generation 2) collection walks every object the collector tracks, and the loop waits
while it does: 109 ms with 1,000 clients connected (measured), a batch late for all of them.
What start-up built (modules, Tornado, numpy, the symbol table, the feed) lives as long as
the process, so it is frozen once the server listens (:func:`freeze_startup`): full
collections then walk what came after it, mostly the connections' own objects. Every
collection is timed, and /metrics shows its pause by generation: an operator sees what the
collector costs, and a benchmark can tell its pauses from the fan-out's.
"""

from __future__ import annotations

import gc
import time

from prometheus_client import Histogram


def freeze_startup() -> int:
    """Collect once, then move what survived into the collector's permanent generation,
    which no collection walks. Returns how many objects that holds."""
    gc.collect()
    gc.freeze()
    return gc.get_freeze_count()


class PauseTimer:
    """While installed, times each collection into ``histogram``, labelled by generation."""

    def __init__(self, histogram: Histogram) -> None:
        self._by_generation = [histogram.labels(str(g)) for g in range(3)]
        self._started = 0.0
        #: Every timed collection's seconds, summed: what to leave out of a fan-out's time.
        self.seconds = 0.0

    def install(self) -> None:
        gc.callbacks.append(self._timed)

    def uninstall(self) -> None:
        if self._timed in gc.callbacks:
            gc.callbacks.remove(self._timed)

    def _timed(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._started = time.perf_counter()
        else:
            took = time.perf_counter() - self._started
            self.seconds += took
            self._by_generation[info["generation"]].observe(took)
