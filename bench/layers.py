"""Temporal layers: what decoding for grading costs when only the base layer is decoded.

A Chromium customer (the real customer page, Chromium's fake camera) calls a Chromium agent
through the service running in this process with grading on. The page asks for VP8 L1T3
(``scalabilityMode``); the server reads each frame's layer and, while only the grading sampler
wants decoded frames, has the base layer alone decoded. The bench keeps ``--seconds`` of the
customer's encoded frames as the server received them (from a keyframe on) and counts what the
server decoded for grading in that time. Then, on the same frames and the same cores, it times
libvpx (PyAV) decoding every frame (the baseline: what grading decoded before) against decoding
the base layer alone, ``--repeats`` times each, and reports the median CPU time as a share of
one core per second of video.

    .venv/bin/python bench/layers.py [--seconds 20] [--repeats 5] [--json PATH]
    .venv/bin/python bench/layers.py --quick        # 6 s of video, 2 repeats
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

if not __package__:
    sys.path[0] = str(Path(__file__).resolve().parent.parent)

import av  # noqa: E402
from playwright.async_api import async_playwright  # noqa: E402

from media.keyframes import EncodedFrame, vp8_size  # noqa: E402
from media.source import TrackSource  # noqa: E402
from server.app import running_service  # noqa: E402
from server.settings import Settings  # noqa: E402
from signaling import Role, RoomId  # noqa: E402
from tests.e2e._browser import (  # noqa: E402
    CHROMIUM,
    CHROMIUM_ARGS,
    DESK,
    PHONE,
    create_case,
    log_in,
    new_page,
    start_call,
)

PASSWORD = "bench-pass-123"


async def record(seconds: float) -> dict[str, Any]:
    """The customer's encoded video as the server received it, and what the server decoded."""
    kept: list[EncodedFrame] = []
    with tempfile.TemporaryDirectory(prefix="bench-layers-") as data_dir:
        settings = Settings(data_dir=Path(data_dir), port=0, shutdown_timeout_s=2.0, grading=True)
        async with running_service(settings) as running:
            state = running.state
            await state.accounts.create_user("agent", PASSWORD, name="Bench Agent", role=Role.AGENT)
            token, _ = await state.accounts.create_api_token("bench", role=Role.ADMIN)
            base = running.base_url.rstrip("/")
            created = await create_case(base, token)
            room = str(RoomId.case(created["case"]["id"]))
            errors: list[str] = []
            async with async_playwright() as pw:
                browser = await pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
                try:
                    _, agent = await new_page(browser, errors, **DESK)
                    _, customer = await new_page(browser, errors, **PHONE)
                    await log_in(agent, base, "agent", PASSWORD)
                    case_id = created["case"]["id"]
                    await start_call(agent, customer, str(created["join_url"]), case_id)
                    source: TrackSource | None = None
                    while source is None:
                        await asyncio.sleep(0.1)
                        source = next(
                            (s for s in state.media.sources(room) if s.kind == "video"), None
                        )
                    await asyncio.sleep(3.0)  # past the start: the encoder at its pace
                    recording = True
                    first = asyncio.Event()

                    def keep(frame: EncodedFrame) -> None:
                        if recording and (kept or frame.keyframe):
                            kept.append(frame)
                            first.set()

                    source.add_encoded_tap(keep)
                    source.request_keyframe()
                    await asyncio.wait_for(first.wait(), 10.0)
                    frames0, decoded0 = source.frames, source.decoded_frames
                    await asyncio.sleep(seconds)
                    recording = False
                    received = source.frames - frames0
                    decoded = source.decoded_frames - decoded0
                finally:
                    await browser.close()
            if errors:
                raise RuntimeError(f"page errors: {errors}")
    span = (kept[-1].timestamp - kept[0].timestamp) / kept[0].clock_rate
    return {"frames": kept, "span_s": span, "received": received, "decoded": decoded}


def decode_cpu(frames: list[EncodedFrame]) -> float:
    """CPU seconds libvpx takes to decode ``frames`` (each decoded picture touched once)."""
    decoder = av.CodecContext.create("vp8", "r")
    decoder.thread_count = 1
    start = time.process_time()
    pictures = 0
    for frame in frames:
        for picture in decoder.decode(av.Packet(frame.data)):
            pictures += picture.width > 0
    used = time.process_time() - start
    if pictures != len(frames):
        raise RuntimeError(f"{len(frames)} frames gave {pictures} pictures")
    return used


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    seconds, repeats = (6.0, 2) if args.quick else (args.seconds, args.repeats)

    got = asyncio.run(record(seconds))
    frames: list[EncodedFrame] = got["frames"]
    span = got["span_s"]
    size = next((vp8_size(f.data) for f in frames if f.keyframe), None)
    layers = sorted({f.temporal_id or 0 for f in frames})
    base = [f for f in frames if not f.temporal_id]
    total_bytes = sum(len(f.data) for f in frames)
    per_layer = {
        layer: (
            sum(1 for f in frames if (f.temporal_id or 0) == layer),
            sum(len(f.data) for f in frames if (f.temporal_id or 0) == layer),
        )
        for layer in layers
    }
    every = statistics.median(decode_cpu(frames) for _ in range(repeats))
    only_base = statistics.median(decode_cpu(base) for _ in range(repeats))
    every_pct, base_pct = every / span * 100, only_base / span * 100

    print(f"Chromium's stream: {size[0]}x{size[1]}" if size else "Chromium's stream:", end=" ")
    print(f"{len(frames) / span:.1f} fps, {total_bytes * 8 / span / 1000:.0f} kbit/s, "
          f"{len(frames)} frames over {span:.1f} s, temporal layers {layers}")  # fmt: skip
    for layer, (count, size_bytes) in per_layer.items():
        print(f"  layer {layer}: {count / len(frames):5.1%} of the frames, "
              f"{size_bytes / total_bytes:5.1%} of the bytes")  # fmt: skip
    print(f"the server, grading this call: decoded {got['decoded']} of {got['received']} "
          f"frames received ({got['decoded'] / max(1, got['received']):.0%})")  # fmt: skip
    print(f"{'decoding for grading':38} {'CPU, share of one core':>24}")
    print(f"{'every frame (baseline)':38} {every_pct:23.2f}%")
    print(f"{'base layer only (this server)':38} {base_pct:23.2f}%")
    print(f"ratio: {every / only_base:.1f}x less CPU" if only_base else "ratio: n/a")
    if args.json:
        out = {
            "size": size, "fps": len(frames) / span, "span_s": span, "layers": layers,
            "server_decoded": got["decoded"], "server_received": got["received"],
            "every_frame_pct": every_pct, "base_layer_pct": base_pct,
        }  # fmt: skip
        Path(args.json).write_text(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
