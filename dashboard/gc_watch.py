"""The garbage collector, kept out of the fan-out's way and in sight.

A full (generation 2) collection walks every object the collector tracks, and the loop waits
while it does: 109 ms with 1,000 clients connected (measured), a batch late for all of them.
What is loaded before the server starts (modules, Tornado, numpy, the feed) lives as long
as the process, so the command freezes it (:func:`freeze_startup`): full collections then
walk what came after it, mostly the connections' own objects. Not later: a connection's
objects hold cycles, and a frozen cycle is never collected once the connection is gone. Every
collection is timed, and /metrics shows its pause by generation: an operator sees what the
collector costs, and a benchmark can tell its pauses from the fan-out's.
"""

from __future__ import annotations

import gc
import threading
import time

from prometheus_client import Histogram


def freeze_startup() -> int:
    """Collect once, then move what survived into the collector's permanent generation,
    which no collection walks. Returns how many objects that holds."""
    gc.collect()
    gc.freeze()
    return gc.get_freeze_count()


class PauseTimer:
    """While installed, times each collection into ``histogram``, labelled by generation,
    in the CPU time of the thread that collects."""

    def __init__(self, histogram: Histogram) -> None:
        self._by_generation = [histogram.labels(str(g)) for g in range(3)]
        self._started = 0.0
        self._loop_thread = threading.get_ident()
        #: The full collections' CPU seconds on the installing thread (the loop's), summed:
        #: what to leave out of a fan-out's CPU time.
        self.seconds = 0.0

    def install(self) -> None:
        self._loop_thread = threading.get_ident()
        gc.callbacks.append(self._timed)

    def uninstall(self) -> None:
        if self._timed in gc.callbacks:
            gc.callbacks.remove(self._timed)

    def _timed(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._started = time.thread_time()
            return
        took = time.thread_time() - self._started
        generation = info["generation"]
        self._by_generation[generation].observe(took)
        if generation == 2 and threading.get_ident() == self._loop_thread:
            self.seconds += took
