"""Rate limits: per checked credential (else per address) on the API, per address and username
on failed logins, per socket on /ws."""

from __future__ import annotations

import asyncio
import json
import secrets
from pathlib import Path

import aiohttp
import pytest

from server.settings import Settings
from signaling.ratelimit import RateLimit, RateLimiter, TokenBucket
from tests.conftest import LiveService


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_token_bucket_refills_at_its_rate_up_to_its_burst() -> None:
    clock = Clock()
    bucket = TokenBucket(RateLimit(rate=2, burst=3), clock)
    assert [bucket.take() for _ in range(4)] == [True, True, True, False]
    assert bucket.refused == 1 and bucket.retry_after() == pytest.approx(0.5)
    clock.now = 0.5
    assert bucket.take() and not bucket.take()
    clock.now = 100
    assert [bucket.take() for _ in range(4)] == [True, True, True, False]  # never past burst
    with pytest.raises(ValueError):
        RateLimit(rate=0, burst=1)


def test_limiter_keeps_a_bounded_table_of_keys() -> None:
    limiter = RateLimiter(RateLimit(1, 1), max_keys=3)
    for key in "abcdef":
        assert limiter.take(key)
    assert len(limiter) == 3
    assert not limiter.take("f")  # the newest keys are the ones kept


@pytest.fixture
def service_settings(tmp_path: Path) -> Settings:
    return Settings(
        data_dir=tmp_path / "var",
        port=0,
        shutdown_timeout_s=2.0,
        grading=False,
        api_rate_per_s=1.0,
        api_burst=5,
        login_failures_per_min=3,
    )


async def test_api_answers_429_past_a_credentials_rate(live_service: LiveService) -> None:
    url = f"{live_service.base_url}/api/cases"
    async with aiohttp.ClientSession() as session:
        statuses = []
        for _ in range(7):
            async with session.get(url, headers=live_service.headers()) as response:
                statuses.append(response.status)
                if response.status == 429:
                    retry_after = int(response.headers["Retry-After"])
                    body = await response.json()
        assert statuses[:5] == [200] * 5 and statuses[5:] == [429, 429]
        assert retry_after >= 1 and body["error"]["code"] == "rate_limited"
        # Another credential has its own bucket; health checks are never limited.
        async with session.get(url) as anonymous:
            assert anonymous.status == 401
        for _ in range(10):
            async with session.get(f"{live_service.base_url}/healthz") as health:
                assert health.status == 200


async def test_random_bearer_values_do_not_escape_the_address_limit(
    live_service: LiveService,
) -> None:
    url = f"{live_service.base_url}/api/cases"
    async with aiohttp.ClientSession() as session:
        statuses = []
        for _ in range(8):
            # The review's bypass: a fresh invented credential per request.
            bearer = {"Authorization": f"Bearer insp_{secrets.token_urlsafe(16)}"}
            async with session.get(url, headers=bearer) as response:
                statuses.append(response.status)
        assert statuses[:5] == [401] * 5 and 429 in statuses[5:]
        # A real credential is checked first and keeps a bucket of its own.
        async with session.get(url, headers=live_service.headers()) as response:
            assert response.status == 200


async def test_failed_logins_lock_that_username_from_that_address(
    live_service: LiveService,
) -> None:
    url = f"{live_service.base_url}/api/login"
    async with aiohttp.ClientSession() as session:
        for _ in range(3):
            async with session.post(url, json={"username": "agent", "password": "wrong"}) as r:
                assert r.status == 401
        good = {"username": "agent", "password": live_service.agent_password}
        async with session.post(url, json=good) as locked:
            assert locked.status == 429 and "Retry-After" in locked.headers
            assert "failed logins" in (await locked.json())["error"]["message"]
    async with aiohttp.ClientSession() as other_user:
        async with other_user.post(
            url, json={"username": "reviewer", "password": live_service.agent_password}
        ) as response:
            assert response.status == 200  # another username is not locked


async def test_a_flooding_socket_is_told_to_slow_down_then_closed(
    live_service: LiveService,
) -> None:
    async with (
        aiohttp.ClientSession() as session,
        session.ws_connect(f"{live_service.base_url.replace('http', 'ws')}/ws") as ws,
    ):
        for _ in range(120):
            await ws.send_str(json.dumps({"type": "ping"}))
        codes: list[str | None] = []
        async with asyncio.timeout(10):
            while len(codes) < 120:
                message = await ws.receive()
                if message.type != aiohttp.WSMsgType.TEXT:
                    break
                codes.append(json.loads(message.data).get("code"))
        assert "rate_limited" in codes  # past the burst
        assert codes.count("not_joined") >= 60  # the burst itself was served
        for _ in range(400):
            if ws.closed:
                break
            await ws.send_str(json.dumps({"type": "ping"}))
        async with asyncio.timeout(10):
            while not ws.closed:
                if (await ws.receive()).type in (
                    aiohttp.WSMsgType.CLOSE,
                    aiohttp.WSMsgType.CLOSED,
                    aiohttp.WSMsgType.CLOSING,
                ):
                    break
        assert ws.close_code == 1008
