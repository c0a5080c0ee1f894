"""Nodes as real ``inspectd serve`` processes sharing Redis and a data directory: a node killed
in the middle of a call (its clients rejoin the surviving node, which takes the call over), and
``serve --workers 2`` (two workers behind one port, each its own node)."""

from __future__ import annotations

import asyncio
import os
import random
import re
import signal
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import pytest
import redis.asyncio as aioredis

from server.app import free_port, open_state
from server.settings import Settings
from signaling import Role
from tests.fakes import NumberedVideoTrack, ToneAudioTrack
from tests.fakes.signal_client import Participant
from tests.redis_server import redis_url  # noqa: F401 - the session's Redis
from tests.server._multinode import (
    INSPECTD,
    Frames,
    agent_participant,
    chat_both_ways,
    node_of,
    process,
    start_call,
)

pytestmark = pytest.mark.redis

PASSWORD = "agent-pass-123"


@dataclass(slots=True)
class Deployment:
    """What the nodes share (data directory, Redis and its key prefix), and the accounts."""

    data_dir: Path
    redis_url: str
    prefix: str
    admin_token: str = ""

    def environ(self, port: int, **extra: str) -> dict[str, str]:
        return {
            **os.environ,
            "INSPECT_DATA_DIR": str(self.data_dir),
            "INSPECT_PORT": str(port),
            "INSPECT_REDIS_URL": self.redis_url,
            "INSPECT_REDIS_PREFIX": self.prefix,
            "INSPECT_NODE_HEARTBEAT_S": "0.5",
            "INSPECT_GRADING": "false",
            "INSPECT_SHUTDOWN_TIMEOUT_S": "2",
            **extra,
        }

    async def home_of(self, room: str) -> str | None:
        client = aioredis.from_url(self.redis_url, decode_responses=True)
        try:
            home = await client.get(f"{self.prefix}room:{room}:home")
        finally:
            await client.aclose()
        return None if home is None else str(home)


@pytest.fixture
async def deployment(
    tmp_path: Path,
    redis_url: str,  # noqa: F811
) -> AsyncIterator[Deployment]:
    shared = Deployment(tmp_path / "var", redis_url, f"inspect-test:{uuid.uuid4().hex[:12]}:")
    async with open_state(Settings(data_dir=shared.data_dir)) as services:
        await services.accounts.create_user("agent", PASSWORD, name="Alex Agent", role=Role.AGENT)
        shared.admin_token, _ = await services.accounts.create_api_token("tests", role=Role.ADMIN)
    yield shared
    client = aioredis.from_url(redis_url)
    try:
        keys = [key async for key in client.scan_iter(match=f"{shared.prefix}*", count=1000)]
        if keys:
            await client.delete(*keys)
    finally:
        await client.aclose()


async def new_case(base_url: str, token: str) -> tuple[str, str]:
    body = {"kind": "return", "customer_name": "Dana Customer", "order_id": "ORD-9"}
    async with (
        aiohttp.ClientSession() as session,
        session.post(
            f"{base_url}/api/cases", json=body, headers={"Authorization": f"Bearer {token}"}
        ) as response,
    ):
        assert response.status == 201, await response.text()
        created = await response.json()
    return str(created["case"]["id"]), str(created["join_token"])


async def test_a_killed_node_s_call_resumes_on_the_surviving_node(
    deployment: Deployment, tmp_path: Path
) -> None:
    port_a, port_b = free_port(), free_port()
    url_a, url_b = f"http://127.0.0.1:{port_a}", f"http://127.0.0.1:{port_b}"
    log_a, log_b = tmp_path / "node-a.log", tmp_path / "node-b.log"
    async with (
        process(["serve"], deployment.environ(port_a), log_a) as node_a,
        process(["serve"], deployment.environ(port_b), log_b),
        aiohttp.ClientSession() as session,
    ):
        node_a_id, node_b_id = await node_of(url_a, log_a), await node_of(url_b, log_b)
        assert node_a_id != node_b_id
        case_id, token = await new_case(url_a, deployment.admin_token)
        customer = Participant(session, url_a, token=token)
        agent = await agent_participant(url_b, "agent", PASSWORD)
        participants = [customer, agent]
        try:
            frames = await start_call(customer, agent, case_id)
            await frames.more(10)
            seqs = await chat_both_ways(customer, agent, "before")
            assert await deployment.home_of(case_id) == node_a_id

            node_a.kill()  # the call's home, and the customer's node
            await customer.expect("_closed")
            # The agent's node notices that the home is gone and says so.
            lost = await agent.expect("error", where=lambda m: m["code"] == "media_lost", wait_s=15)
            assert "reconnect" in lost["message"]
            closed = await agent.expect("_closed")
            assert closed["code"] == 4012

            # Both rejoin the surviving node, resume the chat and offer again: it takes over.
            customer = Participant(session, url_b, token=token)
            rejoined = Participant(agent.session, url_b)
            participants += [customer, rejoined]
            joined = await customer.join(resume_from=seqs[-1])
            assert joined["chat"] == []
            await customer.publish(NumberedVideoTrack(), ToneAudioTrack())
            frames = Frames(rejoined)
            again = await rejoined.join(case_id=case_id, resume_from=seqs[-1])
            assert again["case"]["state"] == "in_call"
            await rejoined.publish(ToneAudioTrack(frequency=660.0), receive_video=True)
            decoded = await frames.more(10)
            assert decoded == sorted(decoded)
            assert await deployment.home_of(case_id) == node_b_id
            after = await chat_both_ways(customer, rejoined, "after")
            assert after[0] == seqs[-1] + 1
        finally:
            for participant in participants:
                await participant.aclose()
            await agent.session.close()


async def test_serve_workers_share_one_port_and_carry_a_call(
    deployment: Deployment, tmp_path: Path
) -> None:
    port = free_port()
    base_url = f"http://127.0.0.1:{port}"
    low = random.randrange(20_000, 60_000, 100)
    environ = deployment.environ(port, INSPECT_MEDIA_PORTS=f"{low}-{low + 99}")
    log = tmp_path / "workers.log"
    async with (
        process(["serve", "--workers", "2"], environ, log) as supervisor,
        aiohttp.ClientSession() as session,
    ):
        # Both workers answer on the one port, each as its own node.
        seen: set[str] = set()
        async with asyncio.timeout(30):
            while len(seen) < 2:
                seen.add(await node_of(base_url, log))
        case_id, token = await new_case(base_url, deployment.admin_token)
        customer = Participant(session, base_url, token=token)
        agent = await agent_participant(base_url, "agent", PASSWORD)
        try:
            frames = await start_call(customer, agent, case_id)
            await frames.more(10)
            await chat_both_ways(customer, agent, "hi")
            # The server's candidates are in one worker's half of the media port range.
            answer = next(m for m in customer.seen if m["type"] == "answer")
            ports = {
                int(p) for p in re.findall(r"a=candidate:\S+ 1 udp \d+ \S+ (\d+)", answer["sdp"])
            }
            assert ports and (
                ports <= set(range(low, low + 50)) or ports <= set(range(low + 50, low + 100))
            )
        finally:
            await customer.aclose()
            await agent.aclose()
            await agent.session.close()

        # A worker that dies is started again (a new node id), the other one keeps serving.
        victim = next(iter(seen))
        os.kill(int(victim.rsplit("-", 2)[-2]), signal.SIGKILL)
        async with asyncio.timeout(30):
            while True:
                node = await node_of(base_url, log)
                if node not in seen:
                    break
        assert "restarting in" in await asyncio.to_thread(log.read_text)

        supervisor.send_signal(signal.SIGTERM)
        async with asyncio.timeout(20):
            assert await supervisor.wait() == 0
        assert "all workers stopped" in await asyncio.to_thread(log.read_text)


async def test_several_workers_need_redis(tmp_path: Path) -> None:
    environ = {**os.environ, "INSPECT_DATA_DIR": str(tmp_path), "INSPECT_PORT": str(free_port())}
    environ.pop("INSPECT_REDIS_URL", None)
    child = await asyncio.create_subprocess_exec(
        *INSPECTD, "serve", "--workers", "2", env=environ, stderr=asyncio.subprocess.PIPE
    )
    _, stderr = await child.communicate()
    assert child.returncode == 2
    assert b"INSPECT_REDIS_URL" in stderr and b"--workers 2" in stderr
