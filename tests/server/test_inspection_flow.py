"""The inspection tools end to end over real sockets and WebRTC: the agent freezes the customer's
picture (the server's full-size frame), draws on it and the customer's socket gets every stroke,
the customer points back, the release files the marked-up frame; a photo goes up in pieces,
survives a connection cut halfway, and is filed graded, hashed and stamped; and every bad input
gets its clear refusal."""

from __future__ import annotations

import asyncio
import io
import socket
import time
import zipfile
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import numpy as np
import pytest
from PIL import Image

from server.settings import Settings
from tests.conftest import LiveService
from tests.fakes import ToneAudioTrack
from tests.fakes.labels import draw_label
from tests.fakes.scene import SceneVideoTrack
from tests.fakes.signal_client import Participant

UNIT = "UNIT-7F3K2Q"


@pytest.fixture
def service_settings(tmp_path: Path) -> Settings:
    return Settings(
        data_dir=tmp_path / "var",
        port=0,
        shutdown_timeout_s=2.0,
        grading=True,
        label_reading_s=0,
        photo_max_mb=2.0,
        stamp_timezone="Europe/Berlin",
    )


@pytest.fixture
async def staff(live_service: LiveService) -> AsyncIterator[aiohttp.ClientSession]:
    client = aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True))
    await live_service.login(client, "agent", live_service.agent_password)
    yield client
    await client.close()


class Call:
    def __init__(
        self, live: LiveService, case_id: str, token: str, customer: Participant, agent: Participant
    ) -> None:
        self.live, self.case_id, self.token = live, case_id, token
        self.customer, self.agent = customer, agent
        self.api = f"{live.base_url}/api/cases/{case_id}"
        self.page = f"{live.base_url}/join/c/{case_id}"

    def cookie(self) -> dict[str, str]:
        return {"Cookie": f"inspect_join={self.token}"}


@pytest.fixture
async def call(live_service: LiveService, staff: aiohttp.ClientSession) -> AsyncIterator[Call]:
    async with aiohttp.ClientSession() as session:
        created = await live_service.create_case(
            session, order_id="ORD-9001", unit_id=UNIT, tracking_number="1Z999AA10123456784"
        )
        case_id = str(created["case"]["id"])  # type: ignore[index]
        token = str(created["join_token"])
        customer = Participant(session, live_service.base_url, token=token)
        agent = Participant(staff, live_service.base_url)
        await agent.join()
        await customer.join()
        await agent.send({"type": "accept", "case_id": case_id})
        await agent.expect("joined", where=lambda m: m["case"] is not None)
        try:
            await customer.publish(SceneVideoTrack(code=UNIT), ToneAudioTrack())
            await agent.publish(ToneAudioTrack(660.0), receive_video=True)
            yield Call(live_service, case_id, token, customer, agent)
        finally:
            await customer.aclose()
            await agent.aclose()


async def _freeze(call: Call, staff: aiohttp.ClientSession) -> dict[str, Any]:
    for _ in range(100):
        async with staff.post(f"{call.api}/frozen") as response:
            if response.status == 201:
                frame: dict[str, Any] = (await response.json())["frame"]
                return frame
            assert response.status == 409, await response.text()  # no frame has arrived yet
        await asyncio.sleep(0.1)
    raise AssertionError("no frame arrived to freeze")


ARROW = {
    "id": "s1", "tool": "arrow", "color": "#ff0000", "points": [[0.2, 0.3], [0.6, 0.5]],
}  # fmt: skip
MARKER = {"id": "s2", "tool": "marker", "color": "#0000ff", "points": [[0.8, 0.2]], "number": 1}


async def test_freeze_markup_point_back_and_release_file_the_marked_up_frame(
    call: Call, staff: aiohttp.ClientSession
) -> None:
    frame = await _freeze(call, staff)
    frozen = await call.customer.expect("frozen")
    assert frozen["frame_id"] == frame["frame_id"]
    assert (frozen["width"], frozen["height"]) == (frame["width"], frame["height"])

    # Both pages fetch the server's own copy, at the size it was received.
    async with staff.get(f"{call.api}/frozen/{frame['frame_id']}") as response:
        assert response.status == 200
        agent_copy = await response.read()
    async with aiohttp.ClientSession() as phone:
        async with phone.get(
            f"{call.page}/frozen/{frame['frame_id']}", headers=call.cookie()
        ) as response:
            assert response.status == 200
            assert await response.read() == agent_copy
        async with phone.get(f"{call.page}/frozen/{frame['frame_id']}") as response:
            assert response.status == 401, "not without the customer's cookie"
    assert Image.open(io.BytesIO(agent_copy)).size == (frame["width"], frame["height"])

    await call.agent.send(
        {"type": "markup", "frame_id": frame["frame_id"], "op": "add", "stroke": ARROW}
    )
    await call.agent.send(
        {"type": "markup", "frame_id": frame["frame_id"], "op": "add", "stroke": MARKER}
    )
    first = await call.customer.expect("markup", where=lambda m: m["stroke_id"] == "s1")
    assert first["stroke"]["points"] == [[0.2, 0.3], [0.6, 0.5]]
    assert first["by"]["role"] == "agent"
    await call.customer.expect("markup", where=lambda m: m["stroke_id"] == "s2")
    await call.agent.send(
        {"type": "markup", "frame_id": frame["frame_id"], "op": "undo", "stroke_id": "s2"}
    )
    await call.customer.expect("markup", where=lambda m: m["op"] == "undo")

    # The customer taps the frozen frame: the agent sees where.
    await call.customer.send({"type": "point", "x": 0.5, "y": 0.25, "frame_id": frame["frame_id"]})
    point = await call.agent.expect("point", where=lambda m: m["by"]["role"] == "customer")
    assert (point["x"], point["y"]) == (0.5, 0.25)
    # The customer cannot draw strokes.
    await call.customer.send(
        {"type": "markup", "frame_id": frame["frame_id"], "op": "add", "stroke": MARKER}
    )
    refused = await call.customer.expect("error", where=lambda m: m["ref"] == "markup")
    assert refused["code"] == "forbidden"

    async with staff.post(
        f"{call.api}/frozen/{frame['frame_id']}/release", json={"strokes": [ARROW]}
    ) as response:
        assert response.status == 200, await response.text()
        item = (await response.json())["item"]
    await call.customer.expect("unfrozen", where=lambda m: m["item_id"] == item["item_id"])
    record = item["record"]
    assert record["kind"] == "markup"
    assert record["details"]["derived_from"] == frame["frame_id"]
    assert record["details"]["strokes"]["arrow"] == 1
    assert sum(record["details"]["strokes"].values()) == 1
    names = {f["name"]: f["sha256"] for f in item["files"]}
    assert set(names) == {"markup.png", "markup-stamped.jpg", "frame.jpg", "strokes.json"}
    stamp = record["details"]["stamp"]
    assert stamp["original"] == {"file": "markup.png", "sha256": names["markup.png"]}
    assert stamp["stamped"] == {"file": "markup-stamped.jpg", "sha256": names["markup-stamped.jpg"]}
    assert any("Europe/Berlin" in line for line in stamp["lines"])
    assert any("1Z999AA10123456784" in line for line in stamp["lines"])

    # A stroke or a release for the frame once it is gone is refused, and says why.
    await call.agent.send(
        {"type": "markup", "frame_id": frame["frame_id"], "op": "add", "stroke": MARKER}
    )
    gone = await call.agent.expect("error", where=lambda m: m["ref"] == "markup")
    assert gone["code"] == "not_found" and "not frozen any more" in gone["message"]
    async with staff.post(
        f"{call.api}/frozen/{frame['frame_id']}/release", json={"strokes": []}
    ) as response:
        assert response.status == 404

    # A tap on the live video reaches the customer without a freeze.
    await call.agent.send({"type": "point", "x": 0.1, "y": 0.9})
    live = await call.customer.expect("point", where=lambda m: m["frame_id"] is None)
    assert live["by"]["role"] == "agent"

    async with staff.get(f"{call.api}") as response:
        timeline = (await response.json())["events"]
    kinds = [event["type"] for event in timeline]
    for kind in ("inspection.freeze", "inspection.markup", "inspection.point",
                 "inspection.unfreeze"):  # fmt: skip
        assert kind in kinds, kinds


async def test_bad_markup_is_refused_with_its_reason(
    call: Call, staff: aiohttp.ClientSession
) -> None:
    frame = await _freeze(call, staff)
    bad = [
        ({**ARROW, "points": [[0.2, 0.3]]}, "2 points"),
        ({**ARROW, "points": [[1.5, 0.3], [0.2, 0.2]]}, "less than or equal to 1"),
        ({**ARROW, "color": "red"}, "color"),
        ({"id": "t", "tool": "text", "color": "#ffffff", "points": [[0.1, 0.1]]}, "text"),
        ({**MARKER, "number": None}, "number"),
    ]
    for stroke, why in bad:
        await call.agent.send(
            {"type": "markup", "frame_id": frame["frame_id"], "op": "add", "stroke": stroke}
        )
        error = await call.agent.expect("error", where=lambda m: m["ref"] == "markup")
        assert error["code"] == "invalid" and why in error["message"], error
    async with staff.post(
        f"{call.api}/frozen/{frame['frame_id']}/release",
        json={"strokes": [{**ARROW, "tool": "laser"}]},
    ) as response:
        assert response.status == 400
    async with staff.post(f"{call.api}/frozen/nosuchframe/release", json={}) as response:
        assert response.status == 404


def _photo(size: tuple[int, int] = (1600, 1200)) -> bytes:
    label = draw_label(seed=3)
    image = Image.fromarray(label.image).resize(size)
    out = io.BytesIO()
    image.save(out, "JPEG", quality=90)
    return out.getvalue()


async def _create_upload(
    session: aiohttp.ClientSession, call: Call, data: bytes, **meta: Any
) -> tuple[int, dict[str, Any]]:
    body = {"size": len(data), "content_type": "image/jpeg", **meta}
    async with session.post(f"{call.page}/uploads", json=body, headers=call.cookie()) as response:
        return response.status, await response.json()


async def _piece(
    session: aiohttp.ClientSession, call: Call, upload_id: str, offset: int, data: bytes
) -> tuple[int, dict[str, Any]]:
    headers = {**call.cookie(), "Upload-Offset": str(offset)}
    async with session.patch(
        f"{call.page}/uploads/{upload_id}", data=data, headers=headers
    ) as response:
        return response.status, await response.json()


async def _offset(session: aiohttp.ClientSession, call: Call, upload_id: str) -> int:
    async with session.head(f"{call.page}/uploads/{upload_id}", headers=call.cookie()) as response:
        assert response.status == 200
        return int(response.headers["Upload-Offset"])


def _cut_piece(call: Call, upload_id: str, data: bytes, sent: int) -> None:
    """A PATCH whose connection dies after ``sent`` of its bytes (a phone losing its network)."""
    url = urlsplit(call.page)
    head = (
        f"PATCH {url.path}/uploads/{upload_id} HTTP/1.1\r\nHost: {url.netloc}\r\n"
        f"Cookie: inspect_join={call.token}\r\nUpload-Offset: 0\r\n"
        f"Content-Type: application/offset+octet-stream\r\nContent-Length: {len(data)}\r\n\r\n"
    )
    with socket.create_connection((url.hostname, url.port)) as raw:
        raw.sendall(head.encode() + data[:sent])
        # The bytes reach the server and are written as they come; then the network is gone.
        time.sleep(1.0)


async def test_a_photo_cut_off_halfway_resumes_and_is_filed_graded_hashed_and_stamped(
    call: Call, staff: aiohttp.ClientSession
) -> None:
    data = _photo()
    await call.agent.send({"type": "photo_request", "request_id": "req-1", "note": "the label"})
    request = await call.customer.expect("photo_request")
    assert request["note"] == "the label"
    async with aiohttp.ClientSession() as phone:
        status, created = await _create_upload(phone, call, data, request_id="req-1")
        assert status == 201, created
        upload_id = created["upload"]["id"]
        await asyncio.to_thread(_cut_piece, call, upload_id, data, len(data) // 2)
        for _ in range(50):
            kept = await _offset(phone, call, upload_id)
            if kept:
                break
            await asyncio.sleep(0.1)
        assert 0 < kept <= len(data) // 2, "what arrived before the cut is kept"
        status, body = await _piece(phone, call, upload_id, 0, data)
        assert status == 409, "a piece from the wrong offset is refused"
        status, body = await _piece(phone, call, upload_id, kept, data[kept:])
        assert status == 200, body
    photo = body["photo"]
    assert (photo["width"], photo["height"]) == (1600, 1200)
    assert photo["grade"] in {"A", "B", "C", "D"}
    event = await call.agent.expect("photo")
    assert event["item_id"] == photo["item_id"] and event["request_id"] == "req-1"
    assert not any(m["type"] == "photo" for m in call.customer.seen), "the grade is for staff"

    async with staff.get(f"{call.api}/stills/{photo['item_id']}") as response:
        assert response.status == 200
        assert await response.read() == data, "the photo is kept byte for byte"
    async with staff.get(f"{call.api}/stills/{photo['item_id']}?stamped=1") as response:
        stamped = Image.open(io.BytesIO(await response.read()))
    assert stamped.size == (1600, 1200)
    assert (
        np.asarray(stamped.convert("L"))[-10:].mean()
        < np.asarray(Image.open(io.BytesIO(data)).convert("L"))[-10:].mean()
    ), "the stamp band darkens the bottom"

    item = await call.live.state.archive.peek(photo["item_id"])
    record = item.record
    assert record.kind.value == "photo"
    assert record.details is not None and record.details["requested"] == "req-1"
    assert record.details["source"] == "camera"
    assert record.grading is not None and record.grading["model"]["grade"] == photo["grade"]
    assert (await call.live.state.archive.verify(photo["item_id"])).ok

    async with staff.get(call.api) as response:
        timeline = (await response.json())["events"]
    received = [e for e in timeline if e["type"] == "inspection.photo_received"]
    assert received and received[0]["data"]["item_id"] == photo["item_id"]
    assert any(e["type"] == "inspection.photo_request" for e in timeline)

    # A dispute bundle holds the photo and a marked-up frame, files and records together.
    frame = await _freeze(call, staff)
    async with staff.post(
        f"{call.api}/frozen/{frame['frame_id']}/release", json={"strokes": [MARKER]}
    ) as response:
        markup = (await response.json())["item"]
    async with aiohttp.ClientSession() as reviewer:
        async with reviewer.post(
            f"{call.live.base_url}/api/evidence/export",
            json={"item_ids": [photo["item_id"], markup["item_id"]], "reason": "carrier claim"},
            headers=call.live.headers(),
        ) as response:
            assert response.status == 200, await response.text()
            bundle = zipfile.ZipFile(io.BytesIO(await response.read()))
    names = bundle.namelist()
    for expected in ("photo.jpg", "photo-stamped.jpg", "markup.png", "strokes.json"):
        assert any(name.endswith("/" + expected) for name in names), names


async def test_bad_photos_are_refused_and_nothing_is_filed(
    call: Call, staff: aiohttp.ClientSession
) -> None:
    async with aiohttp.ClientSession() as phone:
        status, body = await _create_upload(phone, call, b"x" * (3 * 1024 * 1024))
        assert status == 413 and "MB" in body["error"]["message"]
        text = b"this is not a photo at all" * 10
        status, created = await _create_upload(phone, call, text)
        assert status == 201
        status, body = await _piece(phone, call, created["upload"]["id"], 0, text)
        assert status == 415, body
        data = _photo()
        cut = data[: len(data) // 2]
        status, created = await _create_upload(phone, call, cut)
        status, body = await _piece(phone, call, created["upload"]["id"], 0, cut)
        assert status == 400 and "cut short" in body["error"]["message"], body
        status, body = await _create_upload(phone, call, data, source="somewhere")
        assert status == 400
        async with phone.post(f"{call.page}/uploads", json={"size": 10, "content_type": "x"}) as r:
            assert r.status == 401, "no cookie, no upload"
    assert not [m for m in call.agent.seen if m["type"] == "photo"]

    # Once the call has ended, a photo is refused before a byte is sent.
    async with staff.post(
        f"{call.api}/decision",
        json={"decision": "refund", "facts": {"cosmetic": "as_new", "functional": "works",
              "packaging": "intact", "accessories_complete": True}},
    ) as response:  # fmt: skip
        assert response.status == 200, await response.text()
    async with aiohttp.ClientSession() as phone:
        status, body = await _create_upload(phone, call, _photo())
        assert status == 409 and "not on" in body["error"]["message"]
