"""Token buckets: the rate limits of client messages in and of bytes out. Pure; the clock
comes in as an argument (seconds, any monotonic origin)."""

from __future__ import annotations


class TokenBucket:
    """``rate`` tokens a second, at most ``burst`` saved up; starts full.

    :meth:`spend` may take the bucket into debt (a frame larger than the burst still goes out
    once the bucket is out of debt), so the long-run rate holds for any sizes.
    """

    __slots__ = ("_at", "_tokens", "burst", "rate")

    def __init__(self, rate: float, burst: float, now: float) -> None:
        if rate <= 0 or burst <= 0:
            raise ValueError("rate and burst must be positive")
        self.rate = rate
        self.burst = burst
        self._tokens = burst
        self._at = now

    def tokens(self, now: float) -> float:
        if now > self._at:
            self._tokens = min(self.burst, self._tokens + (now - self._at) * self.rate)
            self._at = now
        return self._tokens

    def take(self, now: float, n: float = 1.0) -> bool:
        """Take ``n`` tokens if they are there; False (nothing taken) if not."""
        if self.tokens(now) >= n:
            self._tokens -= n
            return True
        return False

    def spend(self, now: float, n: float) -> None:
        """Take ``n`` tokens unconditionally, into debt if need be."""
        self._tokens = self.tokens(now) - n

    def ready_at(self, now: float) -> float:
        """When the bucket is out of debt (``now`` if it already is)."""
        tokens = self.tokens(now)
        return now if tokens >= 0 else now + -tokens / self.rate
