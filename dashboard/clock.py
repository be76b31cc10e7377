"""The server's wall clock, in epoch milliseconds as messages carry it. The core never reads
it: the process and the transports read it and pass the time in."""

from __future__ import annotations

import time


def now_ms() -> float:
    return round(time.time() * 1000.0, 1)
