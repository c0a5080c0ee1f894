"""RTSP pull against a real RTSP server (Debian's GStreamer RTSP server in a subprocess, see
tests/fakes/rtsp_server.py), published through the real engine to real aiortc viewers: baseline
H.264 is forwarded byte for byte, a camera that reboots comes back by itself, B-frames and H.265
are transcoded once, bad URLs and credentials give clear masked errors, and closing is quick."""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any
from urllib.parse import quote

import numpy as np
import pytest
from aiortc import MediaStreamTrack, RTCRtpReceiver

from media import MediaConfig, MediaEngine, StreamKey
from media._aiortc import request_keyframe, tap_encoded_frames
from media._rtsp_session import _continues_picture, _ParameterSets
from media.ingest import Backoff, RtspPull, RtspState, RtspStatus, mask_url
from media.keyframes import EncodedFrame, codec_of, h264_size, is_keyframe
from tests.fakes.camera import TrackReader, client_accept, client_offer, client_pc
from tests.fakes.rtsp_server import RtspCamera, free_port
from tests.waits import until

ROOM = "site-1:camera-1"
CAMERA = "camera-1"
#: With characters a URL must percent-encode: masked in both spellings.
PASSWORD = "pa55@Secret:w0rd/%"
ENCODED = quote(PASSWORD, safe="")
WAIT = 10.0
FAST = Backoff(initial_s=0.2, max_s=1.0, jitter=0.1)


def units(data: bytes) -> list[bytes]:
    """An H.264 access unit as its NAL units, whatever their start codes, without SEI and
    access unit delimiters (aiortc's packetizer, on the server's side, may drop both)."""
    nals = [nal.strip(b"\x00") for nal in data.split(b"\x00\x00\x01")]
    return [nal for nal in nals if nal and nal[0] & 0x1F not in (6, 9)]


def sps_profile(data: bytes) -> int | None:
    for nal in units(data):
        if nal[0] & 0x1F == 7:
            return nal[1]
    return None


class Viewer:
    """An agent's browser watching the camera: an aiortc peer that keeps the encoded frames it
    receives and decodes them (frame numbers drawn by the fake camera)."""

    def __init__(self, engine: MediaEngine, participant_id: str = "agent") -> None:
        self.engine = engine
        self.participant_id = participant_id
        self.pc = client_pc()
        self.payloads: list[bytes] = []
        self.video: TrackReader | None = None
        self.audio: TrackReader | None = None
        self.receiver: RTCRtpReceiver | None = None
        self.pc.addTransceiver("video", direction="recvonly")
        self.pc.addTransceiver("audio", direction="recvonly")
        self.pc.on("track", self._on_track)

    def _on_track(self, track: MediaStreamTrack) -> None:
        if track.kind == "audio":
            self.audio = TrackReader(track)
            return
        self.receiver = next(r for r in self.pc.getReceivers() if r.track is track)
        tap_encoded_frames(self.receiver, self._on_encoded)
        self.video = TrackReader(track)

    def _on_encoded(self, mime: str, rate: int, data: bytes, timestamp: int, head: bytes) -> bool:
        if codec_of(mime) == "h264":
            self.payloads.append(data)
        return True

    async def watch(self) -> TrackReader:
        offer = await client_offer(self.pc)
        answer = await self.engine.answer(ROOM, self.participant_id, offer)
        await client_accept(self.pc, answer)
        await until(lambda: self.video is not None)
        assert self.video is not None
        return self.video

    def keyframes(self) -> int:
        return sum(is_keyframe("h264", data) for data in self.payloads)

    async def aclose(self) -> None:
        for reader in (self.video, self.audio):
            if reader is not None:
                await reader.aclose()
        await self.pc.close()


class CountingSink:
    """The grading pipeline's place: counts the pictures the sampler takes from the camera."""

    def __init__(self) -> None:
        self.sampled = 0
        self.shapes: set[tuple[int, ...]] = set()

    def wants(self, stream: StreamKey) -> bool:
        return True

    def stream_started(self, stream: StreamKey) -> None:
        pass

    def frame_sampled(self, stream: StreamKey, image: np.ndarray[Any, Any], ts: float) -> None:
        self.sampled += 1
        self.shapes.add(image.shape)

    def stream_ended(self, stream: StreamKey) -> None:
        pass


@pytest.fixture
def sink() -> CountingSink:
    return CountingSink()


@pytest.fixture
async def engine(sink: CountingSink) -> AsyncIterator[MediaEngine]:
    engine = MediaEngine(MediaConfig(recording=False, sample_fps=5), frame_sink=sink)
    yield engine
    await engine.aclose()


@pytest.fixture
async def viewers(engine: MediaEngine) -> AsyncIterator[Callable[[str], Viewer]]:
    made: list[Viewer] = []

    def make(participant_id: str = "agent") -> Viewer:
        viewer = Viewer(engine, participant_id)
        made.append(viewer)
        return viewer

    yield make
    for viewer in made:
        await viewer.aclose()


@pytest.fixture
async def pulls() -> AsyncIterator[Callable[..., RtspPull]]:
    made: list[RtspPull] = []

    def make(engine: MediaEngine, url: str, **kwargs: Any) -> RtspPull:
        kwargs.setdefault("backoff", FAST)
        pull = RtspPull(engine, ROOM, kwargs.pop("participant_id", CAMERA), url, **kwargs)
        made.append(pull)
        pull.start()
        return pull

    yield make
    for pull in made:
        await pull.aclose()


def rtsp_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("media-rtsp-")]


# -- without a camera -----------------------------------------------------------------------------


def test_mask_url_hides_the_credentials_and_secret_query_values() -> None:
    # The user name is half of the credentials (and often the camera's default): masked too.
    assert mask_url("rtsp://admin:hunter2@10.0.0.5:554/Streaming/101") == (
        "rtsp://***@10.0.0.5:554/Streaming/101"
    )
    assert mask_url("rtsp://admin@cam.local/live") == "rtsp://***@cam.local/live"
    assert mask_url("rtsp://cam.local/live") == "rtsp://cam.local/live"
    assert mask_url("rtsp://a:p%40ss@cam/x?user=a&password=s3&channel=1") == (
        "rtsp://***@cam/x?user=a&password=***&channel=1"
    )
    assert mask_url("rtsp://op%40site:p@[fd00::5]:8554/x") == "rtsp://***@[fd00::5]:8554/x"


def test_backoff_grows_exponentially_is_capped_and_jittered() -> None:
    backoff = Backoff(initial_s=0.5, max_s=8.0, factor=2.0, jitter=0.2)
    middle = [backoff.delay(n, lambda: 0.5) for n in range(7)]
    assert middle == [0.5, 1.0, 2.0, 4.0, 8.0, 8.0, 8.0]
    assert backoff.delay(1, lambda: 0.0) == pytest.approx(0.8)
    assert backoff.delay(1, lambda: 1.0) == pytest.approx(1.2)
    assert backoff.delay(10, lambda: 1.0) == 8.0  # jitter never exceeds the cap
    assert backoff.delay(10_000) <= 8.0


def test_a_url_that_is_not_rtsp_is_refused_without_showing_its_password() -> None:
    with pytest.raises(ValueError) as info:
        RtspPull(MediaEngine(), ROOM, CAMERA, "http://user:topsecret@cam/stream")
    assert "topsecret" not in str(info.value) and "user" not in str(info.value)
    assert "http://***@cam/stream" in str(info.value)


SPS = b"\x00\x00\x00\x01\x67\x42\xc0\x14\xda\x05\x07"
PPS = b"\x00\x00\x00\x01\x68\xce\x3c\x80"
IDR = b"\x00\x00\x00\x01\x65\x88\x84\x06"  # first_mb_in_slice 0: starts a picture
IDR_REST = b"\x00\x00\x00\x01\x65\x01\xe2\x20"  # first_mb_in_slice > 0: continues one
P = b"\x00\x00\x00\x01\x41\x9a\x21"


def test_keyframes_without_parameter_sets_get_the_newest_ones() -> None:
    # A camera that sends SPS/PPS only in the SDP (extradata): WebRTC receivers need them
    # in band, in front of every keyframe.
    sets = _ParameterSets(SPS + PPS)
    assert sets.apply(IDR) == (SPS + PPS + IDR, True)
    assert sets.apply(P) == (P, False)
    other = SPS[:-1] + b"\x08"  # the camera changed its resolution
    assert sets.apply(other + PPS + IDR) == (other + PPS + IDR, True)
    assert sets.apply(IDR) == (other + PPS + IDR, True)
    assert _ParameterSets().apply(IDR) == (IDR, True)  # nothing known yet: as it is
    # A keyframe cut into slices repeats them: they are kept once each.
    sets.apply(SPS + PPS + IDR + SPS + PPS + IDR_REST)
    assert sets.apply(IDR) == (SPS + PPS + IDR, True)


def test_slices_that_continue_a_picture_are_told_apart() -> None:
    assert not _continues_picture(SPS + PPS + IDR)
    assert _continues_picture(SPS + PPS + IDR_REST)
    assert not _continues_picture(P) and not _continues_picture(SPS + PPS)


# -- with a camera --------------------------------------------------------------------------------


async def test_baseline_camera_is_forwarded_as_it_is_to_a_viewer(
    engine: MediaEngine,
    viewers: Callable[[str], Viewer],
    pulls: Callable[..., RtspPull],
    sink: CountingSink,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG, logger="media")
    dump = tmp_path / "camera.h264"
    statuses: list[RtspStatus] = []
    async with RtspCamera(audio="opus", user="cam", password=PASSWORD, dump=dump) as camera:
        pull = pulls(engine, camera.url(), on_status=statuses.append)
        await until(lambda: pull.status.state is RtspState.ONLINE)
        (source,) = [s for s in engine.sources(ROOM) if s.kind == "video"]
        server_got: list[EncodedFrame] = []
        source.add_encoded_tap(server_got.append)

        viewer = viewers("agent")
        reader = await viewer.watch()
        async with asyncio.timeout(WAIT):
            await reader.wait_until(lambda r: len(r.numbers) >= 40)
        assert viewer.audio is not None
        async with asyncio.timeout(WAIT):
            await viewer.audio.wait_until(lambda r: r.audible >= 10)
        await until(lambda: sink.sampled >= 3)
        status = pull.status
        stats = {s.kind: s for s in engine.source_stats(ROOM)}

    # The viewer decodes every frame of the camera from its first keyframe on, in order.
    assert reader.numbers == list(range(reader.numbers[0], reader.numbers[0] + len(reader.numbers)))
    # What the viewer got is what the server got from the camera, NAL unit for NAL unit...
    # (The viewer starts with the source's cached keyframe group, which arrived before this
    # test's tap: compare from the first frame the tap saw.)
    got = [units(data) for data in viewer.payloads]
    sent = [units(frame.data) for frame in server_got]
    first = next(i for i, nals in enumerate(got) if nals in sent)
    got = got[first:]
    start = sent.index(got[0])
    assert len(got) >= 10 and got == sent[start : start + len(got)]
    assert is_keyframe("h264", viewer.payloads[0])
    assert h264_size(viewer.payloads[0]) == (320, 240)
    # ...and what the camera's encoder produced: nothing was re-encoded on the way.
    encoded = dump.read_bytes()
    slices = [nal for frame in got for nal in frame if nal[0] & 0x1F in (1, 5)]
    assert len(slices) >= 20 and all(nal in encoded for nal in slices)

    assert status.state is RtspState.ONLINE
    assert (status.codec, status.profile, status.width, status.height) == (
        "h264",
        "Constrained Baseline",
        320,
        240,
    )
    assert status.transcoding is None and status.error is None
    assert status.audio == "audio opus forwarded"
    assert status.fps is not None and 13 <= status.fps <= 17
    assert status.url == f"rtsp://***@127.0.0.1:{camera.port}/cam"
    assert [s.state for s in statuses][:2] == [RtspState.CONNECTING, RtspState.ONLINE]
    assert stats["video"].codec == "h264" and stats["video"].transcoding is None
    assert stats["audio"].codec == "opus"
    # Decoded once, in the worker, only for the sampler: pictures of the camera's size.
    assert stats["video"].decoding and sink.shapes == {(240, 320, 3)}
    logged = "\n".join(record.getMessage() for record in caplog.records)
    assert "RTSP camera rtsp://***@127.0.0.1" in logged
    assert PASSWORD not in logged and ENCODED not in logged
    assert "//cam:" not in logged and "//cam@" not in logged  # the user name


async def test_camera_that_restarts_comes_back_by_itself(
    engine: MediaEngine, viewers: Callable[[str], Viewer], pulls: Callable[..., RtspPull]
) -> None:
    statuses: list[RtspStatus] = []
    camera = RtspCamera()
    await camera.start()
    try:
        pull = pulls(engine, camera.url(), on_status=statuses.append)
        await until(lambda: pull.status.state is RtspState.ONLINE)
        viewer = viewers("agent")
        reader = await viewer.watch()
        async with asyncio.timeout(WAIT):
            await reader.wait_until(lambda r: len(r.numbers) >= 10)

        await camera.stop()  # the camera loses power
        await until(lambda: pull.status.state is RtspState.RETRYING)
        assert engine.source_stats(ROOM) == []  # unpublished while away
        await until(lambda: pull.status.retries >= 2)  # refused while it reboots
        assert "refused" in (pull.status.error or "")
        seen = len(reader.numbers)

        camera = RtspCamera(port=camera.port)  # back on the same address
        await camera.start()
        await until(lambda: pull.status.state is RtspState.ONLINE)
        async with asyncio.timeout(WAIT):
            await reader.wait_until(lambda r: len(r.numbers) >= seen + 10)
        status = pull.status
        states = [s.state for s in statuses]
    finally:
        await camera.stop()

    assert states[:3] == [RtspState.CONNECTING, RtspState.ONLINE, RtspState.RETRYING]
    assert states[-2:] == [RtspState.RETRYING, RtspState.ONLINE]
    assert status.connects == 2 and status.retries == 0 and status.error is None
    # The rebooted camera numbers its frames from 0 again: the viewer decodes the new stream.
    assert min(reader.numbers[seen:]) < 60


@pytest.mark.parametrize(
    ("video", "audio", "codec", "profile"),
    [("h264-bframes", "aac", "h264", "High"), ("h265", None, "hevc", "Main")],
)
async def test_stream_browsers_cannot_take_is_transcoded_once(
    engine: MediaEngine,
    viewers: Callable[[str], Viewer],
    pulls: Callable[..., RtspPull],
    video: str,
    audio: str | None,
    codec: str,
    profile: str,
) -> None:
    async with RtspCamera(video=video, audio=audio) as camera:
        # A long GOP: only a viewer's request can make a keyframe within a second.
        pull = pulls(engine, camera.url(), keyframe_interval_s=10.0)
        await until(lambda: pull.status.state is RtspState.ONLINE)
        first, second = viewers("agent"), viewers("reviewer")
        readers = [await first.watch(), await second.watch()]
        async with asyncio.timeout(WAIT):
            for reader in readers:
                await reader.wait_until(lambda r: len(r.numbers) >= 15)
        await asyncio.sleep(0.5)  # past the rate limit of the viewers' own join requests
        before = first.keyframes()
        assert first.receiver is not None and await request_keyframe(first.receiver)
        await until(lambda: first.keyframes() > before, within=1.0)
        status = pull.status
        (stats,) = engine.source_stats(ROOM)

    assert (status.codec, status.profile, status.width, status.height) == (
        codec,
        profile,
        320,
        240,
    )
    assert status.transcoding is not None
    assert status.transcoding.startswith(f"transcoding {codec} -> h264")
    if audio is None:
        assert status.audio is None
    else:
        assert status.audio == "audio aac not forwarded (browsers are sent Opus only)"
    # Browsers get constrained baseline (profile_idc 66) in display order, from one encoder:
    # both viewers take the same H.264 stream, the engine adds no transcode of its own.
    assert sps_profile(first.payloads[0]) == 66
    for reader in readers:
        assert reader.numbers == sorted(reader.numbers)
    assert stats.codec == "h264" and stats.transcoding is None and stats.subscribers == 2


async def test_bad_credentials_and_bad_urls_give_clear_masked_errors(
    engine: MediaEngine,
    pulls: Callable[..., RtspPull],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG, logger="media")
    wrong = "Wr0ng-Secret-99"
    async with RtspCamera(user="cam", password=PASSWORD) as camera:
        refused = pulls(engine, camera.url(password=wrong), participant_id="cam-a")
        missing = pulls(engine, camera.url().replace("/cam", "/nope"), participant_id="cam-b")
        nobody = pulls(
            engine, f"rtsp://cam:{ENCODED}@127.0.0.1:{free_port()}/cam", participant_id="cam-c"
        )
        await until(lambda: all(p.status.retries >= 2 for p in (refused, missing, nobody)))

    errors = {p.participant_id: p.status.error or "" for p in (refused, missing, nobody)}
    port = camera.port
    assert errors["cam-a"] == (
        f"rtsp://***@127.0.0.1:{port}/cam: the camera refused the credentials (401 Unauthorized)"
    )
    assert errors["cam-b"].endswith("the camera has no stream at this path (404 Not Found)")
    assert errors["cam-c"].endswith("connection refused (nothing listens at that host and port)")
    for pull in (refused, missing, nobody):
        assert pull.status.state is RtspState.RETRYING and pull.status.connects == 0
        assert "***" in pull.status.url and pull.status.retry_in_s is not None
    assert engine.source_stats(ROOM) == []
    logged = "\n".join(record.getMessage() for record in caplog.records)
    assert "401 Unauthorized" in logged
    assert wrong not in logged and PASSWORD not in logged and ENCODED not in logged
    assert wrong not in repr(refused.status) and ENCODED not in repr(nobody.status)
    assert "//cam:" not in logged and "//cam:" not in str(errors)  # the user name


async def test_the_address_hook_picks_where_ffmpeg_connects(
    engine: MediaEngine, pulls: Callable[..., RtspPull]
) -> None:
    # A name that exists nowhere (RFC 6761): the pull can only reach the camera through the
    # address the hook hands over, since FFmpeg is given that address and looks nothing up.
    asked: list[tuple[str, int]] = []

    async def pinned(host: str, port: int) -> str:
        asked.append((host, port))
        return "127.0.0.1"

    async with RtspCamera(user="cam", password=PASSWORD) as camera:
        url = camera.url().replace("@127.0.0.1:", "@camera.invalid:")
        pull = pulls(engine, url, resolve_address=pinned)
        await until(lambda: pull.status.state is RtspState.ONLINE)
        assert asked == [("camera.invalid", camera.port)]
        assert pull.status.url == f"rtsp://***@camera.invalid:{camera.port}/cam"


async def test_a_refused_address_ends_the_attempt_before_connecting(
    engine: MediaEngine, pulls: Callable[..., RtspPull], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="media")
    asked: list[tuple[str, int]] = []

    async def refuse(host: str, port: int) -> str:
        asked.append((host, port))
        raise OSError(f"{host} (10.0.0.7) is a private address")

    pull = pulls(engine, f"rtsp://cam:{ENCODED}@nvr.example.com/live", resolve_address=refuse)
    await until(lambda: pull.status.retries >= 2)
    assert asked[:2] == [("nvr.example.com", 554)] * 2
    status = pull.status
    assert status.state is RtspState.RETRYING and status.connects == 0
    assert status.error == (
        "rtsp://***@nvr.example.com/live: nvr.example.com (10.0.0.7) is a private address"
    )
    # No worker ever ran: nothing was handed to FFmpeg.
    assert not pull.worker_alive and rtsp_threads() == []
    logged = "\n".join(record.getMessage() for record in caplog.records)
    assert "is a private address; retry 1" in logged and ENCODED not in logged


async def test_aclose_ends_the_worker_at_once_while_streaming(
    pulls: Callable[..., RtspPull],
) -> None:
    engine = MediaEngine(MediaConfig(recording=False))  # nothing samples the camera
    try:
        async with RtspCamera() as camera:
            pull = pulls(engine, camera.url())
            await until(lambda: pull.status.state is RtspState.ONLINE)
            (source,) = engine.sources(ROOM)
            await until(lambda: source.frames >= 15)
            assert pull.worker_alive and rtsp_threads()
            started = time.monotonic()
            await pull.aclose()
            elapsed = time.monotonic() - started
        assert elapsed < 0.5, elapsed
        assert not pull.worker_alive and pull.status.state is RtspState.STOPPED
        assert engine.source_stats(ROOM) == [] and not source.live
        # Forwarded without a single decode: nobody asked for pictures.
        assert source.decoded_frames == 0
        await until(lambda: not rtsp_threads(), within=1.0)
    finally:
        await engine.aclose()


async def test_aclose_of_a_camera_that_never_answers_is_bounded_by_the_open_timeout(
    engine: MediaEngine, pulls: Callable[..., RtspPull]
) -> None:
    # Accepts the TCP connection, then says nothing: FFmpeg waits in its RTSP handshake.
    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read()
        writer.close()

    server = await asyncio.start_server(silent, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        pull = pulls(engine, f"rtsp://u:{ENCODED}@127.0.0.1:{port}/cam", open_timeout_s=1.0)
        await asyncio.sleep(0.3)
        assert pull.worker_alive
        started = time.monotonic()
        await pull.aclose()
        elapsed = time.monotonic() - started
    finally:
        server.close()
    assert elapsed < 1.5, elapsed
    assert not pull.worker_alive and pull.status.state is RtspState.STOPPED
    await until(lambda: not rtsp_threads(), within=1.0)


async def test_camera_that_hangs_is_given_up_after_the_read_timeout(
    engine: MediaEngine, pulls: Callable[..., RtspPull]
) -> None:
    async with RtspCamera() as camera:
        pull = pulls(engine, camera.url(), read_timeout_s=1.0, open_timeout_s=1.0)
        await until(lambda: pull.status.state is RtspState.ONLINE)
        camera.freeze()  # the connection stays open, nothing more arrives
        frozen = time.monotonic()
        await until(lambda: pull.status.state is RtspState.RETRYING, within=3.0)
        given_up = time.monotonic() - frozen
        error = pull.status.error
        camera.thaw()
        await until(lambda: pull.status.state is RtspState.ONLINE)

        camera.freeze()  # hangs again, and the operator removes the camera meanwhile
        await asyncio.sleep(0.1)
        started = time.monotonic()
        await pull.aclose()
        closing = time.monotonic() - started
    assert error == f"{pull.url}: no data for 1 s"
    assert 0.8 < given_up < 1.6, given_up
    # A read blocked on the hung camera returns within half the read timeout.
    assert closing < 0.8, closing
    assert not pull.worker_alive and pull.status.connects == 2
