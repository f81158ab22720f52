"""Sign-in throttling per account and per client address (a sliding window, in process)."""

from __future__ import annotations

import time
from collections import deque

from server.domain.errors import RateLimited

WINDOW_SECONDS = 60.0
MAX_TRACKED = 100_000  # keys kept at most; the oldest are forgotten first


class LoginThrottle:
    def __init__(self, attempts_per_minute: int) -> None:
        self.limit = attempts_per_minute
        self._attempts: dict[str, deque[float]] = {}

    def check(self, email: str, address: str | None) -> None:
        """Count an attempt; refuse it when the account or the address is over the limit."""
        now = time.monotonic()
        keys = [f"email:{email.strip().lower()[:254]}"]
        if address:
            keys.append(f"addr:{address}")
        for key in keys:
            attempts = self._attempts.setdefault(key, deque())
            while attempts and now - attempts[0] > WINDOW_SECONDS:
                attempts.popleft()
            if len(attempts) >= self.limit:
                raise RateLimited("too many sign-in attempts; wait a minute and try again")
        for key in keys:
            self._attempts[key].append(now)
        if len(self._attempts) > MAX_TRACKED:
            for key in list(self._attempts)[: MAX_TRACKED // 10]:
                del self._attempts[key]
