"""Token buckets in process memory: how often one API key or one client address may do something.

A bucket holds at most ``per_minute`` tokens and gains them back evenly over a minute, so a caller may
spend a minute's worth at once (a citizen reporting a few problems in a row, a hotline bridge catching
up) and then keeps to the rate. The buckets live in the service process: one process serves the city
(docs/ARCHITECTURE.md), and a restart forgetting them costs at most one minute's extra allowance.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable

from gridsvc.errors import GridsvcError

# Past this many callers the full buckets are dropped (a full bucket is the same as none), so a flood of
# forged addresses cannot grow the table without end.
MAX_TRACKED = 100_000


class RateLimitedError(GridsvcError):
    """Too many requests from one key or address: come back after ``retry_after`` seconds."""

    title = "Too many requests"

    def __init__(self, detail: str, *, retry_after: int) -> None:
        super().__init__(detail)
        self.retry_after = retry_after


class TokenBuckets:
    """One token bucket per caller (a key id, an address), all refilled at ``per_minute`` per minute.

    ``per_minute`` 0 means no limit. Thread-safe: routes run on the event loop and in worker threads.
    """

    def __init__(self, per_minute: int, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.per_minute = per_minute
        self._clock = clock
        self._lock = threading.Lock()
        self._buckets: dict[str, tuple[float, float]] = {}  # caller -> (tokens, when counted)

    def take(self, caller: str) -> float:
        """Spend one token of ``caller``: 0.0 when there was one, else the seconds until there is."""
        if self.per_minute <= 0:
            return 0.0
        rate = self.per_minute / 60.0
        now = self._clock()
        with self._lock:
            tokens, then = self._buckets.get(caller, (float(self.per_minute), now))
            tokens = min(float(self.per_minute), tokens + (now - then) * rate)
            if tokens < 1.0:
                self._buckets[caller] = (tokens, now)
                return (1.0 - tokens) / rate
            if len(self._buckets) >= MAX_TRACKED and caller not in self._buckets:
                self._forget_full(now, rate)
                if len(self._buckets) >= MAX_TRACKED:  # a flood of callers: forget them all, once
                    self._buckets.clear()
            self._buckets[caller] = (tokens - 1.0, now)
            return 0.0

    def _forget_full(self, now: float, rate: float) -> None:
        full = [
            caller
            for caller, (tokens, then) in self._buckets.items()
            if tokens + (now - then) * rate >= self.per_minute
        ]
        for caller in full:
            del self._buckets[caller]


def retry_after_seconds(wait: float) -> int:
    """A Retry-After value (whole seconds, RFC 9110 §10.2.3) that is never early."""
    return max(1, math.ceil(wait))
