"""Chat's bounds: how much one participant and one room may send, and the replay on ``join``
cut into pages.

The per-socket rate limit keeps one socket from flooding; these keep one *subject* (every
socket of one join link together) and one room from filling the chat log and the case
timeline, which keeps every message. The budgets are per node: with several nodes a subject
whose sockets land on different nodes gets one budget on each."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

from .bus import ChatRecord
from .config import HubConfig
from .ratelimit import RateLimit, RateLimiter

__all__ = ["ChatLimits", "pages"]

#: What a record's JSON adds to its text (seq, ids, time, sender), as a page counts bytes.
_RECORD_OVERHEAD = 256


def _per_minute(amount: int) -> RateLimit:
    return RateLimit(rate=amount / 60.0, burst=float(amount))


class ChatLimits:
    """Messages and bytes per minute, per subject and per room (least recently used keys are
    forgotten past 10,000 of each, as in :class:`RateLimiter`)."""

    def __init__(self, config: HubConfig, clock: Callable[[], float] = time.monotonic) -> None:
        self._config = config
        self._messages = RateLimiter(_per_minute(config.chat_messages_per_min), clock=clock)
        self._bytes = RateLimiter(_per_minute(config.chat_bytes_per_min), clock=clock)
        self._room_messages = RateLimiter(
            _per_minute(config.chat_room_messages_per_min), clock=clock
        )
        self._room_bytes = RateLimiter(_per_minute(config.chat_room_bytes_per_min), clock=clock)

    def refusal(self, subject: str, room: str, text: str) -> str | None:
        """Spend the budgets for ``text``, or say why not (nothing is spent then)."""
        size = float(len(text.encode()))
        checks = (
            (self._messages.bucket(subject), 1.0, "messages a minute from you"),
            (self._bytes.bucket(subject), size, "bytes of chat a minute from you"),
            (self._room_messages.bucket(room), 1.0, "messages a minute in this room"),
            (self._room_bytes.bucket(room), size, "bytes of chat a minute in this room"),
        )
        for bucket, cost, what in checks:
            if bucket.retry_after(cost) > 0:
                wait = bucket.retry_after(cost)
                return (
                    f"too much chat: at most {bucket.limit.burst:g} {what}; "
                    f"try again in {wait:.0f} s"
                )
        for bucket, cost, _ in checks:
            bucket.take(cost)
        return None


def _size(record: ChatRecord) -> int:
    return len(record.text.encode()) + _RECORD_OVERHEAD


def pages(records: Sequence[ChatRecord], *, size: int, max_bytes: int) -> list[list[ChatRecord]]:
    """``records`` (oldest first) cut into pages of at most ``size`` messages and about
    ``max_bytes`` (a page always holds at least one), counted from the newest: the last page
    is the newest and full, the first holds what is left over."""
    result: list[list[ChatRecord]] = []
    page: list[ChatRecord] = []
    used = 0
    for record in reversed(records):
        cost = _size(record)
        if page and (len(page) >= size or used + cost > max_bytes):
            result.append(page[::-1])
            page, used = [], 0
        page.append(record)
        used += cost
    if page:
        result.append(page[::-1])
    return result[::-1]
