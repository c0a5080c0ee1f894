"""Revocation across processes: two real ``inspectd serve`` processes sharing one data
directory and one Redis (the review's H2 set-up). A token revoked, a session signed out and a
user disabled through one process are refused by the other within a second: every use is
checked against the shared database, and no process keeps an answer of its own. A socket open
on the other process with that credential is closed within a second too: the revocation goes
over the bus to every node."""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from pathlib import Path

import aiohttp
import pytest
from yarl import URL

from server.app import free_port, open_state
from server.settings import Settings
from signaling import CloseCode, Role
from tests.redis_server import redis_url  # noqa: F401 - the session's Redis
from tests.server._multinode import node_of, process

pytestmark = pytest.mark.redis

PASSWORD = "agent-pass-123"
ADMIN_PASSWORD = "admin-pass-123"


@contextlib.asynccontextmanager
async def _serve(data_dir: Path, log: Path, redis: tuple[str, str]) -> AsyncIterator[str]:
    """An ``inspectd serve`` process on a free port; its base URL once it answers."""
    port = free_port()
    environ: Mapping[str, str] = {
        **os.environ,
        "INSPECT_REDIS_URL": redis[0],
        "INSPECT_REDIS_PREFIX": redis[1],
        "INSPECT_DATA_DIR": str(data_dir),
        "INSPECT_PORT": str(port),
        "INSPECT_GRADING": "false",
        "INSPECT_SHUTDOWN_TIMEOUT_S": "2",
    }
    base = f"http://127.0.0.1:{port}"
    async with process(["serve"], environ, log):
        await node_of(base, log)
        yield base


async def _staff_join(session: aiohttp.ClientSession, base: str) -> str:
    """The type of the answer to a staff ``join`` on a socket of ``session``."""
    async with session.ws_connect(f"{base.replace('http', 'ws')}/ws") as ws:
        await ws.send_json({"type": "join"})
        reply = await ws.receive_json(timeout=5)
        return str(reply["type"])


@contextlib.asynccontextmanager
async def _open_socket(
    session: aiohttp.ClientSession, base: str, headers: Mapping[str, str] | None = None
) -> AsyncIterator[aiohttp.ClientWebSocketResponse]:
    """A staff socket of ``session`` (or of ``headers``' credential), joined."""
    url = f"{base.replace('http', 'ws')}/ws"
    async with session.ws_connect(url, headers=headers or {}) as ws:
        await ws.send_json({"type": "join"})
        assert (await ws.receive_json(timeout=5))["type"] == "joined"
        yield ws


async def _closed_within(ws: aiohttp.ClientWebSocketResponse, seconds: float) -> None:
    """The socket is told ``unauthorized`` and closed with 4401 within ``seconds``."""
    told, code = None, None
    async with asyncio.timeout(seconds):
        while code is None:
            message = await ws.receive()
            if message.type is aiohttp.WSMsgType.TEXT and message.json()["type"] == "error":
                told = message.json()["code"]
            elif message.type is aiohttp.WSMsgType.CLOSE:
                code = message.data  # the server's code (the close that follows may fail)
            elif message.type in (aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.ERROR):
                code = ws.close_code
    assert told == "unauthorized", told
    assert code == CloseCode.UNAUTHORIZED, code


async def _refused_within(check: Callable[[], Awaitable[int]], seconds: float) -> float:
    """Seconds until ``check`` answers 401 (fails past ``seconds``)."""
    start = time.monotonic()
    while True:
        status = await check()
        elapsed = time.monotonic() - start
        if status == 401:
            return elapsed
        assert status == 200, status
        assert elapsed < seconds, f"still admitted {elapsed:.2f}s after the revocation"
        await asyncio.sleep(0.05)


@pytest.fixture
async def nodes(
    tmp_path: Path,
    redis_url: str,  # noqa: F811
) -> AsyncIterator[tuple[str, str, str]]:
    """Process A, process B (one data directory, one Redis) and an admin API token."""
    data_dir = tmp_path / "var"
    redis = (redis_url, f"inspect-test:{uuid.uuid4().hex[:12]}:")
    async with open_state(Settings(data_dir=data_dir)) as state:
        await state.accounts.create_user("agent", PASSWORD, name="Alex Agent", role=Role.AGENT)
        await state.accounts.create_user("boss", ADMIN_PASSWORD, name="Bo Boss", role=Role.ADMIN)
        admin_token, _ = await state.accounts.create_api_token("tests", role=Role.ADMIN)
    async with (
        _serve(data_dir, tmp_path / "a.log", redis) as node_a,
        _serve(data_dir, tmp_path / "b.log", redis) as node_b,
    ):
        yield node_a, node_b, admin_token


async def test_a_token_revoked_on_one_process_is_refused_by_the_other(
    nodes: tuple[str, str, str],
) -> None:
    node_a, node_b, admin_token = nodes
    admin = {"Authorization": f"Bearer {admin_token}"}
    async with aiohttp.ClientSession() as session:
        body = {"name": "leaked", "role": "admin"}
        async with session.post(f"{node_a}/api/tokens", json=body, headers=admin) as response:
            assert response.status == 201
            made = await response.json()
        leaked = {"Authorization": f"Bearer {made['token']}"}

        async def on_b() -> int:
            async with session.get(f"{node_b}/api/me", headers=leaked) as response:
                return response.status

        assert await on_b() == 200  # B has seen and used the token
        async with _open_socket(session, node_b, leaked) as ws:
            async with session.delete(f"{node_a}/api/tokens/{made['id']}", headers=admin) as r:
                assert r.status == 204
            await _refused_within(on_b, 1.0)
            await _closed_within(ws, 1.0)
        # The review's exploit: the revoked admin token creates an admin user on B.
        backdoor = {
            "username": "backdoor",
            "password": "long enough now",
            "name": "B",
            "role": "admin",
        }
        async with session.post(f"{node_b}/api/users", json=backdoor, headers=leaked) as r:
            assert r.status == 401

        # A token made for an integration (the default) opens no socket on either process.
        async with session.post(f"{node_a}/api/tokens", json={"name": "shop"}, headers=admin) as r:
            shop = {"Authorization": f"Bearer {(await r.json())['token']}"}
        for node in (node_a, node_b):
            with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
                await session.ws_connect(f"{node.replace('http', 'ws')}/ws", headers=shop)
            assert refused.value.status == 403


async def test_a_session_signed_out_on_one_process_is_refused_by_the_other(
    nodes: tuple[str, str, str],
) -> None:
    node_a, node_b, _ = nodes
    jar = aiohttp.CookieJar(unsafe=True)
    async with aiohttp.ClientSession(cookie_jar=jar) as browser, aiohttp.ClientSession() as thief:
        login = {"username": "agent", "password": PASSWORD}
        async with browser.post(f"{node_a}/api/login", json=login) as response:
            assert response.status == 200
        value = jar.filter_cookies(URL(node_a))["inspect_session"].value
        cookie = {"inspect_session": value}

        async def on_b() -> int:
            async with thief.get(f"{node_b}/api/me", cookies=cookie) as response:
                return response.status

        assert await on_b() == 200
        stolen = {"Cookie": f"inspect_session={value}"}
        async with _open_socket(thief, node_b, stolen) as ws:
            async with browser.post(f"{node_a}/api/logout") as response:
                assert response.status == 204
            await _refused_within(on_b, 1.0)
            await _closed_within(ws, 1.0)


async def test_a_user_disabled_on_one_process_is_refused_by_the_other(
    nodes: tuple[str, str, str],
) -> None:
    node_a, node_b, admin_token = nodes
    admin = {"Authorization": f"Bearer {admin_token}"}
    jar = aiohttp.CookieJar(unsafe=True)
    async with aiohttp.ClientSession(cookie_jar=jar) as agent, aiohttp.ClientSession() as ops:
        login = {"username": "agent", "password": PASSWORD}
        async with agent.post(f"{node_b}/api/login", json=login) as response:
            assert response.status == 200
            agent_id = (await response.json())["user"]["id"]

        async def on_b() -> int:
            async with agent.get(f"{node_b}/api/cases") as response:
                return response.status

        assert await on_b() == 200
        async with _open_socket(agent, node_b) as ws:
            change = {"disabled": True}
            async with ops.patch(f"{node_a}/api/users/{agent_id}", json=change, headers=admin) as r:
                assert r.status == 200
            await _refused_within(on_b, 1.0)
            await _closed_within(ws, 1.0)
        async with agent.post(f"{node_b}/api/login", json=login) as response:
            assert response.status == 401
        # Nor can it open a socket again, on either process.
        assert await _staff_join(agent, node_a) == "error"
        assert await _staff_join(agent, node_b) == "error"
