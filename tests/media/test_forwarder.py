"""Forwarder routing and encoded fan-out with in-memory frames (no network)."""

from __future__ import annotations

import asyncio
from fractions import Fraction
from typing import Any

import av
import numpy as np
import pytest
from aiortc import MediaStreamTrack
from aiortc.mediastreams import MediaStreamError

from media import Forwarder, TrackSource
from media.keyframes import EncodedFrame, h264_size, is_keyframe, vp8_size


def frame(
    n: int, *, kind: str = "video", key: bool = False, codec: str | None = None
) -> EncodedFrame:
    """A fake encoded frame: VP8's keyframe bit is the low bit of the first byte."""
    codec = codec or ("vp8" if kind == "video" else "opus")
    if codec == "vp8":
        data = bytes([0x10 if key else 0x11]) + n.to_bytes(4, "big")
    else:
        data = n.to_bytes(4, "big")
    rate = 90_000 if kind == "video" else 48_000
    step = 3000 if kind == "video" else 960
    return EncodedFrame(
        kind=kind,
        codec=codec,
        data=data,
        timestamp=n * step,
        clock_rate=rate,
        keyframe=is_keyframe(codec, data),
        arrival=n / 30,
    )


async def recv(track: MediaStreamTrack) -> Any:
    async with asyncio.timeout(1):
        return await track.recv()


class KeyframeCounter:
    def __init__(self) -> None:
        self.count = 0

    async def __call__(self) -> bool:
        self.count += 1
        return True


async def test_routes_others_tracks_and_reports_shortfall() -> None:
    fwd = Forwarder()
    fwd.join("room", "customer")
    fwd.join("room", "agent")
    fwd.join("other", "stranger")
    cam = fwd.publish("customer", "video", "cam")
    mic = fwd.publish("customer", "audio", "mic")
    own = fwd.subscribe("customer", "audio")
    agent_audio = fwd.subscribe("agent", "audio")
    stranger_video = fwd.subscribe("stranger", "video")

    short = fwd.route("room")
    assert short == {"agent": {"audio": 1, "video": 1}}  # no video transceiver yet
    assert own.source is None  # never your own track
    assert stranger_video.source is None  # never another room's
    assert fwd.route("other") == {}

    assert mic.push(frame(1, kind="audio")) is False  # nothing samples it: not decoded
    packet = await recv(agent_audio)
    assert isinstance(packet, av.Packet)
    assert bytes(packet) == frame(1, kind="audio").data
    assert packet.time_base == Fraction(1, 48_000)

    agent_video = fwd.subscribe("agent", "video")
    assert fwd.route("room") == {}
    cam.push(frame(1, key=True))
    assert bytes(await recv(agent_video)) == frame(1, key=True).data
    assert fwd.published_tracks == 2 and fwd.room_count == 2
    await fwd.aclose()
    assert fwd.published_tracks == 0 and fwd.room_count == 0


async def test_new_subscriber_waits_for_a_keyframe_and_asks_for_one() -> None:
    fwd = Forwarder()
    fwd.join("room", "pub")
    fwd.join("room", "sub")
    pli = KeyframeCounter()
    source = fwd.publish("pub", "video", "cam", keyframe_requester=pli)
    source.push(frame(0, key=True))
    outlet = fwd.subscribe("sub", "video")
    fwd.route("room")
    await asyncio.sleep(0.01)
    assert pli.count == 1  # attaching asked the publisher for a keyframe
    source.push(frame(1))
    source.push(frame(2))
    assert outlet.dropped == 2  # undecodable without the keyframe before them
    source.push(frame(3, key=True))
    source.push(frame(4))
    first, second = await recv(outlet), await recv(outlet)
    assert bytes(first) == frame(3, key=True).data and first.pts == 0
    assert bytes(second) == frame(4).data and second.pts == 3000
    await fwd.aclose()


async def test_keyframe_requests_are_rate_limited_but_never_lost() -> None:
    fwd = Forwarder()
    fwd.join("room", "pub")
    pli = KeyframeCounter()
    source = fwd.publish("pub", "video", "cam", keyframe_requester=pli)
    for _ in range(10):
        source.request_keyframe()
    await asyncio.sleep(0.01)
    assert pli.count == 1
    source.request_keyframe()  # inside the window: sent when it ends
    await asyncio.sleep(0.4)
    assert pli.count == 2 and source.keyframe_requests == 2
    await fwd.aclose()


async def test_subscriber_pli_reaches_the_publisher() -> None:
    fwd = Forwarder()
    fwd.join("room", "pub")
    fwd.join("room", "sub")
    pli = KeyframeCounter()
    fwd.publish("pub", "video", "cam", keyframe_requester=pli)
    outlet = fwd.subscribe("sub", "video")
    fwd.route("room")
    await asyncio.sleep(0.35)
    before = pli.count
    outlet.request_keyframe()  # what the sender hook calls on an RTCP PLI
    await asyncio.sleep(0.01)
    assert pli.count == before + 1 and outlet.keyframe_requests == 1
    await fwd.aclose()


async def test_next_publisher_takes_over_with_continuous_timestamps() -> None:
    fwd = Forwarder()
    for pid in ("agent", "c1", "c2"):
        fwd.join("room", pid)
    outlet = fwd.subscribe("agent", "video")
    first = fwd.publish("c1", "video", "cam1")
    fwd.route("room")
    assert outlet.source is first
    first.push(frame(100, key=True))
    first.push(frame(101))
    assert [(await recv(outlet)).pts for _ in range(2)] == [0, 3000]

    pending = asyncio.create_task(outlet.recv())
    await fwd.leave("c1")
    assert outlet.source is None
    second = fwd.publish("c2", "video", "cam2")
    fwd.route("room")
    second.push(frame(0, key=True))  # its own clock starts again at 0
    # The recv that was waiting while c1 left is answered by c2, and the clock runs on.
    async with asyncio.timeout(1):
        packet = await pending
    assert bytes(packet) == frame(0, key=True).data and packet.pts == 6000
    await fwd.aclose()


async def test_overflow_drops_to_the_next_keyframe_audio_drops_oldest() -> None:
    ended: list[TrackSource] = []
    fwd = Forwarder(on_source_ended=ended.append, queue_sizes={"video": 3, "audio": 2})
    fwd.join("room", "pub")
    fwd.join("room", "sub")
    pli = KeyframeCounter()
    cam = fwd.publish("pub", "video", "cam", keyframe_requester=pli)
    mic = fwd.publish("pub", "audio", "mic")
    video = fwd.subscribe("sub", "video")
    audio = fwd.subscribe("sub", "audio")
    fwd.route("room")
    cam.push(frame(0, key=True))
    for n in range(1, 5):
        cam.push(frame(n))  # the sender never reads: the fourth frame overflows
    assert video.dropped == 5 and not video._frames  # 3 queued + 2 until a keyframe
    cam.push(frame(5))
    cam.push(frame(6, key=True))
    assert bytes(await recv(video)) == frame(6, key=True).data
    for n in range(4):
        mic.push(frame(n, kind="audio"))
    assert audio.dropped == 2
    assert [bytes(await recv(audio)) for _ in range(2)] == [
        frame(2, kind="audio").data,
        frame(3, kind="audio").data,
    ]

    cam.end()
    assert ended == [cam] and video.source is None and fwd.published_tracks == 1
    waiting = asyncio.create_task(video.recv())
    await asyncio.sleep(0)
    video.stop()
    with pytest.raises(MediaStreamError):
        await waiting
    await fwd.aclose()


class Collect:
    def __init__(self) -> None:
        self.frames: list[object] = []
        self.closed = False

    def push(self, frame: object) -> None:
        self.frames.append(frame)

    def close(self) -> None:
        self.closed = True


async def test_decoding_only_while_a_frame_tap_is_attached_from_a_keyframe() -> None:
    fwd = Forwarder()
    fwd.join("room", "pub")
    pli = KeyframeCounter()
    source = fwd.publish("pub", "video", "cam", keyframe_requester=pli)
    assert source.push(frame(0, key=True)) is False
    tap = Collect()
    source.add_frame_tap(tap)
    assert source.decoding
    assert source.push(frame(1)) is False  # the decoder starts at a keyframe
    assert source.push(frame(2, key=True)) is True
    assert source.push(frame(3)) is True
    source.push_decoded("picture")
    assert tap.frames == ["picture"]
    source.remove_frame_tap(tap)
    assert source.push(frame(4)) is False and not source.decoding
    await asyncio.sleep(0.01)
    assert pli.count == 1  # a keyframe was asked for when decoding started
    source.add_frame_tap(tap)
    source.end()
    assert tap.closed
    await fwd.aclose()


async def test_stats_report_codec_size_rate_and_subscribers() -> None:
    fwd = Forwarder()
    fwd.join("room", "pub")
    fwd.join("room", "sub")
    source = fwd.publish("pub", "video", "cam")
    fwd.subscribe("sub", "video")
    fwd.route("room")
    key = b"\x10\x00\x00\x9d\x01\x2a" + (640).to_bytes(2, "little") + (480).to_bytes(2, "little")
    for n in range(31):
        data = key if n == 0 else b"\x11" + bytes(100)
        source.push(EncodedFrame("video", "vp8", data, n * 3000, 90_000, n == 0, arrival=n / 30))
    stats = source.stats()
    assert (stats.codec, stats.width, stats.height) == ("vp8", 640, 480)
    assert stats.fps == pytest.approx(30, abs=0.5)
    assert stats.bitrate_kbps == pytest.approx(101 * 8 * 30 / 1000, rel=0.05)
    assert stats.subscribers == 1 and stats.keyframes == 1 and not stats.decoding
    assert stats.last_frame_at is not None and stats.transcoding is None
    await fwd.aclose()


def _encode(codec: str, count: int, width: int = 320, height: int = 240) -> list[EncodedFrame]:
    name, options = {
        "vp8": ("libvpx", {"deadline": "realtime", "cpu-used": "8"}),
        "h264": ("libx264", {"preset": "ultrafast", "tune": "zerolatency"}),
    }[codec]
    context: Any = av.CodecContext.create(name, "w")
    context.width, context.height, context.pix_fmt = width, height, "yuv420p"
    context.time_base = Fraction(1, 90_000)
    context.options = options
    out = []
    for n in range(count):
        image = np.full((height, width, 3), (n * 8) % 256, dtype=np.uint8)
        picture = av.VideoFrame.from_ndarray(image, format="rgb24")
        picture.pts = n * 3000
        for packet in context.encode(picture):
            data = bytes(packet)
            out.append(
                EncodedFrame(
                    "video", codec, data, int(packet.pts), 90_000, is_keyframe(codec, data), n / 30
                )
            )
    return out


def _decode(codec: str, frames: list[EncodedFrame]) -> list[av.VideoFrame]:
    context: Any = av.CodecContext.create(codec, "r")
    pictures = []
    for item in frames:
        pictures.extend(context.decode(av.Packet(item.data)))
    return pictures


async def test_mixed_codecs_share_one_transcode_per_target_codec() -> None:
    fwd = Forwarder()
    for pid in ("pub", "h264-a", "h264-b", "vp8"):
        fwd.join("room", pid)
    source = fwd.publish("pub", "video", "cam")
    outlets = {}
    for pid in ("h264-a", "h264-b", "vp8"):
        outlet = fwd.subscribe(pid, "video")
        outlet.codec = "vp8" if pid == "vp8" else "h264"
        outlets[pid] = outlet
    fwd.route("room")
    vp8 = _encode("vp8", 10)
    assert vp8_size(vp8[0].data) == (320, 240)
    decoded = _decode("vp8", vp8)  # stands in for aiortc's decoder thread
    for item, picture in zip(vp8, decoded, strict=True):
        if source.push(item):
            source.push_decoded(picture)
        await asyncio.sleep(0.02)  # the transcode runs on its own thread
    transcode = outlets["h264-a"].source
    assert transcode is not None and transcode is outlets["h264-b"].source
    assert transcode.origin is source and outlets["vp8"].source is source
    assert source.decoding and "vp8 -> h264 for 2 subscriber(s)" in str(source.stats().transcoding)

    received = []
    while outlets["h264-a"]._frames:
        packet = await recv(outlets["h264-a"])
        received.append(EncodedFrame("video", "h264", bytes(packet), 0, 90_000, False, 0))
    assert received and is_keyframe("h264", received[0].data)
    assert h264_size(received[0].data) == (320, 240)
    assert len(_decode("h264", received)) >= len(received) - 1  # real, decodable H.264
    assert [bytes(await recv(outlets["vp8"])) for _ in range(2)] == [
        vp8[0].data,
        vp8[1].data,
    ]  # the VP8 subscriber gets the publisher's own bytes
    await fwd.aclose()


async def test_subscribe_checks_kind_and_membership() -> None:
    fwd = Forwarder()
    with pytest.raises(KeyError):
        fwd.subscribe("ghost", "video")
    fwd.join("room", "p")
    with pytest.raises(ValueError, match="kind"):
        fwd.subscribe("p", "data")
    with pytest.raises(ValueError, match="already"):
        fwd.join("elsewhere", "p")
    with pytest.raises(ValueError, match="kind"):
        fwd.publish("p", "data", "x")
    await fwd.aclose()


async def test_gop_cache_starts_a_new_subscriber_at_once() -> None:
    fwd = Forwarder()
    fwd.join("room", "camera")
    fwd.join("room", "late")
    source = fwd.publish("camera", "video", "cam", gop_cache=True)
    for n in range(3):
        source.push(frame(n, key=n == 0))
    source.push(frame(3, key=True))  # a new group: the cache restarts here
    source.push(frame(4))
    outlet = fwd.subscribe("late", "video")
    fwd.route("room")
    # No keyframe request can be answered (no requester): the cached group plays at once.
    got = [bytes(await recv(outlet)) for _ in range(2)]
    assert got == [frame(3, key=True).data, frame(4).data]
    source.push(frame(5))
    assert bytes(await recv(outlet)) == frame(5).data
    await fwd.aclose()
