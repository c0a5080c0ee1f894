"""The calls ``bench/network.py`` measures: one customer peer sending a numbered camera and a
tone, one agent peer receiving them, each behind its own impaired leg
(``tests/fakes/impair.py``), either peer to peer or through the running service.

Both paths are measured the same way, at the agent, from its first video frame on: each
decoded video frame's arrival on the loop's clock and its frame number, each audio frame's
arrival. The camera stamps every frame it hands its sender, so glass-to-glass is the arrival
minus that stamp (one process, one clock).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import statistics
import tempfile
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import av
from aiortc import MediaStreamTrack

from server.app import running_service
from server.settings import Settings
from signaling import Role
from tests.fakes import NumberedVideoTrack, client_pc, read_frame_number, wait_connected
from tests.fakes.camera import ToneAudioTrack
from tests.fakes.impair import Conditions, Leg
from tests.fakes.signal_client import Participant, TrackSink

__all__ = [
    "BLACKOUT_S",
    "FREEZE_S",
    "BrowserResult",
    "Cell",
    "Probe",
    "Result",
    "Service",
    "median",
    "run_chromium",
    "run_direct",
    "run_server",
    "serving",
]

#: A gap between two video frames longer than this is a freeze.
FREEZE_S = 0.5
#: How long a blackout cell's leg goes dark, a third of the way into the window.
BLACKOUT_S = 2.0
#: The camera every call sends.
WIDTH, HEIGHT, FPS = 320, 240, 15
#: Signaling, ICE, DTLS and the first frame, on the worst leg of the matrix.
SETUP_TIMEOUT_S = 30.0
_PASSWORD = "bench-pass-123"


@dataclass(frozen=True, slots=True)
class Cell:
    """One point of the matrix: the customer's and the agent's leg, and which (if either)
    blacks out."""

    name: str
    customer: Conditions
    agent: Conditions
    blackout: str | None = None

    def legs(self) -> tuple[Leg, Leg]:
        """Fresh legs for one call; the seeds are fixed, so every call of a cell, direct or
        through the server, meets the same losses."""
        return Leg(self.customer, name="customer", seed=1), Leg(self.agent, name="agent", seed=2)


@dataclass(frozen=True, slots=True)
class Result:
    """What the agent saw of one call's window (or the median of several)."""

    fps: float
    #: A median of counts may fall between two.
    freezes: float
    freeze_s: float
    recovery_s: float | None
    audio_share: float
    g2g_ms: float | None


def median(results: list[Result]) -> Result:
    """Field by field; a figure some calls lack is the median of those that have it."""
    recoveries = [r.recovery_s for r in results if r.recovery_s is not None]
    latencies = [r.g2g_ms for r in results if r.g2g_ms is not None]
    return Result(
        fps=statistics.median(r.fps for r in results),
        freezes=statistics.median(r.freezes for r in results),
        freeze_s=statistics.median(r.freeze_s for r in results),
        recovery_s=statistics.median(recoveries) if recoveries else None,
        audio_share=statistics.median(r.audio_share for r in results),
        g2g_ms=statistics.median(latencies) if latencies else None,
    )


class StampedCamera(NumberedVideoTrack):
    """A numbered camera that keeps when (loop clock) it handed each frame number over."""

    def __init__(self) -> None:
        super().__init__(WIDTH, HEIGHT, FPS)
        self.produced: dict[int, float] = {}

    async def recv(self) -> av.VideoFrame:
        frame = await super().recv()
        self.produced[(self.frames_sent - 1) & 0xFFFF] = asyncio.get_running_loop().time()
        return frame


class Probe:
    """The agent's view: video arrivals with their glass-to-glass latency, audio arrivals."""

    def __init__(self, camera: StampedCamera) -> None:
        self._camera = camera
        self.video: list[tuple[float, float | None]] = []
        self.audio: list[float] = []
        self.first_video = asyncio.Event()

    def on_video(self, frame: Any) -> None:
        now = asyncio.get_running_loop().time()
        number = read_frame_number(frame) if isinstance(frame, av.VideoFrame) else None
        produced = self._camera.produced.get(number) if number is not None else None
        self.video.append((now, None if produced is None else now - produced))
        self.first_video.set()

    def on_audio(self, frame: Any) -> None:
        self.audio.append(asyncio.get_running_loop().time())

    def result(
        self,
        start: float,
        end: float,
        *,
        audio_sent: int,
        blackout: tuple[float, float] | None,
    ) -> Result:
        """The figures of the window [start, end)."""
        inside = [(t, g2g) for t, g2g in self.video if start <= t < end]
        arrivals = [t for t, _ in inside]
        gaps = [b - a for a, b in itertools.pairwise([start, *arrivals, end])]
        freezes = [gap for gap in gaps if gap > FREEZE_S]
        recovery = None
        if blackout is not None:
            after = [t for t in arrivals if t >= blackout[1]]
            recovery = after[0] - blackout[1] if after else None
        latencies = [g2g for _, g2g in inside if g2g is not None]
        audio = sum(1 for t in self.audio if start <= t < end)
        return Result(
            fps=len(arrivals) / (end - start),
            freezes=len(freezes),
            freeze_s=sum(freezes),
            recovery_s=recovery,
            audio_share=min(1.0, audio / audio_sent) if audio_sent else 0.0,
            g2g_ms=statistics.median(latencies) * 1000 if latencies else None,
        )


def _check_hooked(legs: tuple[Leg, Leg]) -> None:
    """Fail the call if a leg impairs no socket: its figures would be of a clean network."""
    for leg in legs:
        if not leg.sockets or not leg.up.stats.delivered or not leg.down.stats.delivered:
            raise AssertionError(f"the {leg.name} leg carries none of the call's packets")


async def _window(
    cell: Cell, seconds: float, legs: tuple[Leg, Leg], tone: ToneAudioTrack, probe: Probe
) -> Result:
    """Measure for ``seconds`` from now (the agent has its first frame), blacking out the
    cell's leg a third of the way in."""
    loop = asyncio.get_running_loop()
    start = loop.time()
    tone_before = tone.frames_sent
    blackout = None
    if cell.blackout is not None:
        leg = legs[0] if cell.blackout == "customer" else legs[1]
        blackout = leg.black_out(BLACKOUT_S, start_in_s=seconds / 3)
    await asyncio.sleep(seconds)
    return probe.result(
        start, loop.time(), audio_sent=tone.frames_sent - tone_before, blackout=blackout
    )


async def run_direct(cell: Cell, seconds: float) -> Result:
    """The customer's peer offers straight to the agent's; each peer's sockets sit behind
    its leg."""
    sender, receiver = client_pc(), client_pc()
    camera, tone = StampedCamera(), ToneAudioTrack()
    probe = Probe(camera)
    sender.addTrack(camera)
    sender.addTrack(tone)
    legs = cell.legs()
    legs[0].attach(sender)
    legs[1].attach(receiver)
    sinks: list[TrackSink] = []

    @receiver.on("track")
    def on_track(track: MediaStreamTrack) -> None:
        on_frame = probe.on_video if track.kind == "video" else probe.on_audio
        sinks.append(TrackSink(track, on_frame))

    try:
        async with asyncio.timeout(SETUP_TIMEOUT_S):
            await sender.setLocalDescription(await sender.createOffer())
            await receiver.setRemoteDescription(sender.localDescription)
            await receiver.setLocalDescription(await receiver.createAnswer())
            await sender.setRemoteDescription(receiver.localDescription)
            await wait_connected(receiver)
            await probe.first_video.wait()
        _check_hooked(legs)
        return await _window(cell, seconds, legs, tone, probe)
    finally:
        for sink in sinks:
            await sink.aclose()
        camera.stop()
        tone.stop()
        await sender.close()
        await receiver.close()
        for leg in legs:
            leg.close()


@dataclass(frozen=True, slots=True)
class Service:
    """The service running in this process, with what a call needs to be set up."""

    base_url: str
    admin: dict[str, str]
    staff: aiohttp.ClientSession


@contextlib.asynccontextmanager
async def serving() -> AsyncIterator[Service]:
    """The real service on a free loopback port with a fresh data directory, an agent logged
    in (cookie jar) and an admin API token. Grading and live captions are off: on the bench's
    cores their models would measure the CPU, not the network."""
    with tempfile.TemporaryDirectory(prefix="bench-network-") as data_dir:
        settings = Settings(
            data_dir=Path(data_dir), port=0, shutdown_timeout_s=2.0, grading=False,
            captions=False,
        )  # fmt: skip
        async with running_service(settings) as running:
            accounts = running.state.accounts
            await accounts.create_user("agent", _PASSWORD, name="Bench Agent", role=Role.AGENT)
            token, _ = await accounts.create_api_token("bench", role=Role.ADMIN)
            jar = aiohttp.CookieJar(unsafe=True)
            async with aiohttp.ClientSession(cookie_jar=jar) as staff:
                login = {"username": "agent", "password": _PASSWORD}
                async with staff.post(f"{running.base_url}/api/login", json=login) as response:
                    if response.status != 200:
                        raise RuntimeError(f"login: {response.status} {await response.text()}")
                yield Service(running.base_url, {"Authorization": f"Bearer {token}"}, staff)


async def create_case(service: Service, session: aiohttp.ClientSession) -> tuple[str, str, str]:
    """A new return case: its id, the customer's join token and the customer's link."""
    body = {"kind": "return", "customer_name": "Bench Customer", "order_id": "BENCH-NET"}
    async with session.post(
        f"{service.base_url}/api/cases", json=body, headers=service.admin
    ) as response:
        if response.status != 201:
            raise RuntimeError(f"POST /api/cases: {response.status} {await response.text()}")
        created = await response.json()
    return str(created["case"]["id"]), str(created["join_token"]), str(created["join_url"])


async def run_server(service: Service, cell: Cell, seconds: float) -> Result:
    """A case's call through the service: the customer publishes the camera and the tone,
    the agent receives only. Each participant's peer is created and put behind its leg before
    its first offer, so every socket it gathers is impaired."""
    camera, tone = StampedCamera(), ToneAudioTrack()
    probe = Probe(camera)
    legs = cell.legs()
    async with aiohttp.ClientSession() as http:
        case_id, join_token, _ = await create_case(service, http)
        customer = Participant(http, service.base_url, token=join_token)
        agent = Participant(service.staff, service.base_url)
        agent.on_video_frame = probe.on_video
        agent.on_audio_frame = probe.on_audio
        try:
            async with asyncio.timeout(SETUP_TIMEOUT_S):
                await agent.join()
                await customer.join()
                await agent.send({"type": "accept", "case_id": case_id})
                await agent.expect("joined", where=lambda m: m["case"] is not None)
                legs[0].attach(customer._peer())
                legs[1].attach(agent._peer())
                await customer.publish(camera, tone)
                await agent.publish(receive_video=True)
                await probe.first_video.wait()
            _check_hooked(legs)
            return await _window(cell, seconds, legs, tone, probe)
        finally:
            await customer.aclose()
            await agent.aclose()
            camera.stop()
            tone.stop()
            for leg in legs:
                leg.close()


# -- a Chromium customer -------------------------------------------------------------------------

#: Chromium's bandwidth estimate ramps up first; the window starts after this.
BROWSER_SETTLE_S = 5.0


@dataclass(frozen=True, slots=True)
class BrowserResult:
    """What the agent saw of a Chromium customer's call, after its first seconds."""

    fps: float
    freezes: int
    freeze_s: float
    audio_share: float
    #: The picture sizes that arrived in the window ("1280x720"), most frames first.
    sizes: list[str]


class _SizeProbe:
    """Video arrivals with each frame's size, and how much audio (seconds) arrived when."""

    def __init__(self) -> None:
        self.video: list[tuple[float, str]] = []
        self.audio: list[tuple[float, float]] = []
        self.first_video = asyncio.Event()

    def on_video(self, frame: Any) -> None:
        size = f"{frame.width}x{frame.height}"
        self.video.append((asyncio.get_running_loop().time(), size))
        self.first_video.set()

    def on_audio(self, frame: Any) -> None:
        self.audio.append((asyncio.get_running_loop().time(), frame.samples / frame.sample_rate))

    def result(self, start: float, end: float) -> BrowserResult:
        inside = [(t, size) for t, size in self.video if start <= t < end]
        arrivals = [t for t, _ in inside]
        gaps = [b - a for a, b in itertools.pairwise([start, *arrivals, end])]
        freezes = [gap for gap in gaps if gap > FREEZE_S]
        counts: dict[str, int] = {}
        for _, size in inside:
            counts[size] = counts.get(size, 0) + 1
        audio = sum(seconds for t, seconds in self.audio if start <= t < end)
        return BrowserResult(
            fps=len(arrivals) / (end - start),
            freezes=len(freezes),
            freeze_s=sum(freezes),
            # Chromium's fake microphone sends all the time (no DTX is negotiated).
            audio_share=min(1.0, audio / (end - start)),
            sizes=sorted(counts, key=lambda size: -counts[size]),
        )


async def run_chromium(service: Service, seconds: float, rate_bps: float) -> BrowserResult:
    """Chromium (fake camera and microphone, its own sockets, unimpaired) opens the customer's
    link and starts the camera; an aiortc agent behind a leg capped at ``rate_bps`` accepts
    the case and receives."""
    from playwright.async_api import async_playwright

    from tests.e2e._browser import CHROMIUM, CHROMIUM_ARGS

    probe = _SizeProbe()
    leg = Leg(Conditions(rate_bps=rate_bps), name="agent", seed=2)
    loop = asyncio.get_running_loop()
    async with aiohttp.ClientSession() as http:
        case_id, _, join_url = await create_case(service, http)
        agent = Participant(service.staff, service.base_url)
        agent.on_video_frame = probe.on_video
        agent.on_audio_frame = probe.on_audio
        async with async_playwright() as playwright:
            browser = await playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            try:
                page = await browser.new_page()
                async with asyncio.timeout(SETUP_TIMEOUT_S * 2):
                    await agent.join()
                    await page.goto(join_url)
                    await page.click('[data-testid="start-camera"]')
                    await agent.expect(
                        "queue",
                        wait_s=SETUP_TIMEOUT_S,
                        where=lambda m: any(c.get("case_id") == case_id for c in m["cases"]),
                    )
                    await agent.send({"type": "accept", "case_id": case_id})
                    await agent.expect("joined", where=lambda m: m["case"] is not None)
                    leg.attach(agent._peer())
                    await agent.publish(receive_video=True)
                    await probe.first_video.wait()
                if not leg.sockets or not leg.down.stats.delivered:
                    raise AssertionError("the agent leg carries none of the call's packets")
                await asyncio.sleep(BROWSER_SETTLE_S)
                start = loop.time()
                await asyncio.sleep(seconds)
                return probe.result(start, loop.time())
            finally:
                await agent.aclose()
                await browser.close()
                leg.close()
