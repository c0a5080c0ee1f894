"""Station cameras through the whole service: phone cameras (aiortc clients with camera tokens,
over the real camera signaling path) show parcel labels with real Code128 barcodes; the server
reads them and files one clip per parcel, tagged with its tracking number and stage, which the
archive finds in stage order. Real sockets, peers, recordings, archive and (for returns QC) the
shipped grading model."""

from __future__ import annotations

import asyncio
import io
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import av
import pytest

from evidence import EvidenceItem
from inference import ReadCode, read_codes
from server.settings import Settings
from server.sites import tracking_number
from signaling.ports import camera_room
from tests.conftest import LiveService
from tests.fakes import read_frame_number
from tests.fakes.parcels import ParcelVideoTrack, barcode_label
from tests.fakes.rtsp_server import RtspCamera
from tests.fakes.signal_client import Participant

UPS = "1Z999AA10123456784"
USPS = "9400111899223197428490"
POST = "RR123456785CN"
WAIT = 15.0
FPS = 15


@dataclass
class Admin:
    live: LiveService
    http: aiohttp.ClientSession

    async def call(self, method: str, path: str, **kwargs: Any) -> Any:
        async with self.http.request(
            method, f"{self.live.base_url}{path}", headers=self.live.headers(), **kwargs
        ) as response:
            body = await response.json() if response.content_type == "application/json" else None
            assert response.status < 300, (method, path, response.status, body)
            return body

    async def station_camera(self, site_id: str, name: str, **fields: Any) -> tuple[str, str]:
        """A phone camera of the site (with ``fields``) and a token for it."""
        body = await self.call(
            "POST", f"/api/sites/{site_id}/cameras", json={"name": name, "kind": "phone", **fields}
        )
        camera_id: str = body["camera"]["id"]
        token = await self.call("POST", f"/api/cameras/{camera_id}/tokens", json={})
        return camera_id, token["token"]

    async def status(self, camera_id: str) -> dict[str, Any]:
        body = await self.call("GET", f"/api/cameras/{camera_id}")
        status: dict[str, Any] = body["camera"]["status"]
        return status


@pytest.fixture
async def admin(live_service: LiveService) -> AsyncIterator[Admin]:
    async with aiohttp.ClientSession() as http:
        yield Admin(live_service, http)


async def until(check: Callable[[], Awaitable[bool]], within: float = WAIT) -> None:
    async with asyncio.timeout(within):
        while not await check():  # noqa: ASYNC110 - polling the API, as a page does
            await asyncio.sleep(0.1)


async def shown_for(track: ParcelVideoTrack, number: str, seconds: float) -> None:
    """Wait until the camera has shown ``number`` for ``seconds``."""

    async def enough() -> bool:
        return len(track.frames_of(number)) >= seconds * FPS

    await until(enough)


async def shown_for_frames(track: ParcelVideoTrack, count: int) -> None:
    async def enough() -> bool:
        return len(track.shown) >= count

    await until(enough)


async def recording(admin: Admin, camera_id: str, number: str | None) -> None:
    """Wait until the station's status says it records ``number`` (None: nothing)."""

    async def check() -> bool:
        station = (await admin.status(camera_id))["station"]
        return bool(station["tracking_number"] == number)

    await until(check)


async def phone(live: LiveService, http: aiohttp.ClientSession, token: str) -> Participant:
    camera = Participant(http, live.base_url)
    await camera.join(camera_token=token)
    return camera


def clip_frames(path: Path) -> list[tuple[int, Any]]:
    """(frame number, decoded frame) of every readable frame of a clip, in order."""
    frames = []
    with av.open(io.BytesIO(path.read_bytes())) as container:
        for frame in container.decode(video=0):
            number = read_frame_number(frame)
            if number is not None:
                frames.append((number, frame))
    return frames


async def check_clip(
    live: LiveService, item: EvidenceItem, track: ParcelVideoTrack, number: str
) -> list[int]:
    """The clip holds every frame that showed ``number``, a few seconds before it (the pre-roll),
    and the recorded pictures show the barcode; returns the clip's frame numbers."""
    path = await live.state.archive.stored_path(item.item_id, "video-1.webm")
    frames = await asyncio.to_thread(clip_frames, path)
    numbers = [n for n, _ in frames]
    showed = track.frames_of(number)
    assert numbers == sorted(numbers), "the camera's frames in order"
    assert set(showed) <= set(numbers), (number, showed[0], showed[-1], numbers[0], numbers[-1])
    preroll = showed[0] - numbers[0]
    # A few seconds (the station's 3 s, back to a keyframe), not the whole 10 s buffer.
    assert 0 < preroll <= 6 * FPS, preroll
    middle = dict(frames)[showed[len(showed) // 2]]
    read = await asyncio.to_thread(read_codes, middle.to_ndarray(format="rgb24"))
    assert number in {code.text for code in read}, "the recorded picture shows the label"
    return numbers


def test_what_counts_as_a_tracking_number() -> None:
    def code(text: str, fmt: str = "Code128") -> ReadCode:
        return ReadCode(fmt, text, ((0, 0),) * 4)

    assert tracking_number(code(UPS)) == UPS
    assert tracking_number(code("1z 999 aa1 0123-456784")) == UPS
    assert tracking_number(code(POST, "QRCode")) == POST
    assert tracking_number(code(USPS, "DataMatrix")) == USPS
    assert tracking_number(code("420902101\x1d" + USPS)) == USPS  # GS1-128: ZIP, then number
    assert tracking_number(code("4006381333931", "EAN13")) is None  # a product, not a parcel
    assert tracking_number(code("https://example.com/r/123456", "QRCode")) is None
    assert tracking_number(code("SKU-12")) is None  # too short
    assert tracking_number(code("PALLETBAY")) is None  # no digits


async def test_stations_file_one_clip_per_scanned_parcel_found_in_stage_order(
    live_service: LiveService, admin: Admin
) -> None:
    live = live_service
    site = (await admin.call("POST", "/api/sites", json={"name": "Valencia DC"}))["site"]
    packing, packing_token = await admin.station_camera(
        site["id"], "Packing line 1", station_stage="packing", station_idle_timeout_s=5
    )
    receiving, receiving_token = await admin.station_camera(
        site["id"], "Returns dock", station_stage="receiving", station_idle_timeout_s=5
    )
    plain, plain_token = await admin.station_camera(site["id"], "Aisle 4")
    packer, receiver, plain_track = ParcelVideoTrack(), ParcelVideoTrack(), ParcelVideoTrack()
    agent_http = aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True))
    await live.login(agent_http, "agent", live.agent_password)
    agent = Participant(agent_http, live.base_url)
    cameras: list[Participant] = []
    try:
        await agent.join(site_id=site["id"])
        for token, track in (
            (packing_token, packer),
            (receiving_token, receiver),
            (plain_token, plain_track),
        ):
            cameras.append(await phone(live, admin.http, token))
            await cameras[-1].publish(track, receive_audio=False)

        await shown_for_frames(packer, 20)  # an empty bench first: what the pre-roll shows
        await shown_for_frames(receiver, 20)
        # A returned parcel is received before the same number's packing clip is recorded:
        # the archive still lists packing first (stage order, not time).
        receiver.show(USPS)
        plain_track.show(USPS)  # not a station: never read, never recorded
        await recording(admin, receiving, USPS)
        packer.show(UPS)
        event = await agent.expect(
            "camera",
            where=lambda m: (
                m["camera_id"] == packing
                and (m["status"]["station"] or {}).get("tracking_number") == UPS
            ),
        )
        assert event["status"]["station"]["stage"] == "packing"
        await shown_for(packer, UPS, 2.5)
        receiver.show(None)
        packer.show(POST)
        await recording(admin, packing, POST)
        await shown_for(packer, POST, 2.5)
        packer.show(USPS)
        await recording(admin, packing, USPS)
        status = await admin.status(packing)
        assert status["station"]["recording_since"] is not None
        await shown_for(packer, USPS, 2.5)
        packer.show(None)  # nothing more to scan: the idle timeout (5 s) ends the last clip
        await recording(admin, packing, None)
        status = await admin.status(packing)
        plain_sources = [
            source
            for source in live.state.media.all_sources()
            if source.room_id == camera_room(plain) and source.kind == "video"
        ]
    finally:
        for camera in cameras:
            await camera.aclose()
        await agent.aclose()
        await agent_http.close()

    station = status["station"]
    assert station["clips"] == 3 and station["last_tracking_number"] == USPS
    assert plain_sources and not any(source.decoding for source in plain_sources)

    archive = live.state.archive
    site_items = await archive.search(case_id=f"site:{site['id']}")
    assert sorted(item.record.tracking_number or "" for item in site_items) == sorted(
        [UPS, USPS, USPS, POST]
    ), "one clip per parcel and station, nothing from the plain camera"
    clips: dict[str, list[int]] = {}
    for number in (UPS, POST):
        (item,) = await archive.search(tracking_number=number)
        record = item.record
        assert record.kind.value == "clip" and record.use.value == "packing"
        assert record.logistics_stage is not None
        assert record.logistics_stage.value == "packing"
        assert record.case_id == f"site:{site['id']}" and record.operator == f"station:{packing}"
        assert record.note.startswith(
            f"Site Valencia DC ({site['id']}) · camera Packing line 1 ({packing}) · packing station"
        )
        clips[number] = await check_clip(live, item, packer, number)

    # Same tracking number at two stations: packing, then return receipt (stage order).
    packed, received = await archive.search(tracking_number=USPS)
    assert [packed.record.logistics_stage, received.record.logistics_stage] == [
        "packing",
        "return_receipt",
    ]
    assert received.record.started_at < packed.record.started_at, "stage order, not time order"
    assert received.record.use.value == "return" and f"({receiving})" in received.record.note
    clips[USPS] = await check_clip(live, packed, packer, USPS)
    await check_clip(live, received, receiver, USPS)
    # The next scan ends a clip: each clip ends soon after the next parcel appeared, and the
    # last one ended by the idle timeout, after its parcel was gone.
    for number, following in ((UPS, POST), (POST, USPS)):
        appeared = packer.frames_of(following)[0]
        assert appeared <= clips[number][-1] <= appeared + 4 * FPS, (number, clips[number][-1])
    gone = packer.frames_of(USPS)[-1]
    assert gone + 3 * FPS <= clips[USPS][-1] <= gone + 9 * FPS, "idle 5 s after the last read"

    async with admin.http.get(
        f"{live.base_url}/api/evidence",
        params={"tracking_number": USPS},
        headers=live.headers(),
    ) as response:
        found = (await response.json())["items"]
    assert [item["item_id"] for item in found] == [packed.item_id, received.item_id]
    linked = await admin.call("GET", f"/api/sites/{site['id']}/evidence")
    assert {item["camera_id"] for item in linked["items"]} == {packing, receiving}


class TestReturnsQc:
    @pytest.fixture
    def service_settings(self, tmp_path: Path) -> Settings:
        return Settings(data_dir=tmp_path / "var", port=0, shutdown_timeout_s=2.0, grading=True)

    async def test_a_camera_made_a_returns_qc_station_while_live_grades_each_parcel(
        self, live_service: LiveService, admin: Admin
    ) -> None:
        live = live_service
        archive = live.state.archive
        site = (await admin.call("POST", "/api/sites", json={"name": "Refurb"}))["site"]
        camera_id, token = await admin.station_camera(site["id"], "QC bench")
        path = f"/api/cameras/{camera_id}"
        track = ParcelVideoTrack()
        camera = await phone(live, admin.http, token)

        async def filed(number: str) -> EvidenceItem:
            async def found() -> bool:
                return bool(await archive.search(tracking_number=number))

            await until(found)
            (item,) = await archive.search(tracking_number=number)
            return item

        try:
            await camera.publish(track, receive_audio=False)
            await shown_for_frames(track, 2 * FPS)
            (source,) = [
                s
                for s in live.state.media.all_sources()
                if s.room_id == camera_room(camera_id) and s.kind == "video"
            ]
            assert not source.decoding, "a plain camera is not decoded"

            # Made a station while it publishes: no restart, no reconnect.
            await admin.call("PATCH", path, json={"station_stage": "returns_qc"})
            assert source.decoding
            track.show(POST)
            await recording(admin, camera_id, POST)
            await shown_for(track, POST, 2.5)  # graded meanwhile
            track.show(UPS)  # the next parcel: graded on its own
            await recording(admin, camera_id, UPS)
            await shown_for(track, UPS, 2.5)
            track.show(None)
            await shown_for_frames(track, len(track.shown) + FPS)

            # No longer a station: its clip ends at once, and it is not decoded any more.
            await admin.call("PATCH", path, json={"station_stage": None})
            await filed(UPS)
            assert not source.decoding

            # A station again; the camera leaves while it records: the clip ends and is filed.
            await admin.call("PATCH", path, json={"station_stage": "returns_qc"})
            track.show(USPS)
            await recording(admin, camera_id, USPS)
            await shown_for(track, USPS, 2.0)
            track.show(None)
            await shown_for_frames(track, len(track.shown) + FPS)
        finally:
            await camera.aclose()

        views = {}
        for number in (POST, UPS, USPS):
            item = await filed(number)
            record = item.record
            assert record.logistics_stage is not None
            assert record.logistics_stage.value == "refurbishment_qc"
            assert record.use.value == "return" and record.kind.value == "clip"
            model = (record.grading or {})["model"]
            assert model["grade"] in {"A", "B", "C", "D"}
            assert 0 < model["confidence"] <= 1 and model["model_version"]
            assert isinstance(model["damage"], list) and model["frames"]["analysed"] >= 1
            (code,) = [c for c in model["codes"] if c["text"] == number]
            assert code["format"] == "Code128"
            assert {"ref": "tracking_number", "value": number, "exact": True} in code["matches"]
            assert record.grade == model["grade"], "the archive finds it by grade"
            await check_clip(live, item, track, number)
            views[number] = model
        # Each parcel's view is its own: the one before it is not in it.
        assert POST not in {c["text"] for c in views[UPS]["codes"]}


async def test_an_rtsp_camera_over_a_station_files_a_clip_per_parcel(
    live_service: LiveService, admin: Admin
) -> None:
    """A fixed IP camera over the returns dock (the usual station camera): pulled over RTSP,
    forwarded as it is, decoded for the station reader. A snapshot taken by hand from it is
    return evidence too."""
    live = live_service
    site = (await admin.call("POST", "/api/sites", json={"name": "Leipzig DC"}))["site"]

    def label(number: str) -> list[bytes]:
        return [row.tobytes() for row in barcode_label(number)]

    # The bench is empty for 2 s, then shows UPS for 4 s, POST for 4 s, then nothing.
    shown = {UPS: range(2 * FPS, 6 * FPS), POST: range(6 * FPS, 10 * FPS)}
    scenes = [(2 * FPS, None), (4 * FPS, label(UPS)), (4 * FPS, label(POST))]
    camera = RtspCamera(width=640, height=480, fps=FPS, gop=FPS, scenes=scenes)
    await camera.start()
    try:
        body = await admin.call(
            "POST", f"/api/sites/{site['id']}/cameras",
            json={
                "name": "Returns dock 2", "kind": "rtsp", "rtsp_url": camera.url(),
                "station_stage": "receiving", "station_idle_timeout_s": 5,
            },
        )  # fmt: skip
        camera_id = body["camera"]["id"]
        await recording(admin, camera_id, UPS)
        await recording(admin, camera_id, POST)
        await recording(admin, camera_id, None)  # the idle timeout ends the last clip
        status = await admin.status(camera_id)
        snapshot = (await admin.call("POST", f"/api/cameras/{camera_id}/snapshots", json={}))[
            "item"
        ]
    finally:
        await camera.stop()
    assert status["source"] == "rtsp" and status["transcoding"] is None
    assert status["station"]["clips"] == 2

    archive = live.state.archive
    for number, frames in shown.items():
        (item,) = await archive.search(tracking_number=number)
        record = item.record
        assert record.kind.value == "clip" and record.operator == f"station:{camera_id}"
        assert record.use.value == "return"
        assert record.logistics_stage is not None
        assert record.logistics_stage.value == "return_receipt"
        [video] = [f for f in item.files if f.name.startswith("video-")]
        path = await archive.stored_path(item.item_id, video.name)
        recorded = await asyncio.to_thread(clip_frames, path)
        numbers = [n for n, _ in recorded]
        assert numbers == sorted(numbers), "the camera's frames in order"
        assert set(frames) <= set(numbers), (number, numbers[0], numbers[-1])
        assert 0 < frames[0] - numbers[0] <= 6 * FPS, "a few seconds of pre-roll"
        middle = dict(recorded)[frames[len(frames) // 2]]
        read = await asyncio.to_thread(read_codes, middle.to_ndarray(format="rgb24"))
        assert number in {code.text for code in read}, "the recorded picture shows the label"
    [taken] = [
        i
        for i in await archive.search(case_id=f"site:{site['id']}")
        if i.item_id == snapshot["item_id"]
    ]
    assert taken.record.kind.value == "snapshot" and taken.record.use.value == "return"
    assert taken.record.logistics_stage is not None
    assert taken.record.logistics_stage.value == "return_receipt"
