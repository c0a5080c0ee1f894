"""Where a clip has gaps, in its evidence record: the capture service files what the recorder
found in the record that is hashed and logged, the API's item carries it, a dispute bundle's
summary shows it and the offline checker verifies it; a clip record from before gaps were
recorded still reads and verifies."""

from __future__ import annotations

import json
import zipfile
from collections.abc import AsyncIterator, Collection
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from evidence import EvidenceArchive, EvidenceItem, EvidenceRecord, Use, export_bundle
from media import CaptureHandle, Gap, RecordedFile, Recorder
from server.capture import CaptureConfig, CaptureService, CaptureTarget
from server.cluster.captures import _file, _file_json
from server.http.wire import item_json
from signaling import Identity, Role
from tests.evidence.test_export import fails, run_verify
from tests.fakes.encoded import audio_frames, by_arrival, video_frames
from tests.media.test_recorder import feed

TARGET = CaptureTarget(
    room_id="camera:cam-1",
    case_id="site:site-1",
    use=Use.PACKING,
    tracking_number="1Z999AA10123456784",
    site_id="site-1",
    camera_id="cam-1",
)
OPERATOR = Identity(subject="user:7", name="Pat Packer", role=Role.AGENT)


class RecordingCamera:
    """The media engine's ``save_last``, recording a camera whose link lost 2 s (3 s to 5 s
    of its 7) with a real :class:`media.Recorder`; or one with a clean link."""

    def __init__(self, *, lossy: bool) -> None:
        holes = [(3.0, 5.0)] if lossy else []
        self.frames = by_arrival(
            video=video_frames(7.0, keyframes_at=(0.0, 5.0), holes=holes),
            audio=audio_frames(7.0, holes=holes),
        )

    async def save_last(
        self,
        room_id: str,
        seconds: float,
        directory: Path,
        *,
        name: str,
        participants: Collection[str] | None = None,
    ) -> list[RecordedFile]:
        recorder = Recorder(
            directory / f"{name}-cam.webm", "cam", "webm", origin=0.0, requested_at=0.0
        )
        recorder.add_track("video", "video")
        recorder.add_track("audio", "audio")
        recorder.start()
        await feed(recorder, self.frames)
        return [await recorder.aclose()]

    async def start_capture(self, *args: Any, **kwargs: Any) -> CaptureHandle:
        raise AssertionError("not used")

    async def stop_capture(self, handle: CaptureHandle) -> list[RecordedFile]:
        raise AssertionError("not used")

    async def snapshot(
        self, room_id: str, participants: Collection[str] | None = None
    ) -> bytes | None:
        return None


class NoGrading:
    def latest(self, case_id: str) -> dict[str, Any] | None:
        return None

    def frames(self, case_id: str) -> list[Any]:
        return []


@pytest.fixture
async def archive(tmp_path: Path) -> AsyncIterator[EvidenceArchive]:
    opened = await EvidenceArchive.open(tmp_path / "data")
    try:
        yield opened
    finally:
        await opened.aclose()


async def saved_clip(archive: EvidenceArchive, tmp_path: Path, *, lossy: bool) -> EvidenceItem:
    config = CaptureConfig(
        spool_dir=tmp_path / "spool",
        preroll_s=10.0,
        privacy_notice_version="pn-1",
        retention_class="standard",
    )
    service = CaptureService(config, RecordingCamera(lossy=lossy), archive, NoGrading())
    return await service.save_last_target(TARGET, 7.0, OPERATOR, stage="packing", note="")


def summary_row(bundle: Path, item_id: str, name: str) -> str:
    with zipfile.ZipFile(bundle) as zf:
        summary = zf.read("summary.html").decode()
    section = summary[summary.index(f"<h2>Item {item_id}</h2>") :]
    section = section[: section.index("</section>")]
    start = section.index(f"<tr><th>{name}</th><td>") + len(f"<tr><th>{name}</th><td>")
    return section[start : section.index("</td>", start)]


async def test_a_lossy_clip_is_filed_with_its_gaps_and_verifies(
    archive: EvidenceArchive, tmp_path: Path
) -> None:
    lossy = await saved_clip(archive, tmp_path, lossy=True)
    clean = await saved_clip(archive, tmp_path, lossy=False)
    video_gap = {
        "file": "video-1.webm",
        "kind": "video",
        "start_s": 2.933,
        "end_s": 5.0,
        "reason": "no frames",
    }
    audio_gap = {**video_gap, "kind": "audio", "start_s": 2.98}
    assert lossy.record.details == {"gaps": [video_gap, audio_gap]}
    assert clean.record.details == {"gaps": []}

    # What the archive logged and hashed is what it reads back, and it verifies.
    stored = await archive.get(lossy.item_id, actor="reviewer", reason="dispute")
    assert stored.record.details == lossy.record.details
    assert (await archive.verify(lossy.item_id)).ok
    # The API's item.
    body = json.loads(json.dumps(item_json(lossy)))
    assert body["record"]["details"]["gaps"] == [video_gap, audio_gap]

    # A clip record from before gaps were recorded: no details at all.
    old_files = tmp_path / "old"
    old_files.mkdir()
    (old_files / "clip.webm").write_bytes(b"\x1a\x45\xdf\xa3" + bytes(1000))
    old = await archive.add_item(
        [("video-1.webm", old_files / "clip.webm")],
        EvidenceRecord(
            case_id="site:site-1",
            use=Use.PACKING,
            operator="Pat Packer",
            started_at=datetime.now(UTC) - timedelta(minutes=1),
            ended_at=datetime.now(UTC),
            kind="clip",  # type: ignore[arg-type]
        ),
        actor="user:7",
    )
    assert old.record.details is None and "details" not in item_json(old)["record"]
    assert (await archive.verify(old.item_id)).ok

    bundle = await export_bundle(
        archive,
        [lossy.item_id, clean.item_id, old.item_id],
        actor="reviewer",
        reason="carrier claim",
        dest_dir=tmp_path / "out",
    )
    assert summary_row(bundle, lossy.item_id, "Gaps") == (
        "video-1.webm video 2.9-5.0 s (no frames); video-1.webm audio 3.0-5.0 s (no frames)"
    )
    assert summary_row(bundle, clean.item_id, "Gaps") == "none"
    assert summary_row(bundle, old.item_id, "Gaps") == "—"
    code, output = run_verify(bundle, "--expect-key-id", archive.key_id)
    assert code == 0 and not fails(output), output


def test_gaps_cross_between_nodes() -> None:
    """A clip recorded on a room's home node comes back to the node that files it with its
    gaps; one from a node that records none has none."""
    recorded = RecordedFile(
        path=Path("/spool/x/clip-cam.webm"),
        participant_id="cam",
        container="webm",
        codecs=("vp8", "opus"),
        started_at=1.0,
        ended_at=8.0,
        frames=400,
        keyframes=2,
        bytes=1000,
        duration_s=7.0,
        preroll_s=0.0,
        dropped=3,
        gaps=(Gap("video", 1.0, 2.0, "waited for keyframe"),),
    )
    wire = json.loads(json.dumps(_file_json(recorded)))
    assert _file(wire) == recorded
    del wire["gaps"]
    assert _file(wire).gaps == ()
