"""Connect time: how long a customer waits before the agent sees their camera.

Runs ``inspectd serve`` as a subprocess on a free loopback port with a fresh data directory and
drives ``--sessions`` return calls through it with the scripted participants of
``tests/fakes``. One sample is the time from the moment the customer sends ``join`` (its socket
already open, the agent already in the lobby on its own socket) to the first decoded video frame
at the agent: case waiting -> ``queue`` -> ``accept`` -> ``joined``, both offers answered, ICE and
DTLS with the server peers, the customer's camera forwarded to the agent and decoded.

Beside it, in the same run and interleaved with it, the floor: two aiortc peers connected
directly over loopback, one publishing the same 640x480@15 camera, timed from the start of
``createOffer`` to the first decoded frame at the other. The ratio service/floor says what
signaling, queueing and forwarding cost on top of what WebRTC itself needs.

Every client peer, here and in the floor, is created without aiortc's default public STUN server,
as a page does with the empty ``joined.ice_servers`` on loopback.

    .venv/bin/python bench/connect.py [--sessions 20] [--warmup 1] [--json PATH]

Exits 1 if any session failed (figures are still printed).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import shlex
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if not __package__:
    # Run by path (python bench/connect.py): import from the repository root, as
    # ``python -m bench.connect`` does, never from bench/ itself.
    sys.path[0] = str(ROOT)

import aiohttp  # noqa: E402
import aiortc  # noqa: E402
import av  # noqa: E402
from aiortc import MediaStreamTrack, RTCPeerConnection  # noqa: E402

from bench._inspectd import Server, inspectd_command, spawn, stop_all  # noqa: E402
from bench._stats import percentile  # noqa: E402
from tests.fakes import NumberedVideoTrack, ToneAudioTrack, client_pc  # noqa: E402
from tests.fakes.signal_client import Participant, TrackSink  # noqa: E402

AGENT = "bench-agent"
AGENT_PASSWORD = "bench-agent-pass"
WIDTH, HEIGHT, FPS = 640, 480, 15
#: Service stages, in call order, reported as p50 offsets from t0.
STAGES = (
    "customer joined",
    "agent saw case",
    "agent in room",
    "customer answered",
    "agent answered",
    "first frame",
)


class SessionFailed(Exception):
    """A session that did not reach the first frame; the message says how far it got."""


@dataclass(slots=True)
class Series:
    """Samples of one measured path (seconds) and the failures, in order."""

    name: str
    samples: list[float] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    warmup_failures: list[str] = field(default_factory=list)
    stages: dict[str, list[float]] = field(default_factory=dict)


# -- statistics ----------------------------------------------------------------------------------


def summary(values: list[float]) -> dict[str, float] | None:
    if not values:
        return None
    return {
        "min": min(values),
        "p50": percentile(values, 50),
        "p95": percentile(values, 95),
        "max": max(values),
        "mean": sum(values) / len(values),
    }


# -- the service as a subprocess -----------------------------------------------------------------


@dataclass(slots=True)
class Service(Server):
    api_token: str = ""


@contextlib.contextmanager
def inspectd_service(data_dir: Path) -> Iterator[Service]:
    """``inspectd serve`` with an agent account and an admin API token; SIGTERM on exit."""
    command = inspectd_command()
    env = {**os.environ, "INSPECT_DATA_DIR": str(data_dir), "INSPECT_LOG_LEVEL": "WARNING"}

    def admin(*args: str) -> str:
        done = subprocess.run(
            [command, *args], env=env, capture_output=True, text=True, timeout=60, check=False
        )
        if done.returncode != 0:
            raise SystemExit(f"bench: inspectd {args[0]} failed: {done.stderr.strip()}")
        return done.stdout.strip()

    admin("add-user", AGENT, "--role", "agent", "--password", AGENT_PASSWORD)
    token = admin("add-token", "bench").splitlines()[-1].strip()
    service = spawn(Service, "inspectd", env, data_dir / "inspectd.log", api_token=token)
    try:
        yield service
    finally:
        stop_all([service], timeout_s=15)


async def server_gauges(service: Service, client: aiohttp.ClientSession) -> dict[str, float]:
    async with client.get(f"{service.base_url}/metrics") as response:
        text = await response.text()
    gauges: dict[str, float] = {}
    for line in text.splitlines():
        name, _, value = line.partition(" ")
        if name in ("inspect_peers", "inspect_ws_connections"):
            gauges[name] = float(value)
    return gauges


async def wait_server_idle(
    service: Service, client: aiohttp.ClientSession, wait_s: float = 5.0
) -> dict[str, float]:
    """Wait (untimed) until the server closed the previous session's peers and sockets, so
    sessions neither overlap nor accumulate. Returns the last gauges read."""
    deadline = time.monotonic() + wait_s
    while True:
        gauges = await server_gauges(service, client)
        if not any(gauges.values()) or time.monotonic() > deadline:
            return gauges
        await asyncio.sleep(0.02)


# -- one service session -------------------------------------------------------------------------


def _loopback_peer(participant: Participant, on_video: Callable[[Any], None] | None) -> None:
    """Give ``participant`` its peer before it publishes: without the public STUN server, and
    consuming every remote track as :class:`Participant` does."""
    pc = client_pc()

    @pc.on("track")
    def on_track(track: MediaStreamTrack) -> None:
        callback = on_video if track.kind == "video" else None
        participant.sinks[track.kind] = TrackSink(track, callback)

    participant.pc = pc


async def _create_case(service: Service, client: aiohttp.ClientSession) -> tuple[str, str]:
    body = {"kind": "return", "customer_name": "Bench Customer", "order_id": "BENCH-1"}
    headers = {"Authorization": f"Bearer {service.api_token}"}
    async with client.post(f"{service.base_url}/api/cases", json=body, headers=headers) as r:
        if r.status != 201:
            raise SessionFailed(f"POST /api/cases: {r.status} {await r.text()}")
        created = await r.json()
    return str(created["case"]["id"]), str(created["join_token"])


async def service_session(
    service: Service,
    customer_client: aiohttp.ClientSession,
    staff_client: aiohttp.ClientSession,
    timeout_s: float,
) -> tuple[float, dict[str, float]]:
    """One return call; returns (seconds to the agent's first frame, stage offsets)."""
    try:
        case_id, join_token = await _create_case(service, customer_client)
    except aiohttp.ClientError as exc:
        raise SessionFailed(f"POST /api/cases: {type(exc).__name__}: {exc}") from None
    customer = Participant(customer_client, service.base_url, token=join_token)
    agent = Participant(staff_client, service.base_url)
    tracks: list[MediaStreamTrack] = [
        NumberedVideoTrack(WIDTH, HEIGHT, FPS),
        ToneAudioTrack(),
        ToneAudioTrack(frequency=660.0),
    ]
    marks: dict[str, float] = {}
    first_frame = asyncio.Event()
    t0 = 0.0

    def mark(stage: str) -> None:
        marks.setdefault(stage, time.perf_counter() - t0)

    def on_video(_frame: Any) -> None:
        mark("first frame")
        first_frame.set()

    def reached() -> str:
        return max(marks, key=marks.__getitem__) if marks else "customer sent join"

    async def customer_side() -> None:
        await customer.join()
        mark("customer joined")
        _loopback_peer(customer, None)
        await customer.publish(tracks[0], tracks[1])
        mark("customer answered")

    async def agent_side() -> None:
        await agent.expect(
            "queue",
            wait_s=timeout_s,
            where=lambda m: any(c.get("case_id") == case_id for c in m["cases"]),
        )
        mark("agent saw case")
        await agent.send({"type": "accept", "case_id": case_id})
        await agent.expect("accepted", wait_s=timeout_s)
        await agent.expect("joined", wait_s=timeout_s)
        mark("agent in room")
        _loopback_peer(agent, on_video)
        await agent.publish(tracks[2], receive_video=True)
        mark("agent answered")
        await first_frame.wait()

    try:
        # Outside the timed window: the agent waits in the lobby, the customer's socket is open.
        try:
            async with asyncio.timeout(timeout_s):
                lobby = await agent.join()
                await customer.connect()
        except (TimeoutError, AssertionError, aiohttp.ClientError) as exc:
            raise SessionFailed(f"before t0: {type(exc).__name__}: {exc}") from None
        if lobby["case"] is not None or lobby["role"] != "agent":
            raise SessionFailed(f"agent did not land in the lobby: {lobby}")
        t0 = time.perf_counter()
        try:
            async with asyncio.timeout(timeout_s), asyncio.TaskGroup() as group:
                group.create_task(customer_side(), name="bench-customer")
                group.create_task(agent_side(), name="bench-agent")
        except TimeoutError:
            raise SessionFailed(
                f"no first frame after {timeout_s:g} s (last: {reached()})"
            ) from None
        except ExceptionGroup as group_error:
            # A participant gave up first (closed socket, error, its own wait ran out).
            causes = "; ".join(f"{type(e).__name__} {e}".strip() for e in group_error.exceptions)
            raise SessionFailed(f"{causes} (last: {reached()})") from None
        return marks["first frame"], marks
    finally:
        for participant in (agent, customer):
            await participant.aclose()
        for track in tracks:
            track.stop()


# -- the floor -----------------------------------------------------------------------------------


async def floor_session(timeout_s: float) -> float:
    """Two aiortc peers over loopback: createOffer -> first decoded frame at the receiver."""
    sender, receiver = client_pc(), client_pc()
    track = NumberedVideoTrack(WIDTH, HEIGHT, FPS)
    sinks: list[TrackSink] = []
    first_frame = asyncio.Event()
    t0 = 0.0
    t1: float | None = None

    def on_frame(_frame: Any) -> None:
        nonlocal t1
        if t1 is None:
            t1 = time.perf_counter()
            first_frame.set()

    @receiver.on("track")
    def on_track(remote: MediaStreamTrack) -> None:
        sinks.append(TrackSink(remote, on_frame))

    sender.addTrack(track)
    try:
        async with asyncio.timeout(timeout_s):
            t0 = time.perf_counter()
            await _connect(sender, receiver)
            await first_frame.wait()
    except TimeoutError:
        raise SessionFailed(
            f"no first frame after {timeout_s:g} s (ice {sender.iceConnectionState}, "
            f"connection {sender.connectionState})"
        ) from None
    finally:
        for sink in sinks:
            await sink.aclose()
        track.stop()
        await sender.close()
        await receiver.close()
    assert t1 is not None
    return t1 - t0


async def _connect(offerer: RTCPeerConnection, answerer: RTCPeerConnection) -> None:
    # aiortc completes ICE gathering inside setLocalDescription: no trickle to relay.
    await offerer.setLocalDescription(await offerer.createOffer())
    await answerer.setRemoteDescription(offerer.localDescription)
    await answerer.setLocalDescription(await answerer.createAnswer())
    await offerer.setRemoteDescription(answerer.localDescription)


# -- the run -------------------------------------------------------------------------------------


async def _login(service: Service, client: aiohttp.ClientSession) -> None:
    body = {"username": AGENT, "password": AGENT_PASSWORD}
    async with client.post(f"{service.base_url}/api/login", json=body) as response:
        if response.status != 200:
            raise SystemExit(
                f"bench: agent login failed: {response.status} {await response.text()}"
            )


async def run(
    args: argparse.Namespace, service: Service
) -> tuple[Series, Series, dict[str, float]]:
    service_series = Series("service")
    floor_series = Series("floor")
    # A plain kill unwinds like Ctrl-C does under asyncio.run: peers closed, service stopped.
    main_task = asyncio.current_task()
    assert main_task is not None
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, main_task.cancel)
    async with (
        aiohttp.ClientSession() as customer_client,
        # Cookies for an IP host need the unsafe jar.
        aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as staff_client,
    ):
        await service.wait_healthy(customer_client, wait_s=30)
        await _login(service, staff_client)
        for index in range(args.warmup + args.sessions):
            warm = index < args.warmup
            label = f"warm-up {index + 1}" if warm else f"#{index - args.warmup + 1}"
            # Interleaved, so drift on the machine touches both paths alike.
            try:
                seconds = await floor_session(args.timeout)
                if not warm:
                    floor_series.samples.append(seconds)
            except SessionFailed as exc:
                failed = floor_series.warmup_failures if warm else floor_series.failures
                failed.append(f"{label}: {exc}")
            try:
                seconds, marks = await service_session(
                    service, customer_client, staff_client, args.timeout
                )
                if not warm:
                    service_series.samples.append(seconds)
                    for stage, offset in marks.items():
                        service_series.stages.setdefault(stage, []).append(offset)
            except SessionFailed as exc:
                failed = service_series.warmup_failures if warm else service_series.failures
                failed.append(f"{label}: {exc}")
                if service.process.poll() is not None:
                    raise SystemExit(
                        f"bench: inspectd exited with {service.process.returncode}:\n"
                        f"{service.log_tail()}"
                    ) from None
            await wait_server_idle(service, customer_client)
        leftover = await wait_server_idle(service, customer_client)
    return service_series, floor_series, leftover


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value * 1000:.0f}"


def report(
    args: argparse.Namespace, service: Series, floor: Series, leftover: dict[str, float]
) -> dict[str, Any]:
    stats = {series.name: summary(series.samples) for series in (service, floor)}
    ratio = {
        q: (stats["service"][q] / stats["floor"][q])
        for q in ("p50", "p95")
        if stats["service"] and stats["floor"] and stats["floor"][q] > 0
    }
    print(f"connect time, {args.sessions} sessions each (+{args.warmup} warm-up, untimed), ms")
    print("  service: customer sends join -> first decoded video frame at the agent")
    print(
        f"  floor:   two aiortc peers on loopback, createOffer -> first decoded frame "
        f"({WIDTH}x{HEIGHT}@{FPS})"
    )
    header = f"{'':10}{'ok':>4}{'fail':>6}{'min':>7}{'p50':>7}{'p95':>7}{'max':>7}{'mean':>7}"
    print(header)
    for series in (service, floor):
        s = stats[series.name] or {}
        print(
            f"{series.name:10}{len(series.samples):>4}{len(series.failures):>6}"
            + "".join(f"{_ms(s.get(k)):>7}" for k in ("min", "p50", "p95", "max", "mean"))
        )
    cells = "".join(f"{ratio[q]:>6.1f}x" if q in ratio else f"{'-':>7}" for q in ("p50", "p95"))
    print(f"{'ratio':10}{'':17}{cells}   service/floor")
    stages = {
        stage: percentile(service.stages[stage], 50)
        for stage in STAGES
        if service.stages.get(stage)
    }
    if stages:
        print(
            "service stages, p50 ms from t0: "
            + ", ".join(f"{stage} {_ms(offset)}" for stage, offset in stages.items())
        )
    for series in (service, floor):
        for failure in (*series.warmup_failures, *series.failures):
            print(f"FAILED {series.name} {failure}")
    print(
        "server after the run: "
        + ", ".join(
            f"{name.removeprefix('inspect_')} {value:g}" for name, value in leftover.items()
        )
    )
    machine = {
        "python": platform.python_version(),
        "aiortc": aiortc.__version__,
        "av": av.__version__,
        "cpus": os.cpu_count(),
        "platform": platform.platform(terse=True),
    }
    print("machine: " + ", ".join(f"{key} {value}" for key, value in machine.items()))
    command = shlex.join([sys.executable, *sys.argv])
    print(f"command: {command}")
    return {
        "sessions": args.sessions,
        "warmup": args.warmup,
        "timeout_s": args.timeout,
        "unit": "s",
        "service": {
            "stats": stats["service"],
            "samples": service.samples,
            "failures": service.failures,
            "warmup_failures": service.warmup_failures,
            "stages_p50": stages,
        },
        "floor": {
            "stats": stats["floor"],
            "samples": floor.samples,
            "failures": floor.failures,
            "warmup_failures": floor.warmup_failures,
        },
        "ratio": ratio,
        "server_after": leftover,
        "machine": machine,
        "command": command,
    }


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--sessions", type=int, default=20, help="timed sessions per path (20)")
    parser.add_argument("--warmup", type=int, default=1, help="untimed sessions first (1)")
    parser.add_argument("--timeout", type=float, default=15.0, help="per session, seconds (15)")
    parser.add_argument("--json", type=Path, metavar="PATH", help="also write the figures here")
    return parser


def main() -> int:
    args = _parser().parse_args()
    if args.sessions < 1 or args.warmup < 0 or args.timeout <= 0:
        raise SystemExit("bench: --sessions >= 1, --warmup >= 0, --timeout > 0")
    with (
        tempfile.TemporaryDirectory(prefix="inspect-bench-") as data_dir,
        inspectd_service(Path(data_dir)) as service,
    ):
        try:
            service_series, floor_series, leftover = asyncio.run(run(args, service))
        except asyncio.CancelledError:
            print("bench: terminated", file=sys.stderr)
            return 128 + signal.SIGTERM
        except KeyboardInterrupt:
            print("bench: interrupted", file=sys.stderr)
            return 130
    figures = report(args, service_series, floor_series, leftover)
    if args.json is not None:
        args.json.write_text(json.dumps(figures, indent=2) + "\n")
        print(f"figures written to {args.json}")
    failed = (
        service_series.failures
        or service_series.warmup_failures
        or floor_series.failures
        or floor_series.warmup_failures
    )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
