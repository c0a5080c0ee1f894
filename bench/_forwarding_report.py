"""What ``bench/forwarding.py`` prints: the header (machine, method, clips) and one row per load
point."""

from __future__ import annotations

import argparse
import os
import platform
from typing import Any

import aiortc
import av

from bench._forwarding_clients import Clip
from bench._forwarding_points import NOISE_PCT, LoadPoint
from bench._proc import cpu_model

__all__ = ["LOAD_HEADER", "header", "load_row"]


def _lag(point: LoadPoint) -> str:
    lag = point.server_lag_ms
    return f"{lag.get('p99', 0):>6.1f}{lag.get('max', 0):>7.0f}" if lag else f"{'-':>6}{'-':>7}"


LOAD_HEADER = (
    f"{'mode':10}{'profile':8}{'pairs':>6}{'srv cpu':>9}{'/stream':>9}{'pub fps':>8}{'kf/s':>5}"
    f"{'sub fps':>8}{'min':>6}{'deliv':>7}{'min':>6}{'lag p99':>8}{'max':>7}"
    f"{'cli cpu':>8}{'other':>7}{'srv MB':>7}"
)


def load_row(point: LoadPoint) -> str:
    if point.error is not None:
        first = point.error.splitlines()[0]
        return f"{point.mode:10}{point.profile:8}{point.streams:>6}  FAILED: {first}"
    flags = []
    if point.client_limited:
        flags.append(f"machine saturated ({point.machine_busy_pct:.0f}% of all cores)")
    if point.noisy:
        flags.append("noisy (other load)")
    if point.mode == "grading":
        flags.append(f"sampled {point.sampled_fps:.1f} fps/stream")
    return (
        f"{point.mode:10}{point.profile:8}{point.streams:>6}{point.server_cpu_pct:>8.1f}%"
        f"{point.per_stream_pct:>8.2f}%{point.pub_fps:>8.1f}{point.pub_keyframes_per_s:>5.1f}"
        f"{point.sub_fps_mean:>8.1f}"
        f"{point.sub_fps_min:>6.1f}{100 * point.delivered_mean:>6.1f}%"
        f"{100 * point.delivered_min:>5.0f}%{_lag(point)}{point.client_cpu_pct:>7.0f}%"
        f"{point.other_cpu_pct:>6.0f}%{point.server_rss_mb:>7.0f}"
        + (f"  {' '.join(flags)}" if flags else "")
    )


def header(args: argparse.Namespace, clips: dict[str, Clip]) -> dict[str, Any]:
    machine = {
        "cpus": os.cpu_count(),
        "cpu_model": cpu_model(),
        "python": platform.python_version(),
        "aiortc": aiortc.__version__,
        "av": av.__version__,
        "platform": platform.platform(terse=True),
    }
    print("media plane benchmark: this service's MediaEngine ('forwarder') against")
    print("aiortc MediaRelay ('baseline': server decodes, each subscriber's sender re-encodes);")
    print("'grading' = the forwarder with the grading sampler on every published track")
    print(
        "machine: "
        + ", ".join(f"{key} {value}" for key, value in machine.items())
        + f"; load average {os.getloadavg()[0]:.2f}"
    )
    print(
        "method: server alone in a child process (CPU from /proc/<pid>/stat, all threads, as "
        "% of one core; loop lag = lateness of a 10 ms timer in it); clients in this process: "
        "publishers send a pre-encoded VP8 clip as av.Packet in real time, subscribers count "
        "encoded frames at the receiver without decoding; one room per publisher+subscriber pair"
    )
    for clip in clips.values():
        p = clip.profile
        print(
            f"clip {p.name}: {p.width}x{p.height} @ {p.fps} fps, {clip.kbps:.0f} kbit/s "
            f"(target {p.bitrate // 1000}), keyframes at frames {clip.keyframes} of "
            f"{len(clip.frames)}, looped, and restarted at its keyframe on a PLI"
        )
    print(
        f"window {args.seconds:g} s after {args.warmup:g} s warm-up (capacity: "
        f"{args.capacity_seconds:g} s); delivery = frames completed at the subscriber / frames "
        "its publisher sent in the window; 'kf/s' = keyframes per publisher per second; "
        "'cli cpu' = this process (all clients); 'other' = CPU "
        "used meanwhile by anything else on the machine, % of one core (each point first "
        f"waits up to {args.quiet_wait:g} s for it to fall under {NOISE_PCT:.0f}%)"
    )
    return machine
