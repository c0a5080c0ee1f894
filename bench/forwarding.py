"""Media plane: CPU, frame delivery, loop lag, glass-to-glass latency and capacity per process.

Compares this service's :class:`media.MediaEngine` ("forwarder") with the baseline the design
rejects: aiortc's ``MediaRelay`` ("baseline"), where the server decodes each published track
and every subscriber's sender encodes it again; and "grading": the forwarder while a grading
sampler is attached to every published track (decoded once, sampled at 2 fps into a sink that
drops them). All run the same way:

- The server runs alone in a child process (``bench/_forwarding_server.py``); SDP goes over a pipe.
  Its CPU is read from ``/proc/<pid>/stat`` (all threads: aiortc decodes and encodes off the
  loop) and a timer in it samples its event-loop lag every 10 ms.
- This process plays every client, cheaply, so that two cores suffice: a publisher sends a
  synthetic moving clip, VP8-encoded once per profile at a realistic bitrate, as ``av.Packet``
  objects paced in real time (aiortc packetizes them without encoding), looping from a
  keyframe; a subscriber (an agent) counts the encoded frames its receiver completes through
  ``media._aiortc.tap_encoded_frames`` and tells the tap not to decode them.
- A point: N publisher+subscriber pairs (one room each), a warm-up, then a measured window.
  Delivery is frames completed at each subscriber over frames its publisher sent.
- Latency: a publisher draws the time into each frame as it hands it to its (live) encoder;
  the subscriber decodes and reads it: now - drawn, through the engine and, as the floor, over
  one direct aiortc hop.
- Capacity: the most pairs one server process carries under 70% of one core with every
  subscriber getting >= 95% of its publisher's frames (search: grow, then bisect; a point that
  fails while something else on the machine used CPU is measured once more).
- Other load: CPU used by anything but the server and the clients during a window is shown;
  above 20% of a core the point is flagged as noisy.

Every peer, client or server, is created with ``RTCConfiguration(iceServers=[])``.

    .venv/bin/python bench/forwarding.py [--quick] [--seconds 10] [--streams 4] [--json PATH]
    .venv/bin/python -m bench.forwarding --quick

Exits 1 if a part failed to run (figures are still printed); missing a target is a figure.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shlex
import sys
import time
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if not __package__:
    # Run by path (python bench/forwarding.py): import from the repository root, as
    # ``python -m bench.forwarding`` does, never from bench/ itself.
    sys.path[0] = str(ROOT)

from bench._forwarding_clients import PROFILES, encode_clip  # noqa: E402
from bench._forwarding_points import (  # noqa: E402
    CPU_LIMIT,
    DELIVERY_MIN,
    MODES,
    NOISE_PCT,
    LoadPoint,
    Timing,
    find_capacity,
    run_latency,
    run_load,
)
from bench._forwarding_report import LOAD_HEADER, header, load_row  # noqa: E402
from bench._forwarding_server import RunFailed  # noqa: E402
from media import _aiortc  # noqa: E402

LATENCY_TARGET_MS = 100.0


# -- the run -------------------------------------------------------------------------------------


async def run(args: argparse.Namespace) -> tuple[dict[str, Any], bool]:
    profiles = [PROFILES[name] for name in args.profiles]
    clips = {p.name: encode_clip(p) for p in profiles}
    machine = header(args, clips)
    figures: dict[str, Any] = {
        "machine": machine,
        "clips": {n: {"kbps": c.kbps, "keyframes": c.keyframes} for n, c in clips.items()},
        "load": [],
        "ratios": {},
        "latency": [],
        "capacity": [],
    }
    failed = False
    by_key: dict[tuple[str, str], LoadPoint] = {}
    timing = Timing(args.warmup, args.seconds, args.connect_timeout, args.quiet_wait)

    if 1 in args.parts:
        print(f"\n1. CPU, delivery and loop lag per forwarded stream (N pairs, {args.seconds:g} s)")
        print(LOAD_HEADER)
        for name, mode in MODES.items():
            if name == "grading":
                continue  # the same process as the forwarder's when idle
            # What a server process costs with no peer at all (includes the lag probe).
            idle = await run_load(mode, clips[profiles[0].name], 0, replace(timing, seconds=2.0))
            print(load_row(idle).replace(idle.profile, "idle".ljust(len(idle.profile)), 1))
            figures["idle"] = figures.get("idle", {}) | {name: asdict(idle)}
            failed |= idle.error is not None
        for profile in profiles:
            for name, mode in MODES.items():
                n = args.baseline_streams if name == "baseline" else args.streams
                point = await run_load(mode, clips[profile.name], n, timing)
                print(load_row(point), flush=True)
                figures["load"].append({**asdict(point), "passes": point.passes})
                by_key[(name, profile.name)] = point
                failed |= point.error is not None
        for profile in profiles:
            fwd, base = (
                by_key.get(("forwarder", profile.name)),
                by_key.get(("baseline", profile.name)),
            )
            if fwd and base and fwd.error is None and base.error is None:
                ratio = base.per_stream_pct / max(fwd.per_stream_pct, 1e-9)
                figures["ratios"][profile.name] = ratio
                verdict = "meets" if ratio >= 4 else "MISSES"
                print(
                    f"CPU per stream, baseline/forwarder, {profile.name}: {ratio:.1f}x "
                    f"({base.per_stream_pct:.2f}% / {fwd.per_stream_pct:.2f}%; "
                    f"target >= 4x: {verdict})"
                )
            grading = by_key.get(("grading", profile.name))
            if fwd and grading and fwd.error is None and grading.error is None:
                extra = grading.per_stream_pct - fwd.per_stream_pct
                figures["grading_extra_pct"] = figures.get("grading_extra_pct", {}) | {
                    profile.name: extra
                }
                print(
                    f"grading (decode + {grading.sampled_fps:.1f} fps sample) adds {extra:.2f}% "
                    f"of a core per published stream at {profile.name}"
                )

    if 2 in args.parts:
        print(f"\n2. Glass-to-glass latency, one stream, {args.seconds:g} s (ms)")
        print("   drawn into the frame as the publisher's encoder takes it, read after decoding")
        print(
            f"{'path':10}{'profile':8}{'subscriber':11}{'frames':>7}{'p50':>7}{'p95':>7}{'max':>7}"
        )
        rules = ["aiortc"]
        if hasattr(_aiortc, "release_frames_on_marker"):
            rules.append("marker")
        for profile in profiles:
            for rule in rules:
                for path in ("engine", "direct"):
                    lat = await run_latency(path, profile, rule, timing)
                    figures["latency"].append(asdict(lat))
                    failed |= lat.error is not None
                    label = "engine" if path == "engine" else "direct*"
                    row = f"{label:10}{profile.name:8}{rule:11}"
                    if lat.error is not None:
                        print(f"{row}  FAILED: {lat.error.splitlines()[0]}")
                        continue
                    note = "  noisy (other load)" if lat.other_cpu_pct > NOISE_PCT else ""
                    if path == "engine":
                        ok = lat.p50_ms < LATENCY_TARGET_MS
                        verdict = "meets" if ok else "MISSES"
                        note = f"  target p50 < {LATENCY_TARGET_MS:.0f}: {verdict}" + note
                    print(
                        f"{row}{lat.samples:>7}{lat.p50_ms:>7.0f}{lat.p95_ms:>7.0f}"
                        f"{lat.max_ms:>7.0f}{note}",
                        flush=True,
                    )
        print("   * direct: publisher and subscriber peers connected to each other (no server)")
        print(
            "   subscriber 'aiortc': a frame is complete when the next one starts (one frame "
            "interval late); 'marker': complete at its last packet, as a browser does"
        )

    if 3 in args.parts:
        print(
            f"\n3. Capacity: most pairs per server process at < {CPU_LIMIT:.0f}% of one core "
            f"with every subscriber >= {100 * DELIVERY_MIN:.0f}% of its frames"
        )
        print(LOAD_HEADER)
        for profile in [p for p in profiles if p.name in args.capacity_profiles]:
            for name, mode in MODES.items():
                if name not in args.capacity_modes:
                    continue
                known = by_key.get((name, profile.name))
                guess = 4
                if known and known.error is None and known.per_stream_pct > 0:
                    guess = int(0.8 * CPU_LIMIT / known.per_stream_pct)
                cap = await find_capacity(
                    mode,
                    clips[profile.name],
                    guess,
                    args.max_streams,
                    args.capacity_steps,
                    replace(timing, seconds=args.capacity_seconds),
                    lambda p: print(load_row(p), flush=True),
                )
                figures["capacity"].append(
                    {
                        "mode": cap.mode,
                        "profile": cap.profile,
                        "streams": cap.streams,
                        "bounded": cap.bounded,
                        "points": [{**asdict(p), "passes": p.passes} for p in cap.points],
                    }
                )
                above = [p for p in cap.points if p.streams > cap.streams]
                if above:
                    first = min(reversed(above), key=lambda p: p.streams)  # the latest
                    why = f" ({first.streams} failed: {first.failure()})"
                else:
                    why = f" (no failing point up to {args.max_streams})"
                figures["capacity"][-1]["limit"] = why.strip(" ()")
                print(f"=> {name} {profile.name}: {cap.streams} pairs{why}", flush=True)
        caps = {(c["mode"], c["profile"]): c["streams"] for c in figures["capacity"]}
        for profile in profiles:
            fwd, base = caps.get(("forwarder", profile.name)), caps.get(("baseline", profile.name))
            if fwd is not None and base is not None:
                print(f"capacity {profile.name}: forwarder {fwd} pairs, baseline {base} pairs")
    return figures, failed


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--quick", action="store_true", help="a short smoke run")
    parser.add_argument("--seconds", type=float, help="measured window per point (10)")
    parser.add_argument("--warmup", type=float, help="seconds before each window (3)")
    parser.add_argument("--streams", type=int, help="forwarder and grading pairs in part 1 (4)")
    parser.add_argument("--baseline-streams", type=int, help="baseline pairs in part 1 (2)")
    parser.add_argument("--capacity-seconds", type=float, help="window per capacity point (8)")
    parser.add_argument("--capacity-steps", type=int, help="capacity points per search (5)")
    parser.add_argument("--max-streams", type=int, default=120, help="capacity search cap (120)")
    parser.add_argument(
        "--profiles", default="480p15,720p30", help="comma-separated (480p15,720p30)"
    )
    parser.add_argument(
        "--capacity-profiles", default="480p15,720p30", help="which profiles get part 3"
    )
    parser.add_argument(
        "--capacity-modes", default="forwarder,baseline", help="which modes get part 3"
    )
    parser.add_argument("--parts", default="1,2,3", help="which parts to run (1,2,3)")
    parser.add_argument("--connect-timeout", type=float, default=60.0, help="per point (60 s)")
    parser.add_argument(
        "--quiet-wait",
        type=float,
        help="before each point, wait up to this long for other load to stop (5 s; quick 3)",
    )
    parser.add_argument("--json", type=Path, metavar="PATH", help="also write the figures here")
    return parser


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    args = _parser().parse_args(argv)
    quick = args.quick
    defaults = {
        "seconds": 3.0 if quick else 10.0,
        "warmup": 1.0 if quick else 3.0,
        "streams": 2 if quick else 4,
        "baseline_streams": 1 if quick else 2,
        "capacity_seconds": 3.0 if quick else 8.0,
        "capacity_steps": 2 if quick else 5,
        "quiet_wait": 3.0 if quick else 5.0,
    }
    for name, value in defaults.items():
        if getattr(args, name) is None:
            setattr(args, name, value)
    args.profiles = [p for p in args.profiles.split(",") if p]
    args.capacity_profiles = [p for p in args.capacity_profiles.split(",") if p]
    args.capacity_modes = [m for m in args.capacity_modes.split(",") if m]
    args.parts = {int(p) for p in args.parts.split(",") if p}
    unknown = set(args.profiles + args.capacity_profiles) - set(PROFILES)
    if unknown:
        raise SystemExit(f"bench: unknown profiles {sorted(unknown)} (have {sorted(PROFILES)})")
    if set(args.capacity_modes) - set(MODES) or args.parts - {1, 2, 3}:
        raise SystemExit(
            "bench: --capacity-modes from forwarder,grading,baseline; --parts from 1,2,3"
        )
    if (
        min(args.seconds, args.capacity_seconds, args.connect_timeout) <= 0
        or min(args.warmup, args.quiet_wait) < 0
    ):
        raise SystemExit("bench: durations must be positive")
    if min(args.streams, args.baseline_streams, args.capacity_steps, args.max_streams) < 1:
        raise SystemExit("bench: stream counts and steps must be >= 1")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    started = time.monotonic()
    try:
        figures, failed = asyncio.run(run(args))
    except KeyboardInterrupt:
        print("bench: interrupted", file=sys.stderr)
        return 130
    except RunFailed as exc:
        print(f"bench: {exc}", file=sys.stderr)
        return 1
    command = shlex.join([sys.executable, *sys.argv])
    figures["command"] = command
    figures["args"] = {k: sorted(v) if isinstance(v, set) else v for k, v in vars(args).items()}
    figures["args"]["json"] = str(args.json) if args.json else None
    figures["wall_s"] = time.monotonic() - started
    print(f"\ncommand: {command}; took {figures['wall_s']:.0f} s")
    if args.json is not None:
        args.json.write_text(json.dumps(figures, indent=2) + "\n")
        print(f"figures written to {args.json}")
    if failed:
        print("bench: some points failed to run (see FAILED above)", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
