"""Live grading end to end: a customer's camera over WebRTC -> sampler -> shipped model ->
the agent's socket; then the decision stores the model's view, the derived and final grade."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from server.settings import Settings
from tests.conftest import LiveService
from tests.fakes import ToneAudioTrack
from tests.fakes.labels import draw_label
from tests.fakes.scene import SceneVideoTrack
from tests.fakes.signal_client import Participant

UNIT = "UNIT-7F3K2Q"


@pytest.fixture
def service_settings(tmp_path: Path) -> Settings:
    return Settings(data_dir=tmp_path / "var", port=0, shutdown_timeout_s=2.0, grading=True)


@pytest.fixture
async def staff(live_service: LiveService) -> AsyncIterator[aiohttp.ClientSession]:
    client = aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True))
    await live_service.login(client, "agent", live_service.agent_password)
    yield client
    await client.close()


async def in_call(
    live: LiveService, session: aiohttp.ClientSession, staff: aiohttp.ClientSession
) -> tuple[str, Participant, Participant]:
    created = await live.create_case(session, order_id="ORD-9001", unit_id=UNIT)
    case_id = str(created["case"]["id"])  # type: ignore[index]
    customer = Participant(session, live.base_url, token=str(created["join_token"]))
    agent = Participant(staff, live.base_url)
    await agent.join()
    await customer.join()
    await agent.send({"type": "accept", "case_id": case_id})
    await agent.expect("joined", where=lambda m: m["case"] is not None)
    return case_id, customer, agent


async def test_a_cracked_item_is_graded_d_live_and_its_qr_label_is_read_and_matched(
    live_service: LiveService, staff: aiohttp.ClientSession
) -> None:
    async with aiohttp.ClientSession() as session:
        case_id, customer, agent = await in_call(live_service, session, staff)
        try:
            await customer.publish(SceneVideoTrack(code=UNIT), ToneAudioTrack())
            await agent.publish(ToneAudioTrack(660.0), receive_video=True)

            def graded(message: dict[str, Any]) -> bool:
                view = message["assessment"]
                codes = {code["text"] for code in view["codes"]}
                return view["grade"] == "D" and view["status"] == "sure" and UNIT in codes

            message = await agent.expect("analysis", wait_s=40, where=graded)
            view = message["assessment"]
            assert message["case_id"] == case_id
            assert view["grade_probs"]["D"] > 0.5
            assert "crack" in {damage["label"] for damage in view["damage"]}
            qr = next(code for code in view["codes"] if code["text"] == UNIT)
            assert qr["format"] == "QRCode"
            assert {"ref": "unit_id", "value": UNIT, "exact": True} in qr["matches"]
            assert view["frames"]["analysed"] >= 2
            assert "snapshot_candidates" not in view, "frames are fetched over HTTP"
            assert not any(m["type"] == "analysis" for m in customer.seen), (
                "the customer never sees the model's view"
            )

            # The console reads the same view and the best frames over HTTP.
            base = f"{live_service.base_url}/api/cases/{case_id}"
            async with staff.get(f"{base}/assessment") as response:
                body = await response.json()
            assert body["live"] is True and body["assessment"]["grade"] == "D"
            assert body["frames"], "the sharpest frames are kept as snapshot candidates"
            async with staff.get(live_service.base_url + body["frames"][0]["url"]) as response:
                assert response.status == 200
                assert response.content_type == "image/jpeg"
                assert (await response.read())[:2] == b"\xff\xd8"
            async with session.get(f"{base}/assessment") as response:
                assert response.status == 401, "not for customers or strangers"

            # The customer hangs up: the model's final view is kept with the case.
            await customer.aclose()
            await _until_stored(live_service, case_id)

            decision = {
                "decision": "reject",
                "facts": {
                    "cosmetic": "damaged",
                    "functional": "does_not_work",
                    "packaging": "intact",
                    "accessories_complete": True,
                },
                "note": "cracked housing, does not power on",
            }
            async with staff.post(f"{base}/decision", json=decision) as response:
                assert response.status == 200, await response.text()
                grading = (await response.json())["case"]["grading"]
            assert grading["model"]["grade"] == "D"
            assert grading["derived"]["grade"] == "D"
            assert grading["final_grade"] == "D" and grading["source"] == "rules"
            assert grading["rules_version"] == "grade-rules/1"
            assert grading["resale_channel"]["name"]
        finally:
            await customer.aclose()
            await agent.aclose()


async def _until_stored(live: LiveService, case_id: str) -> None:
    async with asyncio.timeout(10):
        while True:
            case = await live.state.cases.get_case(case_id)
            if case is not None and case.grading and case.grading.get("model"):
                return
            await asyncio.sleep(0.05)  # the store runs in a task of the grading service


async def test_the_agent_can_override_the_derived_grade_with_a_reason(
    live_service: LiveService, staff: aiohttp.ClientSession
) -> None:
    async with aiohttp.ClientSession() as session:
        case_id, customer, agent = await in_call(live_service, session, staff)
        try:
            base = f"{live_service.base_url}/api/cases/{case_id}"
            facts = {
                "cosmetic": "light_wear",
                "functional": "works",
                "packaging": "damaged",
                "accessories_complete": True,
            }
            async with staff.post(
                f"{live_service.base_url}/api/grading/derive", json=facts
            ) as response:
                derived = (await response.json())["derived"]
            assert derived["grade"] == "B"

            no_reason = {"decision": "refund", "facts": facts, "grade_override": {"grade": "A"}}
            async with staff.post(f"{base}/decision", json=no_reason) as response:
                assert response.status == 400
                assert "grade_override.reason" in (await response.json())["error"]["message"]

            decision = {
                "decision": "refund",
                "facts": facts,
                "grade_override": {"grade": "A", "reason": "wear is from the factory film"},
            }
            async with staff.post(f"{base}/decision", json=decision) as response:
                assert response.status == 200, await response.text()
                grading = (await response.json())["case"]["grading"]
            assert grading["derived"]["grade"] == "B"
            assert grading["final_grade"] == "A" and grading["source"] == "override"
            assert grading["override"]["reason"] == "wear is from the factory film"
            assert grading["resale_channel"]["price_range"] == [0.85, 0.95]
            assert grading["model"] is None, "no video was shown"
        finally:
            await customer.aclose()
            await agent.aclose()


async def test_the_serial_on_the_item_s_label_is_read_from_the_live_video_and_matched(
    live_service: LiveService, staff: aiohttp.ClientSession
) -> None:
    label = draw_label(seed=3)
    async with aiohttp.ClientSession() as session:
        created = await live_service.create_case(session, order_id="ORD-9002", unit_id=label.serial)
        case_id = str(created["case"]["id"])  # type: ignore[index]
        customer = Participant(session, live_service.base_url, token=str(created["join_token"]))
        agent = Participant(staff, live_service.base_url)
        try:
            await agent.join()
            await customer.join()
            await agent.send({"type": "accept", "case_id": case_id})
            await agent.expect("joined", where=lambda m: m["case"] is not None)
            # The customer holds the label to the camera: it arrives through VP8 like any frame.
            await customer.publish(SceneVideoTrack(frames=[label.image]), ToneAudioTrack())
            await agent.publish(ToneAudioTrack(660.0), receive_video=True)

            def serial_read(message: dict[str, Any]) -> bool:
                return any(
                    entry["kind"] == "serial" and entry["matches"]
                    for entry in message["assessment"]["labels"]
                )

            message = await agent.expect("analysis", wait_s=60, where=serial_read)
            labels = message["assessment"]["labels"]
            serial = next(entry for entry in labels if entry["kind"] == "serial")
            assert serial["text"] == label.serial
            assert serial["matches"] == [{"ref": "unit_id", "value": label.serial, "exact": True}]
            assert message["assessment"]["linked_refs"]["unit_id"] == label.serial
            assert ("imei", label.imei) in {(entry["kind"], entry["text"]) for entry in labels}
        finally:
            await customer.aclose()
            await agent.aclose()
