"""The frame sampler: decoded frames at a fixed rate, handed on without waiting."""

from __future__ import annotations

import asyncio
from typing import Any

import av
import numpy as np

from media import FrameSampler, MediaConfig, MediaEngine, StreamKey
from tests.media.test_engine import Client, customer

STREAM = StreamKey("room", "publisher", "track")


class RecordingSink:
    def __init__(self) -> None:
        self.started: list[StreamKey] = []
        self.frames: list[tuple[StreamKey, np.ndarray[Any, Any], float]] = []
        self.ended: list[StreamKey] = []
        self.changed = asyncio.Event()

    def wants(self, stream: StreamKey) -> bool:
        return True

    def stream_started(self, stream: StreamKey) -> None:
        self.started.append(stream)

    def frame_sampled(self, stream: StreamKey, image: np.ndarray[Any, Any], ts: float) -> None:
        self.frames.append((stream, image, ts))
        self.changed.set()

    def stream_ended(self, stream: StreamKey) -> None:
        self.ended.append(stream)
        self.changed.set()


def frame(width: int = 64, height: int = 48) -> av.VideoFrame:
    return av.VideoFrame.from_ndarray(np.full((height, width, 3), 200, np.uint8), format="rgb24")


def test_keeps_one_frame_per_period_at_the_configured_rate() -> None:
    now = [0.0]
    sink = RecordingSink()
    sampler = FrameSampler(STREAM, sink, fps=2.0, clock=lambda: now[0], wall_clock=lambda: 42.0)
    for i in range(45):  # three seconds of 15 fps
        now[0] = i / 15
        sampler.push(frame())
    assert sink.started == [STREAM]
    assert len(sink.frames) == 6
    assert sampler.sampled == 6 and sampler.skipped == 39
    stream, image, ts = sink.frames[0]
    assert stream == STREAM and image.shape == (48, 64, 3) and image.dtype == np.uint8
    assert ts == 42.0
    assert tuple(image[0, 0]) == (200, 200, 200)


def test_close_tells_the_sink_once_and_stops_sampling() -> None:
    sink = RecordingSink()
    sampler = FrameSampler(STREAM, sink, fps=10.0)
    sampler.close()
    sampler.close()
    sampler.push(frame())
    assert sink.ended == [STREAM]
    assert sink.frames == []


def test_a_failing_sink_does_not_break_the_forwarding_path() -> None:
    class Broken(RecordingSink):
        def frame_sampled(self, stream: StreamKey, image: Any, ts: float) -> None:
            raise RuntimeError("model exploded")

    sampler = FrameSampler(STREAM, Broken(), fps=1000.0)
    sampler.push(frame())  # logged, not raised
    assert sampler.sampled == 0


async def test_engine_samples_a_published_video_track_and_ends_it_with_the_peer() -> None:
    sink = RecordingSink()
    engine = MediaEngine(MediaConfig(sample_fps=4.0), frame_sink=sink)
    publisher: Client | None = None
    try:
        publisher = customer(lambda pid, room_id="case-1": Client(engine, pid, room_id))
        await publisher.negotiate()
        async with asyncio.timeout(10):
            while len(sink.frames) < 4:
                sink.changed.clear()
                await sink.changed.wait()
        assert [s.publisher_id for s in sink.started] == ["customer"]
        assert {stream.room_id for stream, _, _ in sink.frames} == {"case-1"}
        assert all(image.shape == (240, 320, 3) for _, image, _ in sink.frames)
        await engine.close_peer("customer")
        async with asyncio.timeout(5):
            while not sink.ended:
                sink.changed.clear()
                await sink.changed.wait()
        assert sink.ended == sink.started
    finally:
        if publisher is not None:
            await publisher.aclose()
        await engine.aclose()
