"""Fixtures shared by the suites: the whole service running on loopback."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import pytest

from server.app import AppState, running_service
from server.settings import Settings
from signaling import Role

AGENT_PASSWORD = "agent-pass-123"
#: A secret key strong enough for the start-up check (64 hex characters, made once per run).
TEST_SECRET_KEY = secrets.token_hex(32)


@dataclass(frozen=True, slots=True)
class LiveService:
    base_url: str
    state: AppState
    admin_token: str
    agent_username: str = "agent"
    agent_password: str = AGENT_PASSWORD

    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.admin_token}"}

    async def create_case(
        self, session: aiohttp.ClientSession, kind: str = "return", **fields: str
    ) -> dict[str, object]:
        body = {"kind": kind, "customer_name": "Dana Customer", "order_id": "ORD-1", **fields}
        async with session.post(
            f"{self.base_url}/api/cases", json=body, headers=self.headers()
        ) as response:
            assert response.status == 201, await response.text()
            document: dict[str, object] = await response.json()
            return document

    async def login(self, session: aiohttp.ClientSession, username: str, password: str) -> None:
        async with session.post(
            f"{self.base_url}/api/login", json={"username": username, "password": password}
        ) as response:
            assert response.status == 200, await response.text()


@pytest.fixture
def service_settings(tmp_path: Path) -> Settings:
    # Grading has its own tests (tests/server/test_grading_flow.py); elsewhere the model is off.
    return Settings(
        data_dir=tmp_path / "var",
        port=0,
        shutdown_timeout_s=2.0,
        grading=False,
        outbound_allow=("127.0.0.1",),  # the fake RTSP cameras listen on loopback
    )


@pytest.fixture
async def live_service(service_settings: Settings) -> AsyncIterator[LiveService]:
    """The full service (memory bus, SQLite under tmp_path) on 127.0.0.1 and a free port, with
    an agent account and an admin API token."""
    async with running_service(service_settings) as running:
        state = running.state
        await state.accounts.create_user(
            "agent", AGENT_PASSWORD, name="Alex Agent", role=Role.AGENT
        )
        await state.accounts.create_user(
            "agent2", AGENT_PASSWORD, name="Sam Second", role=Role.AGENT
        )
        await state.accounts.create_user(
            "reviewer", AGENT_PASSWORD, name="Riley Reviewer", role=Role.REVIEWER
        )
        token, _ = await state.accounts.create_api_token("tests", role=Role.ADMIN)
        yield LiveService(running.base_url, state, token)
