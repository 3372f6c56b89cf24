"""Rate limits (the ``limits`` library, in-process memory): HTTP per credential, WebSocket per connection.

Limits are per process: with N workers behind a balancer a client gets up to N times the limit.
"""

from __future__ import annotations

import time

import limits
from limits.storage import MemoryStorage
from limits.strategies import FixedWindowRateLimiter

from .errors import RateLimited


class RateLimit:
    """``"100/second"``-style limit; ``check(key)`` raises ``RateLimited`` (429 / 4029) when exceeded."""

    def __init__(self, spec: str) -> None:
        self.item = limits.parse(spec)
        self._limiter = FixedWindowRateLimiter(MemoryStorage())

    @classmethod
    def from_setting(cls, spec: str) -> RateLimit | None:
        """None for an empty setting (no limit)."""
        return cls(spec) if spec.strip() else None

    def check(self, key: str) -> None:
        """Count one request for ``key``; raise ``RateLimited`` with ``retry_after`` when over the limit."""
        if not self._limiter.hit(self.item, key):
            reset = self._limiter.get_window_stats(self.item, key).reset_time
            raise RateLimited(f"rate limit of {self.item} exceeded", retry_after=max(reset - time.time(), 0.001))
