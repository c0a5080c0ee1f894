"""A scripted participant: a ``/ws`` client plus an aiortc peer, as a browser page would be.

Used by the call-flow tests and by ``bench/connect.py``.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
from collections.abc import Callable
from typing import Any

import aiohttp
from aiortc import MediaStreamTrack, RTCConfiguration, RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import MediaStreamError

__all__ = ["Participant", "TrackSink"]


class TrackSink:
    """Consumes a remote track, keeping what a test wants to know about its frames."""

    def __init__(self, track: MediaStreamTrack, on_frame: Callable[[Any], None] | None = None):
        self.track = track
        self.frames = 0
        self.first_frame = asyncio.Event()
        self.frame_event = asyncio.Event()
        self._on_frame = on_frame
        self._task = asyncio.create_task(self._run(), name=f"sink-{track.kind}")

    async def _run(self) -> None:
        with contextlib.suppress(MediaStreamError):
            while True:
                frame = await self.track.recv()
                self.frames += 1
                if self._on_frame is not None:
                    self._on_frame(frame)
                self.first_frame.set()
                self.frame_event.set()

    async def aclose(self) -> None:
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task


class Participant:
    """One side of a call: opens ``/ws``, joins, offers its tracks and collects what arrives."""

    def __init__(
        self,
        session: aiohttp.ClientSession,
        base_url: str,
        *,
        token: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        self.session = session
        self.ws_url = base_url.replace("http", "ws", 1) + "/ws"
        self.token = token
        self.headers = headers or {}
        self.ws: aiohttp.ClientWebSocketResponse | None = None
        self.pc: RTCPeerConnection | None = None
        self.inbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.seen: list[dict[str, Any]] = []
        self.sinks: dict[str, TrackSink] = {}
        self.on_video_frame: Callable[[Any], None] | None = None
        self.on_audio_frame: Callable[[Any], None] | None = None
        self._reader: asyncio.Task[None] | None = None
        self._ids = itertools.count(1)
        self._negotiating = asyncio.Lock()
        self._track_added = asyncio.Event()

    # -- signaling --------------------------------------------------------------------

    async def connect(self) -> None:
        self.ws = await self.session.ws_connect(self.ws_url, headers=self.headers)
        self._reader = asyncio.create_task(self._read(), name="participant-reader")

    async def _read(self) -> None:
        assert self.ws is not None
        async for message in self.ws:
            if message.type == aiohttp.WSMsgType.TEXT:
                document = json.loads(message.data)
                self.seen.append(document)
                if document.get("type") == "renegotiate" and self.pc is not None:
                    asyncio.create_task(self._renegotiate(document.get("tracks") or {}))
                await self.inbox.put(document)
        await self.inbox.put({"type": "_closed", "code": self.ws.close_code})

    async def send(self, document: dict[str, Any]) -> None:
        assert self.ws is not None
        await self.ws.send_str(json.dumps(document))

    async def send_raw(self, data: str) -> None:
        assert self.ws is not None
        await self.ws.send_str(data)

    async def expect(
        self,
        kind: str,
        *,
        wait_s: float = 10.0,
        where: Callable[[dict[str, Any]], bool] = lambda message: True,
    ) -> dict[str, Any]:
        """The next message of ``kind`` (others are skipped); fails on an unexpected close."""
        async with asyncio.timeout(wait_s):
            while True:
                message = await self.inbox.get()
                if message["type"] == kind and where(message):
                    return message
                if message["type"] == "_closed" and kind != "_closed":
                    raise AssertionError(f"socket closed ({message['code']}) waiting for {kind}")

    async def join(self, **fields: Any) -> dict[str, Any]:
        if self.ws is None:
            await self.connect()
        payload: dict[str, Any] = {"type": "join", **fields}
        if self.token is not None:
            payload.setdefault("token", self.token)
        await self.send(payload)
        return await self.expect("joined")

    async def chat(self, text: str, client_id: str | None = None) -> str:
        client_id = client_id or f"m{next(self._ids)}"
        await self.send({"type": "chat", "client_id": client_id, "text": text})
        return client_id

    # -- media ------------------------------------------------------------------------

    def _peer(self) -> RTCPeerConnection:
        if self.pc is None:
            # As a page does with an empty ``joined.ice_servers``: no public STUN server.
            self.pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))

            @self.pc.on("track")
            def on_track(track: MediaStreamTrack) -> None:
                self.sinks[track.kind] = TrackSink(track, lambda frame: self._frame(track, frame))
                self._track_added.set()

        return self.pc

    async def sinks_ready(self, kind: str) -> TrackSink:
        """Wait until a remote track of ``kind`` has delivered its first frame."""
        while kind not in self.sinks:
            self._track_added.clear()
            await self._track_added.wait()
        sink = self.sinks[kind]
        await sink.first_frame.wait()
        return sink

    def _frame(self, track: MediaStreamTrack, frame: Any) -> None:
        # Looked up per frame: a test may set the callbacks after negotiating.
        callback = self.on_video_frame if track.kind == "video" else self.on_audio_frame
        if callback is not None:
            callback(frame)

    async def publish(
        self,
        *tracks: MediaStreamTrack,
        receive_video: bool = False,
        receive_audio: bool = True,
    ) -> None:
        """Offer ``tracks`` (and receiving transceivers) and apply the server's answer."""
        pc = self._peer()
        kinds = {track.kind for track in tracks}
        for track in tracks:
            pc.addTrack(track)
        if receive_video and "video" not in kinds:
            pc.addTransceiver("video", direction="recvonly")
        if receive_audio and "audio" not in kinds:
            pc.addTransceiver("audio", direction="recvonly")
        await self.negotiate()

    async def negotiate(self) -> None:
        # One offer/answer at a time: a ``renegotiate`` may arrive before our answer does.
        async with self._negotiating:
            pc = self._peer()
            await pc.setLocalDescription(await pc.createOffer())
            await self.send({"type": "offer", "sdp": pc.localDescription.sdp})
            answer = await self.expect("answer")
            await pc.setRemoteDescription(RTCSessionDescription(answer["sdp"], "answer"))

    async def _renegotiate(self, tracks: dict[str, int]) -> None:
        pc = self._peer()
        for kind, wanted in tracks.items():
            have = sum(
                1
                for t in pc.getTransceivers()
                if t.kind == kind and t.direction in ("recvonly", "sendrecv")
            )
            for _ in range(max(0, int(wanted) - have)):
                pc.addTransceiver(kind, direction="recvonly")
        await self.negotiate()

    async def aclose(self) -> None:
        for sink in self.sinks.values():
            await sink.aclose()
        if self.pc is not None:
            await self.pc.close()
        if self.ws is not None:
            await self.ws.close()
        if self._reader is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await self._reader
