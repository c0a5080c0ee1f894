"""Evidence through the whole service: a call is recorded (from the pre-roll), filed with its
case data, found by a reviewer, checked, exported and verified offline; access is enforced and
every read is in the log."""

from __future__ import annotations

import asyncio
import io
import re
import sys
import zipfile
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import av
import pytest

from evidence import verify_consistency
from tests.conftest import LiveService
from tests.fakes import NumberedVideoTrack, ToneAudioTrack, read_frame_number
from tests.fakes.signal_client import Participant

ORDER = "ORD-EVID-1"


async def staff_client(live: LiveService, username: str) -> aiohttp.ClientSession:
    client = aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True))
    await live.login(client, username, live.agent_password)
    return client


@pytest.fixture
async def call(
    live_service: LiveService,
) -> AsyncIterator[tuple[str, Participant, Participant, aiohttp.ClientSession]]:
    """A return call in progress: the customer publishes numbered video and a tone."""
    session = aiohttp.ClientSession()
    agent_http = await staff_client(live_service, "agent")
    created = await live_service.create_case(
        session, order_id=ORDER, tracking_number="1Z999AA10123456784"
    )
    case_id = str(created["case"]["id"])  # type: ignore[index]
    customer = Participant(session, live_service.base_url, token=str(created["join_token"]))
    agent = Participant(agent_http, live_service.base_url)
    await agent.join()
    await customer.join()
    await agent.send({"type": "accept", "case_id": case_id})
    await agent.expect("joined", where=lambda m: m["case"] is not None)
    await customer.publish(NumberedVideoTrack(), ToneAudioTrack())
    await agent.publish(ToneAudioTrack(660.0), receive_video=True)
    async with asyncio.timeout(10):
        await agent.sinks_ready("video")
    yield case_id, customer, agent, agent_http
    await customer.aclose()
    await agent.aclose()
    await agent_http.close()
    await session.close()


def decoded_numbers(data: bytes) -> list[int]:
    numbers = []
    with av.open(io.BytesIO(data)) as container:
        for frame in container.decode(video=0):
            number = read_frame_number(frame)
            if number is not None:
                numbers.append(number)
    return numbers


async def test_a_recorded_clip_is_filed_found_verified_and_exported(
    live_service: LiveService,
    call: tuple[str, Participant, Participant, aiohttp.ClientSession],
    tmp_path: Path,
) -> None:
    case_id, customer, agent, agent_http = call
    base = live_service.base_url
    # Let a few seconds of pre-roll build up, and note the frame on screen at "record".
    await asyncio.sleep(3.0)  # real time must pass for the pre-roll to hold anything
    shown: list[int] = []
    agent.on_video_frame = lambda frame: shown.append(read_frame_number(frame) or -1)
    async with asyncio.timeout(5):
        while not [n for n in shown if n >= 0]:
            await agent.sinks["video"].frame_event.wait()
            agent.sinks["video"].frame_event.clear()
    at_start = max(shown)

    async with agent_http.post(
        f"{base}/api/cases/{case_id}/captures", json={"note": "customer shows the scratch"}
    ) as response:
        assert response.status == 201, await response.text()
        capture = (await response.json())["capture"]
    await asyncio.sleep(2.0)  # record two seconds of the live call
    async with agent_http.post(
        f"{base}/api/cases/{case_id}/captures/{capture['id']}/stop"
    ) as response:
        assert response.status == 201, await response.text()
        clip = (await response.json())["item"]
    assert clip["record"]["kind"] == "clip"
    assert clip["record"]["order_id"] == ORDER
    assert clip["record"]["tracking_number"] == "1Z999AA10123456784"
    assert clip["record"]["logistics_stage"] == "return_receipt"
    assert clip["record"]["operator"] == "Alex Agent"
    assert clip["record"]["note"] == "customer shows the scratch"

    async with agent_http.post(f"{base}/api/cases/{case_id}/snapshots", json={}) as response:
        assert response.status == 201, await response.text()
        snapshot = (await response.json())["item"]
    assert snapshot["files"][0]["name"] == "snapshot.jpg"

    async with agent_http.get(f"{base}/api/cases/{case_id}/evidence") as response:
        listed = {item["item_id"] for item in (await response.json())["items"]}
    assert listed == {clip["item_id"], snapshot["item_id"]}

    # The archive is for reviewers: agents and customers cannot search or read it.
    async with agent_http.get(f"{base}/api/evidence", params={"order_id": ORDER}) as response:
        assert response.status == 403
    async with customer.session.post(
        f"{base}/api/evidence/{clip['item_id']}/view",
        json={"reason": "curious"},
        headers={"Authorization": f"Bearer {customer.token}"},
    ) as response:
        assert response.status == 401

    async with agent_http.post(
        f"{base}/api/evidence/{clip['item_id']}/view", json={"reason": "curious"}
    ) as response:
        assert response.status == 403, "agents record evidence but do not open the archive"
    async with agent_http.post(
        f"{base}/api/evidence/export", json={"item_ids": [clip["item_id"]], "reason": "x" * 5}
    ) as response:
        assert response.status == 403

    async with agent_http.get(f"{base}/api/evidence/tree-head") as response:
        head_before = await response.json()

    reviewer = await staff_client(live_service, "reviewer")
    try:
        async with reviewer.get(f"{base}/api/evidence", params={"order_id": ORDER}) as response:
            found = (await response.json())["items"]
        assert {item["item_id"] for item in found} == listed

        view_url = f"{base}/api/evidence/{clip['item_id']}/view"
        async with reviewer.post(view_url, json={}) as response:
            assert response.status == 400, "a reason is required to open evidence"
        async with reviewer.get(f"{base}/api/evidence/{clip['item_id']}") as response:
            assert response.status == 405, "opening evidence is never a plain GET"
        reason = {"reason": "dispute 4711 with the carrier"}
        async with reviewer.post(view_url, json=reason) as r:
            assert r.status == 200, await r.text()
            detail = await r.json()
        assert detail["integrity"]["ok"] is True, detail["integrity"]
        video = next(f for f in detail["item"]["files"] if f["name"].startswith("video-"))
        async with reviewer.get(base + video["url"]) as response:
            assert response.status == 400, "a file needs a read ticket"
        async with reviewer.post(f"{base}{video['url']}/read", json=reason) as response:
            assert response.status == 200, await response.text()
            ticket = await response.json()
        assert ticket["name"] == video["name"]
        assert ticket["url"].startswith(video["url"] + "?ticket=")
        async with reviewer.get(base + ticket["url"]) as response:
            assert response.status == 200
            assert response.headers["X-Content-Type-Options"] == "nosniff"
            data = await response.read()
        async with reviewer.get(base + ticket["url"], headers={"Range": "bytes=10-"}) as response:
            assert response.status == 206, "the player reads the file in ranges"
            assert await response.read() == data[10:]
        numbers = decoded_numbers(data)
        assert numbers, "the clip decodes"
        assert numbers == sorted(numbers)
        assert numbers[0] < at_start, "the clip reaches back before 'record' (pre-roll)"
        assert numbers[-1] > at_start

        async with reviewer.post(view_url, json=reason) as r:
            custody = (await r.json())["custody"]
        kinds = [entry["kind"] for entry in custody]
        assert kinds[0] == "item.added"
        assert kinds.count("item.viewed") == 2 and kinds.count("item.downloaded") == 1, kinds
        viewed = next(entry for entry in custody if entry["kind"] == "item.viewed")
        # L3: the custody log names the reviewer by subject, the display name beside it.
        assert re.fullmatch(r"u_[0-9a-f]+ \(Riley Reviewer\)", viewed["actor"]), viewed["actor"]
        assert viewed["reason"] == "dispute 4711 with the carrier"

        # Export a dispute bundle and check it offline with its own verify.py.
        body = {"item_ids": [clip["item_id"], snapshot["item_id"]], "reason": "carrier claim"}
        async with reviewer.post(f"{base}/api/evidence/export", json=body) as response:
            assert response.status == 200
            assert response.content_type == "application/zip"
            bundle = tmp_path / "bundle.zip"
            bundle.write_bytes(await response.read())
        with zipfile.ZipFile(bundle) as archive:
            names = archive.namelist()
            archive.extractall(tmp_path / "bundle")
        assert "verify.py" in names and "public_key.pem" in names and "summary.html" in names
        async with reviewer.get(f"{base}/api/evidence/tree-head") as response:
            key_id = (await response.json())["key_id"]
        checker = await asyncio.create_subprocess_exec(
            sys.executable, str(tmp_path / "bundle" / "verify.py"), str(bundle),
            "--expect-key-id", key_id,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
        )  # fmt: skip
        output, _ = await checker.communicate()
        assert checker.returncode == 0, output.decode()
        assert b"FAIL" not in output

        # The log only grew since the earlier tree head (RFC 9162 consistency proof).
        async with reviewer.get(f"{base}/api/evidence/tree-head") as response:
            head_after = await response.json()
        assert head_after["tree_size"] > head_before["tree_size"]
        sizes = {"first": head_before["tree_size"], "second": head_after["tree_size"]}
        async with reviewer.get(f"{base}/api/evidence/consistency", params=sizes) as response:
            proof = [bytes.fromhex(step) for step in (await response.json())["proof"]]
        assert verify_consistency(
            head_before["tree_size"],
            head_after["tree_size"],
            bytes.fromhex(head_before["root_hash"]),
            bytes.fromhex(head_after["root_hash"]),
            proof,
        )

        # Legal hold blocks deletion; the log keeps every step.
        hold = {"reason": "claim filed with the carrier"}
        async with reviewer.post(f"{base}/api/evidence/{clip['item_id']}/hold", json=hold) as r:
            assert (await r.json())["item"]["legal_hold"] is True
        async with reviewer.delete(
            f"{base}/api/evidence/{clip['item_id']}", json={"reason": "cleanup"}
        ) as response:
            assert response.status == 409
            assert (await response.json())["error"]["code"] == "on_legal_hold"
        # A reviewer may not lift the hold (and then delete alone); an admin may.
        release_url = f"{base}/api/evidence/{clip['item_id']}/release"
        async with reviewer.post(release_url, json={"reason": "claim settled"}) as response:
            assert response.status == 403
        async with reviewer.post(release_url, json={"reason": "claim settled"},
                                 headers=live_service.headers()) as response:  # fmt: skip
            assert response.status == 200, await response.text()
            assert (await response.json())["item"]["legal_hold"] is False
        async with reviewer.delete(
            f"{base}/api/evidence/{clip['item_id']}", json={"reason": "cleanup"}
        ) as response:
            assert response.status == 409
            assert (await response.json())["error"]["code"] == "retention_active"
    finally:
        await reviewer.close()


async def test_save_the_last_seconds_and_refuse_more_than_the_preroll(
    live_service: LiveService,
    call: tuple[str, Participant, Participant, aiohttp.ClientSession],
) -> None:
    case_id, _, _, agent_http = call
    base = f"{live_service.base_url}/api/cases/{case_id}/captures/last"
    await asyncio.sleep(3.0)  # real time must pass for the pre-roll to hold three seconds
    async with agent_http.post(base, json={"seconds": 60}) as response:
        assert response.status == 400
        assert "pre-roll" in (await response.json())["error"]["message"]
    async with agent_http.post(base, json={"seconds": 2}) as response:
        assert response.status == 201, await response.text()
        item: dict[str, Any] = (await response.json())["item"]
    assert item["record"]["kind"] == "clip"
    started, ended = item["record"]["started_at"], item["record"]["ended_at"]
    assert started < ended
