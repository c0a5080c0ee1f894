"""Nodes on PostgreSQL (``INSPECT_DATABASE_URL``): two nodes share every record through it
(no SQLite file is made), and a PostgreSQL restart in the middle of a call keeps the media
flowing, reports the writes it refused (a decision is whole or absent) and is recovered from
by the nodes themselves."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from server.app import RunningService
from tests.fakes.signal_client import Participant
from tests.postgres_server import (  # noqa: F401 - fixtures: the session's PostgreSQL
    create_schema,
    drop_schemas,
    postgres_url,
    start_postgres,
)
from tests.redis_server import redis_url  # noqa: F401 - the session's Redis
from tests.server._multinode import PASSWORD, Cluster, agent_participant, cluster, start_call
from tests.signaling._redis_buses import eventually

pytestmark = pytest.mark.redis

FACTS = {
    "cosmetic": "light_wear",
    "functional": "works",
    "packaging": "damaged",
    "accessories_complete": True,
}


@contextlib.asynccontextmanager
async def nodes_on(tmp_path: Path, database_url: str, redis: str) -> AsyncIterator[Cluster]:
    """Two nodes whose records are in a fresh schema of ``database_url`` (the evidence media
    and keys on one data volume, as a deployment mounts it)."""
    schema = await create_schema(database_url)
    try:
        async with cluster(
            tmp_path, redis, database_url=database_url, database_schema=schema, captions=False
        ) as nodes:
            yield nodes
    finally:
        with contextlib.suppress(OSError):
            await drop_schemas(database_url, [schema])


async def _health(session: aiohttp.ClientSession, node: RunningService) -> tuple[int, Any]:
    async with session.get(f"{node.base_url}/healthz") as response:
        return response.status, await response.json()


async def test_two_nodes_share_every_record_through_postgresql(
    tmp_path: Path,
    postgres_url: str,  # noqa: F811
    redis_url: str,  # noqa: F811
) -> None:
    async with (
        aiohttp.ClientSession() as session,
        nodes_on(tmp_path, postgres_url, redis_url) as nodes,
    ):
        case_id, token = await nodes.new_case(session)
        customer = Participant(session, nodes.a.base_url, token=token)
        # Signed in through node A, working on node B: the session is in the database.
        agent = await agent_participant(
            nodes.b.base_url, "agent", PASSWORD, login_url=nodes.a.base_url
        )
        try:
            frames = await start_call(customer, agent, case_id)
            assert (await frames.more(5)) == sorted(frames.numbers[-5:])
            async with agent.session.post(
                f"{nodes.b.base_url}/api/cases/{case_id}/snapshots", json={}
            ) as response:
                assert response.status == 201, await response.text()
                item = (await response.json())["item"]
            async with agent.session.post(
                f"{nodes.b.base_url}/api/cases/{case_id}/decision",
                json={"decision": "refund", "facts": FACTS},
            ) as response:
                assert response.status == 200, await response.text()
            # Node A reads what node B wrote, the evidence made on A verifies on B.
            case = await nodes.case(session, nodes.a, case_id)
            assert case["state"] == "decided" and case["decision"] == "refund"
            report = await nodes.b.state.archive.verify(item["item_id"])
            assert report.ok, report.problems
            for node in (nodes.a, nodes.b):
                status, health = await _health(session, node)
                assert (status, health["db"]) == (200, "ok")
        finally:
            await customer.aclose()
            await agent.aclose()
            await agent.session.close()
    # Nothing went to SQLite.
    assert not (tmp_path / "var" / "inspect.db").exists()
    assert not (tmp_path / "var" / "evidence" / "evidence.db").exists()


async def test_a_postgresql_restart_mid_call_keeps_the_media_and_loses_no_decision(
    tmp_path: Path,
    redis_url: str,  # noqa: F811
) -> None:
    server = await asyncio.to_thread(start_postgres)
    try:
        async with (
            aiohttp.ClientSession() as session,
            nodes_on(tmp_path, server.url, redis_url) as nodes,
        ):
            case_id, token = await nodes.new_case(session)
            customer = Participant(session, nodes.a.base_url, token=token)
            agent = await agent_participant(nodes.b.base_url, "agent", PASSWORD)
            decision = f"{nodes.b.base_url}/api/cases/{case_id}/decision"
            try:
                frames = await start_call(customer, agent, case_id)
                await frames.more(5)

                await asyncio.to_thread(server.halt)
                # The call's media does not touch the database: it keeps flowing.
                during = await frames.more(15)
                assert during == sorted(during)
                status, health = await _health(session, nodes.a)
                assert (status, health["db"]) == (503, "error")
                # A decision while the database is away is refused, clearly, after retries.
                body = {"decision": "refund", "facts": FACTS}
                async with agent.session.post(decision, json=body) as response:
                    assert response.status == 503, await response.text()
                    refused = await response.json()
                    assert response.headers["Retry-After"]
                assert "cannot be reached" in refused["error"]["message"]

                await asyncio.to_thread(server.start)

                async def healthy() -> bool:
                    return all([(await _health(session, n))[0] == 200 for n in (nodes.a, nodes.b)])

                await eventually(healthy, within=15)
                # Not half stored: the case is still in the call, and the decision goes in now.
                case = await nodes.case(session, nodes.a, case_id)
                assert case["state"] == "in_call" and case["decision"] is None
                async with agent.session.post(decision, json=body) as response:
                    assert response.status == 200, await response.text()
                case = await nodes.case(session, nodes.b, case_id)
                assert case["state"] == "decided"
                await frames.more(5)
            finally:
                await customer.aclose()
                await agent.aclose()
                await agent.session.close()
    finally:
        await asyncio.to_thread(server.stop)
