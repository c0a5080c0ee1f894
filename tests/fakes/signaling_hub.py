"""A real ``signaling.Hub`` on a real aiohttp server, with the in-memory ports of
``signaling_ports`` and the memory bus: what a Hub test drives with real WebSocket clients
(``signal_client.Participant``), without the rest of the service."""

from __future__ import annotations

import itertools
from types import TracebackType
from typing import Any

import aiohttp
from aiohttp import web
from aiohttp.test_utils import TestServer

from signaling import Hub, HubConfig, Identity, MemoryBus

from .signal_client import Participant
from .signaling_ports import FakeAuth, FakeCases, FakeMedia, FakeSites

__all__ = ["HubUnderTest", "closed_with", "ice_servers_for", "in_call"]


def ice_servers_for(identity: Identity) -> list[dict[str, Any]]:
    """ICE servers that name whom they were made for, so a test can see they reached them."""
    return [{"urls": ["turn:turn.test:3478"], "username": identity.subject, "credential": "x"}]


class TickingClock:
    """Unix-like seconds that move one second per reading: every timestamp differs."""

    def __init__(self, start: float = 1_800_000_000.0) -> None:
        self._ticks = itertools.count()
        self._start = start

    def __call__(self) -> float:
        return self._start + next(self._ticks)


class HubUnderTest:
    """``async with HubUnderTest() as hub_test``: the Hub listening on 127.0.0.1 at ``/ws``."""

    def __init__(
        self,
        config: HubConfig | None = None,
        *,
        with_sites: bool = True,
        bus: MemoryBus | None = None,
    ) -> None:
        """``bus``: one shared with another ``HubUnderTest`` (two nodes of one cluster)."""
        self.clock = TickingClock()
        self.bus = bus or MemoryBus()
        self.auth = FakeAuth()
        self.cases = FakeCases(self.clock)
        self.media = FakeMedia()
        self.sites = FakeSites()
        self.hub = Hub(
            bus=self.bus,
            auth=self.auth,
            cases=self.cases,
            media=self.media,
            ice_servers=ice_servers_for,
            config=config or HubConfig(),
            clock=self.clock,
            sites=self.sites if with_sites else None,
        )
        app = web.Application()
        app.router.add_get("/ws", self.hub.handle)
        self._server = TestServer(app, host="127.0.0.1")
        self._session: aiohttp.ClientSession | None = None
        self._participants: list[Participant] = []

    @property
    def base_url(self) -> str:
        return f"http://{self._server.host}:{self._server.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://{self._server.host}:{self._server.port}/ws"

    @property
    def session(self) -> aiohttp.ClientSession:
        assert self._session is not None, "use HubUnderTest in an async with"
        return self._session

    async def __aenter__(self) -> HubUnderTest:
        await self.bus.start()
        await self._server.start_server()
        self._session = aiohttp.ClientSession()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.hub.aclose()
        for participant in self._participants:
            await participant.aclose()
        await self.session.close()
        await self._server.close()
        await self.bus.aclose()

    def client(
        self, *, token: str | None = None, headers: dict[str, str] | None = None
    ) -> Participant:
        """A socket client (not connected yet: ``join`` connects it), closed after the test."""
        participant = Participant(self.session, self.base_url, token=token, headers=headers)
        self._participants.append(participant)
        return participant

    async def customer(self, case_id: str, **join: Any) -> tuple[Participant, dict[str, Any]]:
        """A customer of ``case_id`` who joined; their client and the ``joined`` message."""
        customer = self.client(token=self.auth.join_token(case_id))
        return customer, await customer.join(**join)

    async def staff(
        self, user_id: str = "agent-1", **identity: Any
    ) -> tuple[Participant, dict[str, Any]]:
        """A staff member in the lobby; their client and the ``joined`` message."""
        staff = self.client(headers=self.auth.staff(user_id, **identity))
        return staff, await staff.join()


async def closed_with(participant: Participant) -> int:
    """The close code of ``participant``'s socket, once the server closed it."""
    message = await participant.expect("_closed")
    return int(message["code"])


async def in_call(hubt: HubUnderTest) -> tuple[str, Participant, Participant]:
    """A case whose customer and agent are both in its room: (case id, customer, agent)."""
    case_id = hubt.cases.create("Ada Customer").case_id
    agent, _ = await hubt.staff("agent-1")
    customer, _ = await hubt.customer(case_id)
    await agent.send({"type": "accept", "case_id": case_id})
    await agent.expect("accepted")
    await agent.expect("joined")
    await customer.expect("participant", where=lambda m: m["participant"]["role"] == "agent")
    return case_id, customer, agent
