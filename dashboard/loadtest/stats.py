"""Load-test arithmetic, pure: latency histograms that merge across processes, and the
per-second figures a worker reports."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

#: Log-spaced latency bins from 0.1 ms to 100 s, 2% wide: percentiles within about 1%, and a
#: histogram is a few kilobytes however many ticks it counts.
EDGES_MS = np.geomspace(0.1, 100_000.0, 700)


def histogram(latencies_ms: npt.NDArray[np.float64]) -> npt.NDArray[np.int64]:
    """Counts per bin; below the first edge counts in bin 0, above the last in the last."""
    idx = np.clip(np.searchsorted(EDGES_MS, latencies_ms), 0, len(EDGES_MS) - 1)
    return np.bincount(idx, minlength=len(EDGES_MS)).astype(np.int64)


def percentile(hist: npt.NDArray[np.int64], q: float) -> float | None:
    """The ``q`` (0..1) quantile of a histogram, as the upper edge of its bin."""
    total = int(hist.sum())
    if not total:
        return None
    rank = np.searchsorted(np.cumsum(hist), q * total, side="left")
    return float(EDGES_MS[min(int(rank), len(EDGES_MS) - 1)])


@dataclass
class Interval:
    """One worker's figures for one second (or for the whole run, when merged)."""

    frames: int = 0
    bytes: int = 0
    ticks: int = 0  # counted on fully decoded (sampled) clients only
    sampled_frames: int = 0
    gaps: int = 0
    conflated: int = 0
    latency: npt.NDArray[np.int64] = field(
        default_factory=lambda: np.zeros(len(EDGES_MS), np.int64)
    )
    cpu_s: float = 0.0
    loop_lag_ms: float = 0.0

    def add(self, other: Interval) -> None:
        self.frames += other.frames
        self.bytes += other.bytes
        self.ticks += other.ticks
        self.sampled_frames += other.sampled_frames
        self.gaps += other.gaps
        self.conflated += other.conflated
        self.latency = self.latency + other.latency
        self.cpu_s += other.cpu_s
        self.loop_lag_ms = max(self.loop_lag_ms, other.loop_lag_ms)

    def to_json(self) -> dict[str, Any]:
        return {
            "frames": self.frames, "bytes": self.bytes, "ticks": self.ticks,
            "sampled_frames": self.sampled_frames, "gaps": self.gaps,
            "conflated": self.conflated, "latency": self.latency.tolist(),
            "cpu_s": self.cpu_s, "loop_lag_ms": self.loop_lag_ms,
        }

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> Interval:
        return cls(**{**d, "latency": np.asarray(d["latency"], np.int64)})
