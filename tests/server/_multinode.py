"""What the multi-node tests share: scripted calls between participants on different nodes,
frame numbers decoded at the agent, chat checked in both directions; ``inspectd`` processes
started and waited for."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sys
import uuid
from collections.abc import AsyncIterator, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import redis.asyncio as aioredis

from server.app import RunningService, running_service
from server.settings import Settings
from signaling import Role
from tests.fakes import NumberedVideoTrack, ToneAudioTrack, read_frame_number
from tests.fakes.signal_client import Participant

__all__ = [
    "INSPECTD",
    "Frames",
    "agent_participant",
    "chat_both_ways",
    "node_of",
    "process",
    "start_call",
    "unique",
]

_counter = iter(range(1, 1_000_000))


def unique(prefix: str) -> str:
    return f"{prefix}{next(_counter)}"


class Frames:
    """Frame numbers drawn by the customer's camera, decoded at a participant."""

    def __init__(self, participant: Participant) -> None:
        self.numbers: list[int] = []
        self._arrived = asyncio.Event()
        participant.on_video_frame = self._frame

    def _frame(self, frame: Any) -> None:
        number = read_frame_number(frame)
        if number is not None:
            self.numbers.append(number)
            self._arrived.set()

    async def more(self, count: int = 10, within: float = 15.0) -> list[int]:
        """Wait for ``count`` more decoded frames; returns them (in arrival order)."""
        start = len(self.numbers)
        try:
            async with asyncio.timeout(within):
                while len(self.numbers) < start + count:
                    self._arrived.clear()
                    await self._arrived.wait()
        except TimeoutError:
            raise AssertionError(
                f"only {len(self.numbers) - start} of {count} frames in {within}s "
                f"(last {self.numbers[-3:]})"
            ) from None
        return self.numbers[start:]


async def agent_participant(
    base_url: str, username: str, password: str, *, login_url: str | None = None
) -> Participant:
    """A staff participant on ``base_url`` (its own cookie jar), signed in on ``login_url``
    (default the same node)."""
    client = aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True))
    async with client.post(
        f"{login_url or base_url}/api/login", json={"username": username, "password": password}
    ) as response:
        assert response.status == 200, await response.text()
    return Participant(client, base_url)


async def start_call(customer: Participant, agent: Participant, case_id: str) -> Frames:
    """The customer joins and publishes a numbered camera and a tone; the agent (in the lobby)
    accepts and publishes a tone. Returns the frames the agent decodes."""
    await customer.join()
    await agent.join()
    await agent.expect("queue", where=lambda m: case_id in [c["case_id"] for c in m["cases"]])
    await customer.publish(NumberedVideoTrack(), ToneAudioTrack())
    frames = Frames(agent)
    await agent.send({"type": "accept", "case_id": case_id})
    await agent.expect("accepted")
    await agent.expect("joined")
    await agent.publish(ToneAudioTrack(frequency=660.0), receive_video=True)
    return frames


def _texts(messages: list[dict[str, Any]]) -> Iterator[str]:
    return (str(message["text"]) for message in messages)


async def chat_both_ways(
    customer: Participant, agent: Participant, tag: str, count: int = 3
) -> list[int]:
    """Each side sends ``count`` messages; each must reach the other side once, in order.
    Returns the seqs, which must rise without gaps."""
    seqs: list[int] = []
    for sender, receiver, who in ((customer, agent, "c"), (agent, customer, "a")):
        sent = [f"{tag} {who}{i}" for i in range(count)]
        for i, text in enumerate(sent):
            await sender.chat(text, client_id=f"{tag}-{who}{i}")
        got = [
            await receiver.expect("chat", where=lambda m, t=text: m["text"] == t) for text in sent
        ]
        assert list(_texts(got)) == sent
        seqs += [int(message["seq"]) for message in got]
    assert seqs == list(range(seqs[0], seqs[0] + len(seqs))), seqs
    return seqs


#: The service's command line, as the processes of a deployment run it.
INSPECTD = [sys.executable, "-m", "server.cli"]


@contextlib.asynccontextmanager
async def process(
    args: list[str], environ: Mapping[str, str], log: Path
) -> AsyncIterator[asyncio.subprocess.Process]:
    """An ``inspectd`` process logging to ``log``; stopped (SIGTERM, then SIGKILL) after."""
    with log.open("ab") as output:
        child = await asyncio.create_subprocess_exec(
            *INSPECTD, *args, env=dict(environ), stdout=output, stderr=output
        )
    try:
        yield child
    finally:
        if child.returncode is None:
            child.send_signal(signal.SIGTERM)
            try:
                async with asyncio.timeout(20):
                    await child.wait()
            except TimeoutError:
                child.kill()
                await child.wait()


async def node_of(base_url: str, log: Path, within: float = 30.0) -> str:
    """Wait until ``base_url`` answers ``/healthz``; the node that answered."""
    connector = aiohttp.TCPConnector(force_close=True)  # a new connection each time
    async with aiohttp.ClientSession(connector=connector) as session:
        try:
            async with asyncio.timeout(within):
                while True:
                    with contextlib.suppress(aiohttp.ClientError):
                        async with session.get(f"{base_url}/healthz") as response:
                            if response.status == 200:
                                return str((await response.json())["node"])
                    await asyncio.sleep(0.2)
        except TimeoutError:
            text = await asyncio.to_thread(log.read_text)
            raise AssertionError(f"{base_url} did not start:\n{text[-3000:]}") from None


PASSWORD = "agent-pass-123"


@dataclass(slots=True)
class Cluster:
    a: RunningService
    b: RunningService
    admin_token: str

    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.admin_token}"}

    async def new_case(self, session: aiohttp.ClientSession) -> tuple[str, str]:
        body = {"kind": "return", "customer_name": "Dana Customer", "order_id": "ORD-7"}
        async with session.post(
            f"{self.a.base_url}/api/cases", json=body, headers=self.headers()
        ) as response:
            assert response.status == 201, await response.text()
            created = await response.json()
        return str(created["case"]["id"]), str(created["join_token"])

    async def case(self, session: aiohttp.ClientSession, node: RunningService, case_id: str) -> Any:
        async with session.get(
            f"{node.base_url}/api/cases/{case_id}", headers=self.headers()
        ) as response:
            assert response.status == 200, await response.text()
            return (await response.json())["case"]


@contextlib.asynccontextmanager
async def cluster(tmp_path: Path, url: str, **settings: Any) -> AsyncIterator[Cluster]:
    """Two nodes (``node-a``, ``node-b``) on the Redis at ``url`` with one data directory and
    ``settings`` besides (a database URL, say), an agent user and an admin API token."""
    shared: dict[str, Any] = {
        "data_dir": tmp_path / "var",
        "port": 0,
        "shutdown_timeout_s": 2.0,
        "grading": False,
        "redis_url": url,
        "redis_prefix": f"inspect-test:{uuid.uuid4().hex[:12]}:",
        "node_heartbeat_s": 0.5,
        **settings,
    }
    try:
        async with (
            running_service(Settings(**shared, node_id="node-a")) as a,
            running_service(Settings(**shared, node_id="node-b")) as b,
        ):
            await a.state.accounts.create_user(
                "agent", PASSWORD, name="Alex Agent", role=Role.AGENT
            )
            token, _ = await a.state.accounts.create_api_token("tests", role=Role.ADMIN)
            yield Cluster(a, b, token)
    finally:
        with contextlib.suppress(OSError, aioredis.RedisError):
            client = aioredis.from_url(url)
            try:
                keys = [key async for key in client.scan_iter(match=f"{shared['redis_prefix']}*")]
                if keys:
                    await client.delete(*keys)
            finally:
                await client.aclose()
