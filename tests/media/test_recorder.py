"""Recording through the engine over loopback: encoded frames copied into playable files."""

from __future__ import annotations

import asyncio
import hashlib
import signal
import sys
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path

import av
import cv2
import numpy as np
import pytest
from aiortc import RTCPeerConnection

from media import (
    Gap,
    MediaConfig,
    MediaEngine,
    MediaError,
    NothingToRecord,
    RecordedFile,
    Recorder,
)
from media.keyframes import EncodedFrame
from tests.fakes.camera import (
    NumberedVideoTrack,
    ToneAudioTrack,
    client_accept,
    client_offer,
    client_pc,
    read_frame_number,
    wait_connected,
)
from tests.fakes.encoded import audio_frames, by_arrival, video_frames

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


# -- a recorder fed directly: where the file has gaps ---------------------------------------------

VIDEO, AUDIO = "video-cam", "audio-mic"


def recorder_for(path: Path, *, audio: bool = True, queue_size: int = 1000) -> Recorder:
    recorder = Recorder(
        path, "customer", "webm", origin=0.0, requested_at=0.0, queue_size=queue_size
    )
    recorder.add_track(VIDEO, "video")
    if audio:
        recorder.add_track(AUDIO, "audio")
    return recorder


async def drained(recorder: Recorder) -> None:
    async with asyncio.timeout(WAIT):
        while recorder.backlog:  # noqa: ASYNC110 - the writer thread sets no event per frame
            await asyncio.sleep(0.01)


async def feed(recorder: Recorder, frames: list[tuple[str, EncodedFrame]]) -> None:
    """Write ``frames`` without the writer falling behind (it catches up every few)."""
    for i, (key, frame) in enumerate(frames):
        recorder.write(key, frame)
        if i % 40 == 39:
            await drained(recorder)


def packet_times(path: Path) -> tuple[dict[str, list[float]], int]:
    """Seconds of every packet per stream type in the file, decoding each one (raising on
    any error, to the end); and the number of video frames decoded."""
    times: dict[str, list[float]] = {"video": [], "audio": []}
    pictures = 0
    with av.open(str(path)) as container:
        container.streams.video[0].codec_context.options = {"err_detect": "explode"}
        for packet in container.demux():
            if packet.size == 0 or packet.pts is None or packet.time_base is None:
                continue
            times[packet.stream.type].append(float(packet.pts * packet.time_base))
            decoded = packet.decode()
            if packet.stream.type == "video":
                pictures += len(decoded)
    return times, pictures


def assert_in_file(gap: Gap, times: dict[str, list[float]], *, fps: int = 15) -> None:
    """The file has no packet of the gap's track inside it and one where it ends; where it
    starts, the last frame before it ("no frames"), or the one before the first frame
    dropped (video "waited for keyframe")."""
    track = times[gap.kind]
    assert not [t for t in track if gap.start_s + 0.002 < t < gap.end_s - 0.002], gap
    assert min(abs(t - gap.end_s) for t in track) <= 0.002, gap
    before = max(t for t in track if t <= gap.start_s + 0.002)
    lead = 1 / fps if gap.reason == "waited for keyframe" else 0.0
    assert gap.start_s - before == pytest.approx(lead, abs=0.002), gap


async def test_a_clip_over_a_lossy_link_plays_and_says_where_it_has_gaps(tmp_path: Path) -> None:
    # Keyframes at 0 and 2 s, and (as after an outage the jitter buffer skips to one) at 5 s.
    video = video_frames(7.0, keyframes_at=(0.0, 2.0, 5.0), holes=[(3.0, 5.0)])
    audio = audio_frames(7.0, holes=[(3.0, 5.0)])
    frames = by_arrival(**{VIDEO: video, AUDIO: audio})
    # The writer is busy for the first 1.5 s: its queue fills in the first second and what
    # comes in the next half second is dropped (video then waits for the keyframe at 2 s).
    behind = sum(1 for _, frame in frames if frame.arrival < 1.0)
    early = [(key, frame) for key, frame in frames if frame.arrival < 1.5]
    recorder = recorder_for(tmp_path / "lossy.webm", queue_size=behind)
    for key, frame in early:
        recorder.write(key, frame)
    # Each audio frame of that half second, and the video frame that started the wait for a
    # keyframe (the ones after it are not written until the keyframe, as ever).
    dropped = sum(1 for key, frame in early[behind:] if key == AUDIO) + 1
    assert recorder.dropped == dropped
    recorder.start()
    await drained(recorder)
    await feed(recorder, frames[len(early) :])
    result = await recorder.aclose()

    assert result.error is None and result.dropped == dropped
    assert result.gaps == (
        Gap("audio", 0.98, 1.5, "no frames"),
        Gap("video", 1.0, 2.0, "waited for keyframe"),
        Gap("video", 2.933, 5.0, "no frames"),  # the last frame before the outage: 44 / 15
        Gap("audio", 2.98, 5.0, "no frames"),
    )
    times, pictures = packet_times(result.path)
    written = [f for f in video if f.arrival < 1.0 or f.arrival >= 2.0]
    assert pictures == len(times["video"]) == len(written)  # every frame written plays
    assert times["video"][-1] == pytest.approx(104 / 15, abs=0.002)
    for gap in result.gaps:
        assert_in_file(gap, times)


async def test_a_clip_without_gaps_says_so(tmp_path: Path) -> None:
    recorder = recorder_for(tmp_path / "clean.webm")
    recorder.start()
    video = video_frames(3.0, keyframes_at=(0.0, 1.0, 2.0))
    await feed(recorder, by_arrival(**{VIDEO: video, AUDIO: audio_frames(3.0)}))
    result = await recorder.aclose()
    assert result.gaps == () and result.dropped == 0 and result.error is None
    times, pictures = packet_times(result.path)
    assert pictures == len(video) and len(times["audio"]) == 150


async def test_a_timestamp_jump_and_a_late_keyframe_are_gaps_in_the_file(tmp_path: Path) -> None:
    """The publisher's first keyframe comes 1 s in (the frames before it cannot be written),
    and its timestamps jump 3 s ahead at 2 s (it restarted after an outage): the file has
    both gaps wherever the frames arrived."""
    video = video_frames(4.0, keyframes_at=(0.0, 1.0))[1:]
    video = [
        replace(f, timestamp=f.timestamp + 3 * 90_000) if f.arrival >= 2.0 else f for f in video
    ]
    recorder = recorder_for(tmp_path / "jump.webm", audio=False)
    recorder.start()
    await feed(recorder, by_arrival(**{VIDEO: video}))
    result = await recorder.aclose()
    assert result.gaps == (
        Gap("video", 0.0, 1.0, "waited for keyframe"),
        Gap("video", 1.933, 5.0, "no frames"),
    )
    times, pictures = packet_times(result.path)
    assert pictures == len(times["video"]) == len(video) - 14  # from the keyframe at 1 s on
    for gap in result.gaps:
        if gap.start_s > 0:
            assert_in_file(gap, times)
    assert times["video"][0] == pytest.approx(1.0, abs=0.002)
