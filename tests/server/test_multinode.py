"""Two nodes of one deployment in this process: two services sharing one Redis and one data
directory on different ports. A customer on node A and an agent on node B are in one call:
the media lives on the room's home node, signaling crosses nodes through Redis."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from signaling import Role
from tests.fakes.signal_client import Participant
from tests.redis_server import RedisProcess, redis_url  # noqa: F401 - the session's Redis
from tests.server._multinode import (
    PASSWORD,
    agent_participant,
    chat_both_ways,
    cluster,
    start_call,
)
from tests.signaling._redis_buses import eventually

pytestmark = pytest.mark.redis


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as client:
        yield client


async def close_all(*participants: Participant) -> None:
    for participant in participants:
        await participant.aclose()
        if participant.token is None:
            await participant.session.close()


async def test_a_call_across_two_nodes_with_video_chat_and_evidence(
    tmp_path: Path,
    redis_url: str,  # noqa: F811
    session: aiohttp.ClientSession,
) -> None:
    async with cluster(tmp_path, redis_url) as nodes:
        case_id, token = await nodes.new_case(session)
        customer = Participant(session, nodes.a.base_url, token=token)
        # Signed in through node A; node B has never seen this user when the socket opens.
        agent = await agent_participant(
            nodes.b.base_url, "agent", PASSWORD, login_url=nodes.a.base_url
        )
        try:
            frames = await start_call(customer, agent, case_id)
            decoded = await frames.more(10)
            assert decoded == sorted(decoded)
            # The media lives on one node, the customer's (the first offer came from there).
            router_a, router_b = nodes.a.state.router, nodes.b.state.router
            assert router_a is not None and router_b is not None
            assert await router_b.bus.room_home(case_id) == "node-a"
            assert (router_a.hosted_peers, router_b.hosted_peers) == (2, 0)
            assert router_b.remote_peers == 1
            await chat_both_ways(customer, agent, "hello")

            # Evidence asked for on node B is made on node A, where the media is; a capture
            # started on B is stopped through A (the HTTP port may be any node's).
            staff = agent.session
            base_b, base_a = nodes.b.base_url, nodes.a.base_url
            async with staff.post(f"{base_b}/api/cases/{case_id}/snapshots", json={}) as response:
                assert response.status == 201, await response.text()
                snapshot = (await response.json())["item"]
            async with staff.post(f"{base_b}/api/cases/{case_id}/captures", json={}) as response:
                assert response.status == 201, await response.text()
                capture_id = (await response.json())["capture"]["id"]
            await frames.more(15)
            async with staff.post(
                f"{base_a}/api/cases/{case_id}/captures/{capture_id}/stop"
            ) as response:
                assert response.status == 201, await response.text()
                clip = (await response.json())["item"]
            for item in (snapshot, clip):
                report = await nodes.a.state.archive.verify(item["item_id"])
                assert report.ok, report.problems
            assert {f["name"].split("-")[0] for f in clip["files"]} >= {"video"}

            # The customer leaves: the room's home is released with its last peer.
            await customer.aclose()
            await agent.send({"type": "leave"})
            await agent.expect("joined", where=lambda m: m["case"] is None)

            async def released() -> bool:
                return await router_b.bus.room_home(case_id) is None

            await eventually(released, within=10)
        finally:
            await close_all(customer, agent)


async def test_redis_restarts_during_a_call_media_flows_and_no_chat_is_lost(
    tmp_path: Path, session: aiohttp.ClientSession
) -> None:
    redis = RedisProcess()
    await asyncio.to_thread(redis.start)
    try:
        async with cluster(tmp_path, redis.url) as nodes:
            case_id, token = await nodes.new_case(session)
            customer = Participant(session, nodes.a.base_url, token=token)
            agent = await agent_participant(nodes.b.base_url, "agent", PASSWORD)
            try:
                frames = await start_call(customer, agent, case_id)
                await frames.more(5)
                seqs = await chat_both_ways(customer, agent, "before")

                await asyncio.to_thread(redis.stop)  # SIGKILL; it comes back empty
                # The call's media does not go through Redis: it keeps flowing.
                during = await frames.more(15)
                assert during == sorted(during)
                # A message sent while Redis is down is stored once Redis is back.
                await customer.chat("sent during the outage", client_id="outage-1")
                await asyncio.sleep(0.5)
                await asyncio.to_thread(redis.start)

                late = await agent.expect(
                    "chat", where=lambda m: m["client_id"] == "outage-1", wait_s=20
                )
                assert late["seq"] == seqs[-1] + 1
                # After recovery every acknowledged message reaches the other side, in order.
                after = await chat_both_ways(customer, agent, "after")
                assert after[0] == late["seq"] + 1
                await frames.more(10)
                # Nobody had to reconnect: the sockets resynchronised in place.
                for participant in (customer, agent):
                    assert not [m for m in participant.seen if m["type"] == "error"]
                    assert participant.ws is not None and not participant.ws.closed
            finally:
                await close_all(customer, agent)
    finally:
        await asyncio.to_thread(redis.stop)


async def test_a_node_publishing_an_ingested_camera_becomes_its_room_s_home(
    tmp_path: Path,
    redis_url: str,  # noqa: F811
) -> None:
    """A WHIP encoder or an RTSP pull publishes into the engine of the node it reaches: that
    node takes the camera room's home, so viewers' offers are routed to it."""
    async with cluster(tmp_path, redis_url) as nodes:
        router_a = nodes.a.state.router
        assert router_a is not None
        room = "camera:cam-7"
        # A viewer's offer came first, on node A: the room's home is A.
        assert await router_a.bus.claim_room_home(room) == "node-a"
        nodes.b.state.media.add_publisher(room, "rtsp-cam-7", "video", "track-1")

        async def moved() -> bool:
            return await router_a.bus.room_home(room) == "node-b"

        await eventually(moved, within=5)
        await nodes.b.state.media.remove_publisher("rtsp-cam-7")


async def test_object_level_refusals_hold_on_the_node_that_does_not_host_the_call(
    tmp_path: Path,
    redis_url: str,  # noqa: F811
    session: aiohttp.ClientSession,
) -> None:
    """The review's H1 and M1/M2 exploits, tried on the other node of the call: the room's
    media and sockets are on node A, another agent works through node B."""
    async with cluster(tmp_path, redis_url) as nodes:
        await nodes.a.state.accounts.create_user(
            "other", PASSWORD, name="Olga Other", role=Role.AGENT
        )
        case_id, token = await nodes.new_case(session)
        customer = Participant(session, nodes.a.base_url, token=token)
        agent = await agent_participant(nodes.a.base_url, "agent", PASSWORD)
        other = await agent_participant(nodes.b.base_url, "other", PASSWORD)
        second = Participant(session, nodes.b.base_url, token=token)
        try:
            frames = await start_call(customer, agent, case_id)
            await frames.more(5)
            base_b, staff = nodes.b.base_url, other.session
            tries = {
                "join-link": ("POST", f"/api/cases/{case_id}/join-link", {}),
                "decision": ("POST", f"/api/cases/{case_id}/decision", {"decision": "refund"}),
                "close": ("POST", f"/api/cases/{case_id}/close", {}),
                "capture": ("POST", f"/api/cases/{case_id}/captures", {}),
                "snapshot": ("POST", f"/api/cases/{case_id}/snapshots", {}),
                "assessment": ("GET", f"/api/cases/{case_id}/assessment", None),
            }
            for name, (method, path, body) in tries.items():
                # A join link is refused for anyone once the customer is in the call (409),
                # before whose case it is matters; the rest: not this agent's case (403).
                expected = 409 if name == "join-link" else 403
                async with staff.request(method, f"{base_b}{path}", json=body) as response:
                    assert response.status == expected, (name, await response.text())
            # The other agent cannot join the call's room from node B...
            await other.join()
            await other.send({"type": "join", "case_id": case_id})
            refused = await other.expect("error")
            assert refused["code"] in ("forbidden", "already_joined"), refused
            # ... and the customer's link opens no second socket there (presence is shared).
            await second.connect()
            await second.send({"type": "join", "token": token})
            refused = await second.expect("error")
            assert refused["code"] == "forbidden" and "already connected" in refused["message"]
            # The call goes on.
            assert len(await frames.more(5)) == 5
        finally:
            await close_all(customer, agent, other, second)
