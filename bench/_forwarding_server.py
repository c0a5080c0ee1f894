"""The server side of ``bench/forwarding.py``, in its own process so that its CPU time and its
event-loop lag are measured apart from the clients; and :class:`ServerProcess`, the bench's
handle on that process.

    python bench/_forwarding_server.py engine|grading|relay

``engine`` is this service's :class:`media.MediaEngine` with its default configuration (no
frame sink, so no grading sampler); ``grading`` the same with a frame sink that drops what it
is given, so every published video track is decoded and sampled as while an agent grades it.
``relay`` is the baseline: aiortc's ``MediaRelay``, one
server peer per participant, each subscriber's server peer sending ``relay.subscribe(track)``,
so every subscriber's sender encodes the decoded frames again.

Protocol: one JSON object per line on stdin, one answer per line on stdout, matched by ``id``
(requests run concurrently). Operations:

- ``answer`` (``room``, ``pid``, ``role`` publish|subscribe, ``sdp``) -> ``sdp``
- ``tracks`` -> ``tracks``: published tracks the server holds; ``sampled``: frames the
  grading sink got
- ``lag`` -> loop-lag summary (ms) of the samples since the previous ``lag``, which it resets
- ``quit`` -> closes every peer, answers, exits

Every server peer is created with ``RTCConfiguration(iceServers=[])``: aiortc's default public
STUN server is never contacted.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import sys
import tempfile
from pathlib import Path
from typing import Any

CHILD = Path(__file__).resolve()
ROOT = CHILD.parent.parent
if not __package__:
    # Run by path (as ServerProcess starts it): import from the repository root, never from
    # bench/ itself.
    sys.path[0] = str(ROOT)

from aiortc import (  # noqa: E402
    MediaStreamTrack,
    RTCConfiguration,
    RTCPeerConnection,
    RTCSessionDescription,
)
from aiortc.contrib.media import MediaRelay  # noqa: E402

from bench._stats import LagProbe  # noqa: E402
from media import MediaConfig, MediaEngine  # noqa: E402


class NullSink:
    """A ``media.FrameSink`` standing in for the grading pipeline: counts, keeps nothing."""

    def __init__(self) -> None:
        self.sampled = 0

    def wants(self, stream: Any) -> bool:
        # Every published track, as while an agent grades each call.
        return True

    def stream_started(self, stream: Any) -> None:
        pass

    def frame_sampled(self, stream: Any, image: Any, ts: float) -> None:
        self.sampled += 1

    def stream_ended(self, stream: Any) -> None:
        pass


class EngineServer:
    """This service: ``MediaEngine`` with defaults (pre-roll armed), grading or not."""

    def __init__(self, grading: bool) -> None:
        self.sink = NullSink()
        self.engine = MediaEngine(MediaConfig(), frame_sink=self.sink if grading else None)

    async def answer(self, room: str, pid: str, role: str, sdp: str) -> str:
        return await self.engine.answer(room, pid, sdp)

    def tracks(self) -> int:
        return self.engine.published_tracks

    @property
    def sampled(self) -> int:
        return self.sink.sampled

    async def aclose(self) -> None:
        await self.engine.aclose()


class RelayServer:
    """The baseline: aiortc ``MediaRelay`` (decoded frames, one encoder per subscriber)."""

    def __init__(self) -> None:
        self.relay = MediaRelay()
        self.pcs: dict[str, RTCPeerConnection] = {}
        self.published: dict[str, MediaStreamTrack] = {}

    async def answer(self, room: str, pid: str, role: str, sdp: str) -> str:
        pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        self.pcs[pid] = pc

        @pc.on("track")
        def on_track(track: MediaStreamTrack) -> None:
            if track.kind == "video":
                self.published[room] = track

        await pc.setRemoteDescription(RTCSessionDescription(sdp=sdp, type="offer"))
        if role == "subscribe":
            # buffered=False: the subscriber gets the newest frame when its encoder is behind,
            # the relay's equivalent of the forwarder's bounded, drop-oldest queue.
            pc.addTrack(self.relay.subscribe(self.published[room], buffered=False))
        await pc.setLocalDescription(await pc.createAnswer())
        return str(pc.localDescription.sdp)

    def tracks(self) -> int:
        return len(self.published)

    sampled = 0

    async def aclose(self) -> None:
        await asyncio.gather(*(pc.close() for pc in self.pcs.values()), return_exceptions=True)


class RunFailed(Exception):
    """A point that could not be measured (the message says why)."""


# -- the bench's handle on this process -----------------------------------------------------------


class ServerProcess:
    """``bench/_forwarding_server.py`` in one of its modes, driven over its pipes."""

    def __init__(self, mode: str) -> None:
        self.mode = mode
        self._proc: asyncio.subprocess.Process | None = None
        self._log = tempfile.TemporaryFile()
        self._pending: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self._next_id = 0
        self._reader: asyncio.Task[None] | None = None

    @property
    def pid(self) -> int:
        assert self._proc is not None
        return self._proc.pid

    async def start(self) -> None:
        self._proc = await asyncio.create_subprocess_exec(
            sys.executable,
            str(CHILD),
            self.mode,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=self._log,
            cwd=ROOT,
            limit=1 << 24,
        )
        self._reader = asyncio.create_task(self._read(), name="bench-server-reader")
        await self.request("tracks")  # imports done, loop running

    async def _read(self) -> None:
        assert self._proc is not None and self._proc.stdout is not None
        while line := await self._proc.stdout.readline():
            reply = json.loads(line)
            future = self._pending.pop(reply["id"], None)
            if future is not None and not future.done():
                future.set_result(reply)
        await self._proc.wait()
        died = RunFailed(
            f"the {self.mode} server exited with {self._proc.returncode}:\n{self.log_tail()}"
        )
        for future in self._pending.values():
            if not future.done():
                future.set_exception(died)
        self._pending.clear()

    async def request(self, op: str, wait_s: float = 60.0, **fields: Any) -> dict[str, Any]:
        assert self._proc is not None and self._proc.stdin is not None
        if self._proc.returncode is not None:
            raise RunFailed(f"the {self.mode} server is gone:\n{self.log_tail()}")
        self._next_id += 1
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._pending[self._next_id] = future
        self._proc.stdin.write(
            (json.dumps({"id": self._next_id, "op": op, **fields}) + "\n").encode()
        )
        await self._proc.stdin.drain()
        try:
            async with asyncio.timeout(wait_s):
                reply = await future
        except TimeoutError:
            raise RunFailed(f"the {self.mode} server did not answer {op} in {wait_s:g} s") from None
        if "error" in reply:
            raise RunFailed(f"the {self.mode} server failed {op}: {reply['error']}")
        return reply

    async def answer(self, room: str, pid: str, role: str, sdp: str) -> str:
        reply = await self.request("answer", room=room, pid=pid, role=role, sdp=sdp)
        return str(reply["sdp"])

    async def tracks(self) -> int:
        return int((await self.request("tracks"))["tracks"])

    async def sampled(self) -> int:
        return int((await self.request("tracks"))["sampled"])

    async def lag(self) -> dict[str, float]:
        return dict((await self.request("lag"))["lag"])

    def log_tail(self, lines: int = 15) -> str:
        self._log.seek(0)
        text = self._log.read().decode(errors="replace")
        return "\n".join(text.splitlines()[-lines:])

    async def aclose(self) -> None:
        proc = self._proc
        if proc is not None and proc.returncode is None:
            with contextlib.suppress(RunFailed, ConnectionError):
                await self.request("quit", wait_s=20)
            try:
                async with asyncio.timeout(10):
                    await proc.wait()
            except TimeoutError:
                proc.kill()
                await proc.wait()
        if self._reader is not None:
            await asyncio.gather(self._reader, return_exceptions=True)
        self._log.close()


# -- this process ---------------------------------------------------------------------------------


async def serve(mode: str) -> None:
    server: EngineServer | RelayServer = (
        RelayServer() if mode == "relay" else EngineServer(grading=mode == "grading")
    )
    probe = LagProbe()
    probe.start()
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=1 << 24)
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    tasks: set[asyncio.Task[None]] = set()
    done = asyncio.Event()

    def reply(request: dict[str, Any], **fields: Any) -> None:
        sys.stdout.write(json.dumps({"id": request.get("id"), **fields}) + "\n")
        sys.stdout.flush()

    async def handle(request: dict[str, Any]) -> None:
        op = request.get("op")
        try:
            if op == "answer":
                sdp = await server.answer(
                    request["room"], request["pid"], request["role"], request["sdp"]
                )
                reply(request, sdp=sdp)
            elif op == "tracks":
                reply(request, tracks=server.tracks(), sampled=server.sampled)
            elif op == "lag":
                reply(request, lag=probe.take())
            elif op == "quit":
                await probe.aclose()
                await server.aclose()
                reply(request, ok=True)
                done.set()
            else:
                reply(request, error=f"unknown op {op!r}")
        except Exception as exc:  # reported to the bench, which fails the run
            logging.exception("request %s failed", op)
            reply(request, error=f"{type(exc).__name__}: {exc}")

    async def read() -> None:
        while line := await reader.readline():
            task = asyncio.create_task(handle(json.loads(line)))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
        done.set()  # the bench went away

    read_task = asyncio.create_task(read())
    await done.wait()
    read_task.cancel()
    await asyncio.gather(read_task, *tasks, return_exceptions=True)


if __name__ == "__main__":
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    if len(sys.argv) != 2 or sys.argv[1] not in ("engine", "grading", "relay"):
        raise SystemExit("usage: _forwarding_server.py engine|grading|relay")
    asyncio.run(serve(sys.argv[1]))
