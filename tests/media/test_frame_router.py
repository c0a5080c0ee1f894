"""The frame router: one engine sink fanned out to the sinks that want each stream now."""

from __future__ import annotations

import asyncio
from typing import Any

import numpy as np
import pytest

from media import FrameRouter, FrameSink, MediaConfig, MediaEngine, StreamKey
from tests.media.test_engine import Client, customer

CASE = StreamKey("case-1", "customer", "video-1")
CAMERA = StreamKey("camera:7", "camera-7", "video-1")
IMAGE = np.zeros((4, 4, 3), np.uint8)


class Sink:
    """Logs every call it gets, in order; wants what ``wanted`` says."""

    def __init__(self, name: str = "sink", *, wanted: bool = True) -> None:
        self.name = name
        self.wanted = wanted
        self.calls: list[tuple[str, StreamKey]] = []
        self.asked: list[StreamKey] = []
        self.changed = asyncio.Event()

    def wants(self, stream: StreamKey) -> bool:
        self.asked.append(stream)
        return self.wanted

    def stream_started(self, stream: StreamKey) -> None:
        self.calls.append(("started", stream))

    def frame_sampled(self, stream: StreamKey, image: np.ndarray[Any, Any], ts: float) -> None:
        self.calls.append(("frame", stream))
        self.changed.set()

    def stream_ended(self, stream: StreamKey) -> None:
        self.calls.append(("ended", stream))

    @property
    def frames(self) -> int:
        return sum(call == "frame" for call, _ in self.calls)

    async def wait_frames(self, count: int) -> None:
        async with asyncio.timeout(10):
            while self.frames < count:
                self.changed.clear()
                await self.changed.wait()


class Broken(Sink):
    def wants(self, stream: StreamKey) -> bool:
        raise RuntimeError("cannot tell")


class Exploding(Sink):
    def stream_started(self, stream: StreamKey) -> None:
        raise RuntimeError("start exploded")

    def frame_sampled(self, stream: StreamKey, image: np.ndarray[Any, Any], ts: float) -> None:
        raise RuntimeError("model exploded")

    def stream_ended(self, stream: StreamKey) -> None:
        raise RuntimeError("end exploded")


def test_the_router_is_a_frame_sink() -> None:
    sink: FrameSink = FrameRouter([Sink()])
    assert sink.wants(CASE)


def test_each_stream_reaches_only_the_sinks_that_want_it() -> None:
    grading, idle = Sink("grading"), Sink("idle", wanted=False)
    router = FrameRouter([grading, idle])
    assert router.wants(CASE)
    router.stream_started(CASE)
    router.frame_sampled(CASE, IMAGE, 1.0)
    router.stream_ended(CASE)
    assert grading.calls == [("started", CASE), ("frame", CASE), ("ended", CASE)]
    assert idle.calls == []
    assert not FrameRouter([idle]).wants(CASE)
    assert not FrameRouter().wants(CASE)


def test_a_sink_is_started_and_ended_as_its_wanting_changes_on_a_live_stream() -> None:
    station = Sink("station", wanted=False)
    router = FrameRouter([Sink("grading"), station])
    router.stream_started(CASE)
    router.frame_sampled(CASE, IMAGE, 1.0)
    assert station.calls == []

    station.wanted = True  # the camera became a station while live
    router.frame_sampled(CASE, IMAGE, 2.0)
    router.frame_sampled(CASE, IMAGE, 3.0)
    assert station.calls == [("started", CASE), ("frame", CASE), ("frame", CASE)]

    station.wanted = False  # and stopped being one: ended at once, no frame
    router.frame_sampled(CASE, IMAGE, 4.0)
    assert station.calls[3:] == [("ended", CASE)]
    router.stream_ended(CASE)
    assert station.calls[3:] == [("ended", CASE)], "ended once only"


def test_stream_ended_reaches_a_sink_that_stopped_wanting_it_only_if_it_was_started() -> None:
    late = Sink("late", wanted=False)
    started = Sink("started")
    router = FrameRouter([late, started])
    router.stream_started(CASE)
    started.wanted = False
    router.stream_ended(CASE)
    assert late.calls == []
    assert started.calls == [("started", CASE), ("ended", CASE)]


def test_a_predicate_keeps_streams_from_a_sink_without_asking_it() -> None:
    grading, stations = Sink("grading"), Sink("stations")
    router = FrameRouter()
    router.add(grading, when=lambda stream: not stream.room_id.startswith("camera:"))
    router.add(stations)
    for stream in (CASE, CAMERA):
        router.stream_started(stream)
        router.frame_sampled(stream, IMAGE, 1.0)
    assert grading.calls == [("started", CASE), ("frame", CASE)]
    assert grading.asked and CAMERA not in grading.asked
    assert stations.calls == [
        ("started", CASE),
        ("frame", CASE),
        ("started", CAMERA),
        ("frame", CAMERA),
    ]
    # A predicate narrows what a sink gets; the sink's own answer still counts.
    grading.wanted = False
    only = FrameRouter()
    only.add(grading, when=lambda stream: True)
    assert not only.wants(CASE)


def test_a_predicate_that_changes_its_answer_starts_and_ends_the_sink() -> None:
    qc = {"camera:7": False}
    grading = Sink("grading")
    router = FrameRouter()
    router.add(grading, when=lambda stream: qc.get(stream.room_id, True))
    router.stream_started(CAMERA)
    router.frame_sampled(CAMERA, IMAGE, 1.0)
    qc["camera:7"] = True  # a returns QC station: its items are graded too
    router.frame_sampled(CAMERA, IMAGE, 2.0)
    qc["camera:7"] = False
    router.frame_sampled(CAMERA, IMAGE, 3.0)
    assert grading.calls == [("started", CAMERA), ("frame", CAMERA), ("ended", CAMERA)]


def test_one_failing_sink_does_not_keep_frames_from_the_others(
    caplog: pytest.LogCaptureFixture,
) -> None:
    first, last = Sink("first"), Sink("last")
    router = FrameRouter([first, Exploding("exploding"), Broken("broken"), last])
    router.add(Sink("bad predicate"), when=lambda stream: 1 / 0 > 0)
    assert router.wants(CASE)
    router.stream_started(CASE)
    router.frame_sampled(CASE, IMAGE, 1.0)
    router.stream_ended(CASE)
    expected = [("started", CASE), ("frame", CASE), ("ended", CASE)]
    assert first.calls == expected and last.calls == expected
    failures = [r.getMessage() for r in caplog.records if r.name == "media.frame_router"]
    assert any("failed in stream_started" in m for m in failures)
    assert any("failed in frame_sampled" in m for m in failures)
    assert any("failed in stream_ended" in m for m in failures)
    assert any("failed to say whether it wants" in m for m in failures)


def test_refresh_has_the_bound_engine_resample_the_room() -> None:
    class Engine:
        def __init__(self) -> None:
            self.resampled: list[str] = []

        def resample(self, room_id: str) -> None:
            self.resampled.append(room_id)

    router = FrameRouter()
    router.refresh("case-1")  # nothing bound yet: nothing to ask
    engine = Engine()
    router.bind(engine)
    router.refresh("camera:7")
    assert engine.resampled == ["camera:7"]


async def test_refresh_starts_sampling_a_live_track_a_predicate_now_accepts() -> None:
    """Through a real engine and a loopback publisher: nothing is decoded until the predicate
    accepts the room and the router is refreshed; then frames reach the sink."""
    grading = Sink("grading")
    graded: set[str] = set()
    router = FrameRouter()
    router.add(grading, when=lambda stream: stream.room_id in graded)
    engine = MediaEngine(MediaConfig(recording=False, sample_fps=5), frame_sink=router)
    router.bind(engine)
    publisher: Client | None = None
    try:
        publisher = customer(lambda pid, room_id="camera:7": Client(engine, pid, room_id))
        await publisher.negotiate()
        # Published while the offer was applied; the first frames may still be on their way.
        (source,) = [s for s in engine.sources("camera:7") if s.kind == "video"]
        assert not source.decoding and grading.calls == []

        graded.add("camera:7")
        router.refresh("camera:7")
        assert source.decoding
        await grading.wait_frames(3)
        assert grading.calls[0] == ("started", StreamKey("camera:7", "customer", source.track_id))

        graded.clear()
        router.refresh("camera:7")
        assert not source.decoding
        assert grading.calls[-1][0] == "ended"
    finally:
        if publisher is not None:
            await publisher.aclose()
        await engine.aclose()
