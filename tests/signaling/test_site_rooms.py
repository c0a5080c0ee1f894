"""Site rooms through the whole service: a phone camera (an aiortc client with a camera token)
publishes, staff watch it from the site's room with one peer per camera, talk back to it, and
save evidence from it. Real sockets, real aiortc peers over loopback, real SQLite."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from server.sites import CameraKind, NewCamera
from tests.conftest import LiveService
from tests.fakes import (
    NumberedVideoTrack,
    ToneAudioTrack,
    audio_level,
    client_offer,
    client_pc,
)
from tests.fakes.signal_client import Participant
from tests.fakes.site_viewer import Watch


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as client:
        yield client


async def staff(live: LiveService, username: str) -> Participant:
    client = aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True))
    await live.login(client, username, live.agent_password)
    return Participant(client, live.base_url)


async def close(*participants: Participant) -> None:
    for participant in participants:
        await participant.aclose()
        if participant.token is None and participant.headers == {}:
            await participant.session.close()


async def phone_camera(live: LiveService, site_name: str = "Valencia DC") -> tuple[Any, Any, str]:
    sites = live.state.sites
    site = await sites.create_site(site_name, actor="test")
    camera = await sites.create_camera(
        site.id, NewCamera(name="Returns bench", kind=CameraKind.PHONE), actor="test"
    )
    issued = await sites.issue_token(camera.id, actor="test")
    return site, camera, issued.token


async def _heard(participant: Participant) -> None:
    """Returns once ``participant`` receives audio above silence."""
    audible = asyncio.Event()

    def on_frame(frame: Any) -> None:
        if audio_level(frame) > 0.02:
            audible.set()

    participant.on_audio_frame = on_frame
    await audible.wait()


async def test_staff_watch_a_phone_camera_talk_back_and_save_evidence(
    live_service: LiveService, session: aiohttp.ClientSession
) -> None:
    site, camera, token = await phone_camera(live_service)
    phone = Participant(session, live_service.base_url)
    agent = await staff(live_service, "agent")
    reviewer = await staff(live_service, "reviewer")
    watches: list[Watch] = []
    try:
        joined = await phone.join(camera_token=token)
        assert joined["role"] == "camera" and joined["camera_id"] == camera.id
        assert joined["camera"]["name"] == "Returns bench"
        assert joined["site"] == {"site_id": site.id, "name": "Valencia DC"}
        await phone.publish(NumberedVideoTrack(), ToneAudioTrack(frequency=440.0))

        in_site = await agent.join(site_id=site.id)
        assert in_site["case"] is None and in_site["site"]["name"] == "Valencia DC"
        [listed] = in_site["site"]["cameras"]
        assert listed["id"] == camera.id and listed["status"]["online"] is True
        assert listed["status"]["source"] == "phone"
        assert [p["role"] for p in in_site["participants"]] == ["camera"]

        # The agent watches and talks; the reviewer watches too, at the same time.
        talk = Watch(agent, camera.id, talk=ToneAudioTrack(frequency=880.0))
        await reviewer.join(site_id=site.id)
        quiet = Watch(reviewer, camera.id)
        watches += [talk, quiet]
        await talk.start()
        await quiet.start()
        async with asyncio.timeout(20):
            for watch in watches:
                numbers = await watch.frames(8)
                assert numbers == sorted(numbers) and len(set(numbers)) == len(numbers)
            await talk.readers["audio"].wait_until(lambda r: r.audible >= 5)
            await _heard(phone)  # the viewer's voice reaches the phone

        # The status says what arrives (the media engine's per-track stats).
        headers = live_service.headers()
        base = live_service.base_url
        async with asyncio.timeout(10):
            while True:
                async with session.get(f"{base}/api/cameras/{camera.id}", headers=headers) as r:
                    status = (await r.json())["camera"]["status"]
                if status["live"]:
                    break
                await asyncio.sleep(0.2)
        assert status["online"] is True and status["stats_available"] is True
        assert (status["codec"], status["width"], status["height"]) == ("vp8", 640, 480)
        assert status["fps"] and status["fps"] > 5

        # Evidence from the camera: filed under the site (no case), camera named in the record.
        async with session.post(
            f"{base}/api/cameras/{camera.id}/snapshots",
            json={"tracking_number": "1Z999", "note": "pallet 4"},
            headers=headers,
        ) as r:
            assert r.status == 201, await r.text()
            snapshot = (await r.json())["item"]
        record = snapshot["record"]
        assert record["case_id"] == f"site:{site.id}" and record["use"] == "walkthrough"
        assert record["tracking_number"] == "1Z999" and record["kind"] == "snapshot"
        assert "Returns bench" in record["note"] and camera.id in record["note"]
        assert record["note"].endswith("pallet 4")
        assert snapshot["camera_id"] == camera.id and snapshot["site_id"] == site.id

        async with session.post(
            f"{base}/api/cameras/{camera.id}/captures", json={"stage": "packing"}, headers=headers
        ) as r:
            assert r.status == 201, await r.text()
            capture = (await r.json())["capture"]
        assert capture["camera_id"] == camera.id
        await talk.frames(15)
        async with session.post(
            f"{base}/api/cameras/{camera.id}/captures/{capture['id']}/stop", headers=headers
        ) as r:
            assert r.status == 201, await r.text()
            clip = (await r.json())["item"]
        assert clip["record"]["logistics_stage"] == "packing"
        names = [f["name"] for f in clip["files"]]
        assert names == ["video-1.webm"], f"the camera only, not the talk-back: {names}"

        async with session.get(f"{base}/api/sites/{site.id}/evidence", headers=headers) as r:
            listed_items = (await r.json())["items"]
        assert {i["item_id"] for i in listed_items} == {snapshot["item_id"], clip["item_id"]}
        async with session.get(
            f"{base}/api/evidence", params={"case_id": f"site:{site.id}"}, headers=headers
        ) as r:
            found = (await r.json())["items"]
        assert {i["item_id"] for i in found} == {snapshot["item_id"], clip["item_id"]}
        async with session.get(
            f"{base}/api/evidence", params={"tracking_number": "1Z999"}, headers=headers
        ) as r:
            assert [i["item_id"] for i in (await r.json())["items"]] == [snapshot["item_id"]]

        # The phone goes away: the site's room is told, the camera shows offline.
        await phone.aclose()
        event = await agent.expect(
            "camera", where=lambda m: m["camera_id"] == camera.id and not m["status"]["online"]
        )
        assert event["status"]["last_seen_at"]
    finally:
        for watch in watches:
            await watch.aclose()
        await close(phone, agent, reviewer)


async def test_camera_tokens_on_the_socket(
    live_service: LiveService, session: aiohttp.ClientSession
) -> None:
    site, camera, token = await phone_camera(live_service)
    sites = live_service.state.sites
    made_up = Participant(session, live_service.base_url)
    await made_up.connect()
    await made_up.send({"type": "join", "camera_token": "cam_not-a-real-token"})
    error = await made_up.expect("error")
    assert error["code"] == "unauthorized" and error["ref"] == "join"
    assert (await made_up.expect("_closed"))["code"] == 4401

    whip = await sites.create_camera(
        site.id, NewCamera(name="Encoder", kind=CameraKind.WHIP), actor="test"
    )
    whip_token = (await sites.issue_token(whip.id, actor="test")).token
    wrong = Participant(session, live_service.base_url)
    await wrong.connect()
    await wrong.send({"type": "join", "camera_token": whip_token})
    error = await wrong.expect("error")
    assert error["code"] == "unauthorized" and "whip camera" in error["message"]

    # The same camera opened twice: the newer page publishes, the older one is told and closed.
    first = Participant(session, live_service.base_url)
    second = Participant(session, live_service.base_url)
    await first.join(camera_token=token)
    await second.join(camera_token=token)
    error = await first.expect("error")
    assert error["code"] == "replaced"
    assert (await first.expect("_closed"))["code"] == 4409

    # Revoking the token disconnects the page that uses it, at once.
    tokens = await sites.list_tokens(camera.id)
    async with session.delete(
        f"{live_service.base_url}/api/cameras/{camera.id}/tokens/{tokens[0].id}",
        headers=live_service.headers(),
    ) as response:
        assert response.status == 204
    error = await second.expect("error")
    assert error["code"] == "unauthorized" and "revoked" in error["message"]
    assert (await second.expect("_closed"))["code"] == 4401
    await close(made_up, wrong, first, second)


async def test_site_room_messages_are_checked(
    live_service: LiveService, session: aiohttp.ClientSession
) -> None:
    site, camera, token = await phone_camera(live_service)
    other_site, other_camera, _ = await phone_camera(live_service, "Elsewhere")
    agent = await staff(live_service, "agent")
    phone = Participant(session, live_service.base_url)
    try:
        await agent.connect()
        await agent.send({"type": "join", "site_id": "site_nope"})
        assert (await agent.expect("error"))["code"] == "not_found"
        await agent.send({"type": "join", "site_id": site.id, "case_id": "c1"})
        assert (await agent.expect("error"))["code"] == "invalid"
        await agent.send({"type": "join", "site_id": site.id})
        await agent.expect("joined")

        pc = client_pc()
        pc.addTransceiver("video", direction="recvonly")
        offer = await client_offer(pc)
        await agent.send({"type": "offer", "sdp": offer})
        error = await agent.expect("error")
        assert error["code"] == "invalid" and "camera_id" in error["message"]
        await agent.send({"type": "offer", "sdp": offer, "camera_id": other_camera.id})
        assert (await agent.expect("error"))["code"] == "not_found"
        await agent.send({"type": "candidate", "candidate": "", "camera_id": camera.id})
        assert (await agent.expect("error"))["code"] == "not_in_call"
        await agent.send({"type": "offer", "sdp": "v=0\r\nnonsense", "camera_id": camera.id})
        assert (await agent.expect("error"))["code"] == "bad_sdp"
        await agent.send({"type": "unwatch", "camera_id": camera.id})
        await agent.send({"type": "ping", "nonce": "after-unwatch"})
        assert (await agent.expect("pong"))["nonce"] == "after-unwatch"
        await pc.close()

        await phone.join(camera_token=token)
        await phone.send({"type": "offer", "sdp": offer, "camera_id": other_camera.id})
        assert (await phone.expect("error"))["code"] == "forbidden"

        created = await live_service.create_case(session)
        customer = Participant(session, live_service.base_url, token=str(created["join_token"]))
        await customer.connect()
        await customer.send(
            {"type": "join", "token": str(created["join_token"]), "site_id": other_site.id}
        )
        assert (await customer.expect("error"))["code"] == "forbidden"
        await customer.aclose()
    finally:
        await close(agent, phone)
