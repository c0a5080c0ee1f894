"""Recording through the engine over loopback: encoded frames copied into playable files."""

from __future__ import annotations

import asyncio
import hashlib
import signal
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import av
import cv2
import numpy as np
import pytest
from aiortc import RTCPeerConnection

from media import MediaConfig, MediaEngine, MediaError, NothingToRecord, RecordedFile
from tests.fakes.camera import (
    NumberedVideoTrack,
    ToneAudioTrack,
    client_accept,
    client_offer,
    client_pc,
    read_frame_number,
    wait_connected,
)

ROOM = "case-7"
WAIT = 15.0


@pytest.fixture
async def engine() -> AsyncIterator[MediaEngine]:
    engine = MediaEngine(MediaConfig(preroll_s=2.0, keyframe_interval_s=1.0))
    yield engine
    await engine.aclose()


class Camera:
    """A customer's browser publishing a numbered camera (and a microphone)."""

    def __init__(self, *, audio: bool = True, fps: int = 15) -> None:
        self.pc: RTCPeerConnection = client_pc()
        self.video = NumberedVideoTrack(320, 240, fps=fps)
        if audio:
            self.pc.addTrack(ToneAudioTrack(440))
        self.pc.addTrack(self.video)

    async def join(self, engine: MediaEngine, participant_id: str = "customer") -> None:
        answer = await engine.answer(ROOM, participant_id, await client_offer(self.pc))
        await client_accept(self.pc, answer)
        async with asyncio.timeout(WAIT):
            await wait_connected(self.pc)


@pytest.fixture
async def camera() -> AsyncIterator[Camera]:
    cam = Camera()
    yield cam
    await cam.pc.close()


async def wait_for(predicate: object) -> None:
    """Poll a condition on engine/aiortc state that has no event of its own."""
    assert callable(predicate)
    async with asyncio.timeout(WAIT):
        while not predicate():  # noqa: ASYNC110 - frames arrive on aiortc's own schedule
            await asyncio.sleep(0.05)


def decode_all(path: Path) -> tuple[list[int | None], list[bytes], list[bool], int]:
    """Decode every video frame (raising on any error): numbers, packet payloads, keyframe
    flags, audio frames."""
    numbers: list[int | None] = []
    payloads: list[bytes] = []
    keys: list[bool] = []
    audio = 0
    with av.open(str(path)) as container:
        video = container.streams.video[0]
        video.codec_context.options = {"err_detect": "explode"}
        streams = [video, *container.streams.audio]
        for packet in container.demux(*streams):
            if packet.size == 0:
                continue
            if packet.stream.type == "video":
                payloads.append(bytes(packet))
                keys.append(packet.is_keyframe)
                for frame in packet.decode():
                    assert isinstance(frame, av.VideoFrame)
                    numbers.append(read_frame_number(frame))
            else:
                audio += len(packet.decode())
    return numbers, payloads, keys, audio


async def test_capture_plays_and_starts_before_it_was_asked_for(
    engine: MediaEngine, camera: Camera, tmp_path: Path
) -> None:
    seen: list[bytes] = []
    await camera.join(engine)
    video = next(p for p in engine.publications("customer") if p.kind == "video")
    # Let the pre-roll fill (2 s, keyframes every 1 s).
    await wait_for(lambda: video.preroll is not None and video.preroll.span_s >= 2.5)

    number_at_start = camera.video.frames_sent
    handle = await engine.start_capture(ROOM, tmp_path, name="clip")
    assert handle.files == (tmp_path / "clip-customer.webm",)
    recorder = next(iter(video.sinks))
    original_write = recorder.write

    def spy(key: str, frame: object) -> None:
        if key.startswith("video"):
            seen.append(frame.data)  # type: ignore[attr-defined]
        original_write(key, frame)  # type: ignore[arg-type]

    recorder.write = spy  # type: ignore[method-assign]
    await wait_for(lambda: camera.video.frames_sent >= number_at_start + 30)
    [result] = await engine.stop_capture(handle)

    assert isinstance(result, RecordedFile)
    assert result.path == handle.files[0] and result.path.exists()
    assert result.codecs == ("vp8", "opus") and result.container == "webm"
    assert result.error is None and result.dropped == 0
    assert result.preroll_s >= 2.0, result
    assert result.keyframes >= 2

    numbers, payloads, keys, audio = decode_all(result.path)
    assert keys[0], "the file must start at a keyframe"
    readable = [n for n in numbers if n is not None]
    assert len(numbers) == len(payloads)  # every packet decoded to one frame
    assert readable[0] < number_at_start - 15, (readable[0], number_at_start)
    assert readable[-1] >= number_at_start + 20
    assert audio > 50
    assert result.frames >= len(payloads)
    # No re-encode: the live frames in the file are byte for byte what arrived.
    digests = [hashlib.sha256(p).digest() for p in payloads]
    live = [hashlib.sha256(p).digest() for p in seen]
    assert live and digests[-len(live) :] == live
    assert 2.5 <= result.duration_s <= 10


async def test_nothing_to_record(engine: MediaEngine, tmp_path: Path) -> None:
    with pytest.raises(NothingToRecord):
        await engine.start_capture(ROOM, tmp_path, name="x")


async def test_file_of_a_killed_process_plays_up_to_near_the_kill(tmp_path: Path) -> None:
    child = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "tests.media.record_child",
        str(tmp_path),
        stdout=asyncio.subprocess.PIPE,
        cwd=Path(__file__).parents[2],
    )
    assert child.stdout is not None
    try:
        async with asyncio.timeout(WAIT):
            path = Path((await child.stdout.readline()).decode().strip())
            first = last = -1
            while last < 0 or last - first < 45:  # 3 s of recording at 15 fps
                line = (await child.stdout.readline()).decode().split()
                assert line, "the child exited"
                last = int(line[1])
                first = last if first < 0 else first
    finally:
        child.send_signal(signal.SIGKILL)
        await child.wait()
    assert child.returncode == -signal.SIGKILL

    numbers: list[int] = []
    with av.open(str(path)) as container:
        for packet in container.demux(container.streams.video[0]):
            if packet.size:
                for frame in packet.decode():
                    number = read_frame_number(frame)
                    if number is not None:
                        numbers.append(number)
    assert numbers and numbers == sorted(numbers)
    # Plays up to within ~2 s (30 frames) of the last frame the camera sent before the kill.
    assert numbers[-1] >= last - 30, (numbers[-1], last)
    assert numbers[0] <= first + 15


async def test_keyframes_are_requested_while_armed(engine: MediaEngine, camera: Camera) -> None:
    await camera.join(engine)
    video = next(p for p in engine.publications("customer") if p.kind == "video")
    await wait_for(lambda: video.source.frames > 0)
    before = video.source.keyframes
    await asyncio.sleep(4.0)  # keyframe_interval_s=1.0; aiortc's encoder sends none by itself
    assert video.source.keyframes - before >= 3, (before, video.source.keyframes)


async def test_no_keyframe_requests_when_recording_is_off(tmp_path: Path) -> None:
    engine = MediaEngine(MediaConfig(recording=False, keyframe_interval_s=0.5))
    cam = Camera(audio=False)
    try:
        await cam.join(engine)
        publication = engine.publications("customer")[0]
        assert publication.preroll is None and publication.keyframe_task is None
        with pytest.raises(MediaError, match="disabled"):
            await engine.start_capture(ROOM, tmp_path, name="x")
    finally:
        await cam.pc.close()
        await engine.aclose()


async def test_save_last_writes_about_that_many_seconds(
    engine: MediaEngine, camera: Camera, tmp_path: Path
) -> None:
    await camera.join(engine)
    video = next(p for p in engine.publications("customer") if p.kind == "video")
    await wait_for(lambda: video.preroll is not None and video.preroll.span_s >= 2.5)
    with pytest.raises(ValueError):
        await engine.save_last(ROOM, 5.0, tmp_path, name="last")
    [result] = await engine.save_last(ROOM, 1.5, tmp_path, name="last")
    assert result.path == tmp_path / "last-customer.webm"
    numbers, payloads, keys, audio = decode_all(result.path)
    assert keys[0] and len(numbers) == len(payloads)
    # From the newest keyframe at least 1.5 s back: 1.5 s plus at most one keyframe interval.
    assert 1.5 <= result.duration_s <= 1.5 + 1.0 + 0.3, result.duration_s
    assert 20 <= len(payloads) <= 45
    assert audio > 30


async def test_capture_is_finished_when_the_publisher_leaves(
    engine: MediaEngine, camera: Camera, tmp_path: Path
) -> None:
    await camera.join(engine)
    handle = await engine.start_capture(ROOM, tmp_path, name="gone", preroll=False)
    video = next(p for p in engine.publications("customer") if p.kind == "video")
    assert video.sinks
    started = camera.video.frames_sent
    await wait_for(lambda: camera.video.frames_sent > started + 20)
    await engine.close_peer("customer")
    [result] = await engine.stop_capture(handle)
    assert result.frames > 20
    numbers, payloads, keys, _ = decode_all(result.path)
    assert keys[0] and len(numbers) == len(payloads) >= 10


async def test_snapshot_is_a_jpeg_of_the_newest_frame(engine: MediaEngine, camera: Camera) -> None:
    assert await engine.snapshot(ROOM) is None
    await camera.join(engine)
    video = next(p for p in engine.publications("customer") if p.kind == "video")
    await wait_for(lambda: bool(video.newest_picture()))
    # Nothing samples the track here: snapshots decode the pre-roll's newest group on demand.
    assert not video.source.decoding and video.source.decoded_frames == 0
    jpeg = await engine.snapshot(ROOM)
    assert jpeg is not None and jpeg[:2] == b"\xff\xd8"
    image = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR)
    assert image is not None and image.dtype == np.uint8
    assert image.shape == (240, 320, 3)
    frame = av.VideoFrame.from_ndarray(image.astype(np.uint8), format="bgr24")
    number = read_frame_number(frame)
    assert number is not None and abs(number - camera.video.frames_sent) <= 5


async def test_aclose_finishes_running_captures(camera: Camera, tmp_path: Path) -> None:
    engine = MediaEngine(MediaConfig(preroll_s=1.0))
    await camera.join(engine)
    video = next(p for p in engine.publications("customer") if p.kind == "video")
    await wait_for(lambda: video.preroll is not None and video.preroll.span_s >= 1.0)
    handle = await engine.start_capture(ROOM, tmp_path, name="end")
    await asyncio.sleep(0.5)
    await engine.aclose()
    numbers, payloads, keys, _ = decode_all(handle.files[0])
    assert keys[0] and len(numbers) == len(payloads) > 10


async def test_h264_capture_is_matroska_and_plays(tmp_path: Path) -> None:
    """A publisher that sends H.264 (what Safari prefers) is recorded into Matroska."""
    from aiortc import RTCRtpSender

    engine = MediaEngine(MediaConfig(preroll_s=2.0, keyframe_interval_s=1.0))
    camera = Camera(audio=False)
    h264 = [c for c in RTCRtpSender.getCapabilities("video").codecs if c.mimeType == "video/H264"]
    for transceiver in camera.pc.getTransceivers():
        if transceiver.kind == "video":
            transceiver.setCodecPreferences(h264)
    try:
        await camera.join(engine)
        video = next(p for p in engine.publications("customer") if p.kind == "video")
        await wait_for(lambda: video.preroll is not None and video.preroll.span_s >= 2.5)
        number_at_start = camera.video.frames_sent
        handle = await engine.start_capture(ROOM, tmp_path, name="clip")
        assert handle.files == (tmp_path / "clip-customer.mkv",)
        await wait_for(lambda: camera.video.frames_sent >= number_at_start + 30)
        [result] = await engine.stop_capture(handle)
        assert result.codecs == ("h264",) and result.container == "matroska", result
        numbers, payloads, keys, _ = decode_all(result.path)
        readable = [n for n in numbers if n is not None]
        assert keys[0], "the file must start at a keyframe"
        assert readable and readable[0] < number_at_start, (readable[:3], number_at_start)
        assert readable[-1] >= number_at_start + 20
        assert readable == sorted(readable)
    finally:
        await camera.pc.close()
        await engine.aclose()
