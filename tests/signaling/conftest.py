"""Redis fixtures for the bus tests: the session's server (``tests/redis_server.py``: the
machine's Redis, else a ``redis-server`` of our own; failing, never skipping, without either)
and one key prefix per test."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator

import pytest
import redis

from tests.redis_server import redis_url  # noqa: F401 - the session's Redis (fails without one)
from tests.signaling._redis_buses import MakeRedisBus, RedisBuses


def _clean(url: str, prefix: str) -> None:
    client = redis.Redis.from_url(url)
    try:
        keys = list(client.scan_iter(match=f"{prefix}*", count=1000))
        if keys:
            client.delete(*keys)
    finally:
        client.close()


@pytest.fixture
def redis_prefix(request: pytest.FixtureRequest) -> Iterator[str]:
    """A key prefix of this test alone; whatever the test left under it is deleted after it,
    from whichever server ``redis_url`` chose (tests that start their own servers clean up by
    killing them)."""
    prefix = f"inspect-test:{uuid.uuid4().hex[:12]}:"
    yield prefix
    if "redis_url" in request.fixturenames:
        _clean(request.getfixturevalue("redis_url"), prefix)


@pytest.fixture
async def make_redis_bus(
    redis_url: str,  # noqa: F811 - the fixture imported above
    redis_prefix: str,
) -> AsyncIterator[MakeRedisBus]:
    """Factory of started RedisBus nodes on the session's Redis, closed after the test."""
    buses = RedisBuses(redis_url, redis_prefix)
    yield buses
    await buses.aclose()
