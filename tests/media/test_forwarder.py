"""Forwarder routing and fan-out with in-memory tracks (no network)."""

from __future__ import annotations

import asyncio

import pytest
from aiortc import MediaStreamTrack
from aiortc.mediastreams import MediaStreamError

from media import Forwarder, TrackSource


class QueueTrack(MediaStreamTrack):
    """A track that yields whatever the test puts in; ``None`` ends it."""

    def __init__(self, kind: str) -> None:
        super().__init__()
        self.kind = kind
        self.queue: asyncio.Queue[object] = asyncio.Queue()

    async def recv(self) -> object:  # type: ignore[override]
        item = await self.queue.get()
        self.queue.task_done()
        if item is None:
            self.stop()
            raise MediaStreamError
        return item


async def recv(track: MediaStreamTrack) -> object:
    async with asyncio.timeout(1):
        return await track.recv()


async def test_routes_others_tracks_and_reports_shortfall() -> None:
    fwd = Forwarder()
    fwd.join("room", "customer")
    fwd.join("room", "agent")
    fwd.join("other", "stranger")
    cam, mic = QueueTrack("video"), QueueTrack("audio")
    fwd.publish("customer", cam)
    fwd.publish("customer", mic)
    own = fwd.subscribe("customer", "audio")
    agent_audio = fwd.subscribe("agent", "audio")
    stranger_video = fwd.subscribe("stranger", "video")

    short = fwd.route("room")
    assert short == {"agent": {"audio": 1, "video": 1}}  # no video transceiver yet
    assert own.source is None  # never your own track
    assert stranger_video.source is None  # never another room's
    assert fwd.route("other") == {}

    mic.queue.put_nowait("a1")
    assert await recv(agent_audio) == "a1"

    agent_video = fwd.subscribe("agent", "video")
    assert fwd.route("room") == {}
    cam.queue.put_nowait("v1")
    assert await recv(agent_video) == "v1"
    assert fwd.published_tracks == 2 and fwd.room_count == 2
    await fwd.aclose()
    assert fwd.published_tracks == 0 and fwd.room_count == 0


async def test_unpublish_detaches_and_next_publisher_takes_over_same_track() -> None:
    fwd = Forwarder()
    for pid in ("agent", "c1", "c2"):
        fwd.join("room", pid)
    outlet = fwd.subscribe("agent", "video")
    first, second = QueueTrack("video"), QueueTrack("video")
    fwd.publish("c1", first)
    fwd.route("room")
    assert outlet.source is not None and outlet.source.publisher_id == "c1"

    pending = asyncio.create_task(outlet.recv())
    await fwd.leave("c1")
    assert outlet.source is None
    fwd.publish("c2", second)
    fwd.route("room")
    second.queue.put_nowait("from c2")
    # The recv that was waiting while c1 left is answered by c2: the sender never stalls.
    async with asyncio.timeout(1):
        assert await pending == "from c2"
    await fwd.aclose()


async def test_source_end_is_reported_and_subscriber_queue_is_bounded() -> None:
    ended: list[TrackSource] = []
    ended_event = asyncio.Event()

    def on_ended(source: TrackSource) -> None:
        ended.append(source)
        ended_event.set()

    fwd = Forwarder(on_source_ended=on_ended, queue_sizes={"video": 2})
    fwd.join("room", "pub")
    fwd.join("room", "sub")
    cam = QueueTrack("video")
    source = fwd.publish("pub", cam)
    outlet = fwd.subscribe("sub", "video")
    fwd.route("room")
    for i in range(5):
        cam.queue.put_nowait(i)
    async with asyncio.timeout(1):
        await cam.queue.join()  # the source read (and fanned out) all five
    assert outlet.dropped == 3
    assert [await recv(outlet), await recv(outlet)] == [3, 4]  # newest kept, oldest dropped

    cam.queue.put_nowait(None)
    async with asyncio.timeout(1):
        await ended_event.wait()
    assert ended == [source] and outlet.source is None and fwd.published_tracks == 0

    waiting = asyncio.create_task(outlet.recv())
    await asyncio.sleep(0)
    outlet.stop()
    with pytest.raises(MediaStreamError):
        await waiting
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
    await fwd.aclose()
