"""Rate limiting for the agent API: a token bucket per key (an agent token, an installer token,
a client address), in memory."""

from __future__ import annotations

import math
import time
from collections.abc import Callable


class TokenBuckets:
    """`per_minute` requests a minute per key, with bursts up to `burst` (default: per_minute).

    A key's bucket refills continuously; full buckets are forgotten by `prune()`, so memory
    follows the keys active within the last refill period; with `max_keys`, it never holds more
    buckets than that (past it, full ones go first, then the oldest: keys a client can mint,
    like addresses, cannot exhaust memory). `per_minute <= 0` disables limiting.
    """

    def __init__(
        self,
        per_minute: float,
        burst: int | None = None,
        clock: Callable[[], float] = time.monotonic,
        max_keys: int | None = None,
    ) -> None:
        self.capacity = float(burst if burst is not None else per_minute)
        self.rate = per_minute / 60.0  # tokens a second
        self.clock = clock
        self.max_keys = max_keys
        self._buckets: dict[str, list[float]] = {}  # key -> [tokens, updated at]

    @property
    def enabled(self) -> bool:
        return self.rate > 0 and self.capacity >= 1

    def __len__(self) -> int:
        return len(self._buckets)

    def acquire(self, key: str) -> float:
        """Take one request from `key`'s bucket: 0.0 when allowed, else seconds until allowed."""
        if not self.enabled:
            return 0.0
        now = self.clock()
        bucket = self._buckets.get(key)
        if bucket is None:
            if self.max_keys is not None and len(self._buckets) >= self.max_keys:
                self._make_room(self.max_keys)
            self._buckets[key] = [self.capacity - 1.0, now]
            return 0.0
        tokens = min(self.capacity, bucket[0] + (now - bucket[1]) * self.rate)
        bucket[1] = now
        if tokens >= 1.0:
            bucket[0] = tokens - 1.0
            return 0.0
        bucket[0] = tokens
        return (1.0 - tokens) / self.rate

    def _make_room(self, max_keys: int) -> None:
        if self.prune() == 0:
            for key in list(self._buckets)[: max_keys // 10 + 1]:
                del self._buckets[key]

    def retry_after(self, wait: float) -> str:
        """A Retry-After header value (whole seconds, at least 1)."""
        return str(max(1, math.ceil(wait)))

    def prune(self) -> int:
        """Forget buckets that have refilled completely; returns how many."""
        if not self.enabled:
            return 0
        now = self.clock()
        full = [
            key
            for key, (tokens, updated) in self._buckets.items()
            if tokens + (now - updated) * self.rate >= self.capacity
        ]
        for key in full:
            del self._buckets[key]
        return len(full)
