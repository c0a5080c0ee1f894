"""Fixtures for the server tests: real SQLite files under tmp_path, the real API app on a real
aiohttp test server, one client (own cookie jar) per signed-in user."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from server.http import Edge, setup_http
from server.settings import Settings
from server.wiring.services import Services, open_services
from signaling.errors import SignalingError, SignalingErrorCode
from signaling.messages import Role
from signaling.ports import CaseSummary, Identity

PASSWORD = "correct horse battery"


class FakeCallControl:
    """Stands in for the call hub: accepts a waiting case through the case service, or fails
    with the code a test sets."""

    def __init__(self, services: Services) -> None:
        self.services = services
        self.fail_with: SignalingErrorCode | None = None
        self.accepted: list[tuple[str, str]] = []

    async def accept_case(self, case_id: str, agent: Identity) -> CaseSummary:
        if self.fail_with is not None:
            raise SignalingError(self.fail_with, "fake hub says no")
        summary = await self.services.cases.get(case_id)
        if summary is None:
            raise SignalingError(SignalingErrorCode.NOT_FOUND, "no such case")
        if summary.state != "waiting":
            raise SignalingError(SignalingErrorCode.NOT_WAITING, "not waiting")
        self.accepted.append((case_id, agent.subject))
        return await self.services.cases.call_started(case_id, agent)


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(
        data_dir=tmp_path / "var",
        secret_key="test-secret-key-0123456789abcdef",
        public_url="http://inspect.test",
    )


@pytest.fixture
async def services(settings: Settings) -> AsyncIterator[Services]:
    opened = await open_services(settings, start_webhooks=False)
    yield opened
    await opened.aclose()


@dataclass
class Api:
    """The app under test and a client per role (``anon`` is signed out)."""

    server: TestServer
    services: Services
    settings: Settings
    calls: FakeCallControl
    make_client: Callable[[TestServer], Awaitable[TestClient[Any, Any]]]
    users: dict[str, Any] = field(default_factory=dict)
    clients: dict[str, TestClient[Any, Any]] = field(default_factory=dict)

    async def client(self, username: str | None = None) -> TestClient[Any, Any]:
        """A client with its own cookie jar, signed in as ``username`` (through the API)."""
        key = username or "anon"
        if key not in self.clients:
            client = await self.make_client(self.server)
            if username is not None:
                response = await client.post(
                    "/api/login", json={"username": username, "password": PASSWORD}
                )
                assert response.status == 200, await response.text()
            self.clients[key] = client
        return self.clients[key]

    @property
    def admin(self) -> Awaitable[TestClient[Any, Any]]:
        return self.client("ada")

    @property
    def agent(self) -> Awaitable[TestClient[Any, Any]]:
        return self.client("alan")

    @property
    def reviewer(self) -> Awaitable[TestClient[Any, Any]]:
        return self.client("rita")

    @property
    def anon(self) -> Awaitable[TestClient[Any, Any]]:
        return self.client(None)


async def serve_api(
    services: Services,
    settings: Settings,
    aiohttp_server: Any,
    aiohttp_client: Any,
    users: Iterable[tuple[str, Role]] = (
        ("ada", Role.ADMIN),
        ("alan", Role.AGENT),
        ("rita", Role.REVIEWER),
    ),
    **edge: Any,
) -> Api:
    """The REST edge alone (``edge``: the optional parts of :class:`Edge`, e.g. ``grading``),
    with a fake call control and one account per ``(username, role)``."""
    app = web.Application()
    calls = FakeCallControl(services)
    setup_http(
        app,
        Edge(
            settings=settings,
            db=services.db,
            cases=services.cases,
            accounts=services.accounts,
            auth=services.auth,
            webhooks=services.webhooks,
            metrics=services.metrics,
            calls=calls,
            **{"returns": services.returns, **edge},
        ),
    )
    result = Api(
        server=await aiohttp_server(app),
        services=services,
        settings=settings,
        calls=calls,
        make_client=aiohttp_client,
    )
    for username, role in users:
        result.users[username] = await services.accounts.create_user(
            username, PASSWORD, username.title(), role
        )
    return result


@pytest.fixture
async def api(
    services: Services,
    settings: Settings,
    aiohttp_server: Any,
    aiohttp_client: Any,
) -> Api:
    return await serve_api(services, settings, aiohttp_server, aiohttp_client)
