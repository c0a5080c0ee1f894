"""A viewer's peer for one camera of a site's room, as the walkthrough page keeps one per tile:
its offers and candidates carry ``camera_id`` over the viewer's ``/ws`` socket."""

from __future__ import annotations

import asyncio

from aiortc import MediaStreamTrack

from .camera import TrackReader, client_accept, client_offer, client_pc
from .signal_client import Participant

__all__ = ["Watch"]


class Watch:
    """A viewer's peer for one camera of the site room (offers carry ``camera_id``)."""

    def __init__(
        self, viewer: Participant, camera_id: str, talk: MediaStreamTrack | None = None
    ) -> None:
        self.viewer = viewer
        self.camera_id = camera_id
        self.talk = talk
        self.pc = client_pc()
        self.readers: dict[str, TrackReader] = {}
        self._video = asyncio.Event()
        self.pc.on("track", self._on_track)

    def _on_track(self, track: MediaStreamTrack) -> None:
        self.readers.setdefault(track.kind, TrackReader(track))
        if track.kind == "video":
            self._video.set()

    async def start(self) -> None:
        self.pc.addTransceiver("video", direction="recvonly")
        if self.talk is not None:
            self.pc.addTrack(self.talk)
        else:
            self.pc.addTransceiver("audio", direction="recvonly")
        offer = await client_offer(self.pc)
        await self.viewer.send({"type": "offer", "sdp": offer, "camera_id": self.camera_id})
        answer = await self.viewer.expect(
            "answer", where=lambda m: m.get("camera_id") == self.camera_id
        )
        await client_accept(self.pc, answer["sdp"])

    async def frames(self, count: int) -> list[int]:
        await self._video.wait()
        reader = self.readers["video"]
        start = len(reader.numbers)
        await reader.wait_until(lambda r: len(r.numbers) >= start + count)
        return reader.numbers[start:]

    async def aclose(self) -> None:
        for reader in self.readers.values():
            await reader.aclose()
        await self.pc.close()
