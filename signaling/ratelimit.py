"""Token buckets: how many messages or requests one client may send, and how fast.

One bucket per connection (``/ws``) or per credential (REST); a bounded table of buckets per
key (least recently used dropped), so a flood of new keys cannot grow memory without bound.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

__all__ = ["RateLimit", "RateLimiter", "TokenBucket"]


@dataclass(frozen=True, slots=True)
class RateLimit:
    """``rate`` tokens per second, at most ``burst`` saved up."""

    rate: float
    burst: float

    def __post_init__(self) -> None:
        if self.rate <= 0 or self.burst < 1:
            raise ValueError("a rate limit needs rate > 0 and burst >= 1")


class TokenBucket:
    def __init__(self, limit: RateLimit, clock: Callable[[], float] = time.monotonic) -> None:
        self.limit = limit
        self._clock = clock
        self._tokens = limit.burst
        self._at = clock()
        #: Requests refused so far.
        self.refused = 0

    def _refill(self) -> None:
        now = self._clock()
        self._tokens = min(self.limit.burst, self._tokens + (now - self._at) * self.limit.rate)
        self._at = now

    def take(self, cost: float = 1.0) -> bool:
        """Spend ``cost`` tokens if there are enough; False (and counted) otherwise."""
        self._refill()
        if self._tokens >= cost:
            self._tokens -= cost
            return True
        self.refused += 1
        return False

    def retry_after(self, cost: float = 1.0) -> float:
        """Seconds until ``cost`` tokens are there."""
        self._refill()
        return max(0.0, (cost - self._tokens) / self.limit.rate)


class RateLimiter:
    """A bucket per key, at most ``max_keys`` of them (least recently used dropped)."""

    def __init__(
        self,
        limit: RateLimit,
        *,
        max_keys: int = 10_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.limit = limit
        self._max_keys = max_keys
        self._clock = clock
        self._buckets: OrderedDict[str, TokenBucket] = OrderedDict()

    def bucket(self, key: str) -> TokenBucket:
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = self._buckets[key] = TokenBucket(self.limit, self._clock)
            while len(self._buckets) > self._max_keys:
                self._buckets.popitem(last=False)
        else:
            self._buckets.move_to_end(key)
        return bucket

    def take(self, key: str, cost: float = 1.0) -> bool:
        return self.bucket(key).take(cost)

    def __len__(self) -> int:
        return len(self._buckets)
