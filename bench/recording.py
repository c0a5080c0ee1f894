"""CPU per recorded stream: encoded-frame copy (media.Recorder) against aiortc's MediaRecorder.

Both get the same synthetic camera, paced in real time, from memory: the copy path the VP8
frames as they arrive from a publisher, MediaRecorder the decoded frames (which the server has
anyway for sampling) that it re-encodes. CPU is the process's user+system time (all threads)
over a fixed duration, per stream.

    .venv/bin/python bench/recording.py [--streams 4] [--seconds 10]
    .venv/bin/python -m bench.recording
"""

from __future__ import annotations

import argparse
import asyncio
import fractions
import resource
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

if not __package__:
    # Run by path (python bench/recording.py): import from the repository root, as
    # ``python -m bench.recording`` does, never from bench/ itself.
    sys.path[0] = str(Path(__file__).resolve().parent.parent)

import av  # noqa: E402
from aiortc import MediaStreamTrack  # noqa: E402
from aiortc.contrib.media import MediaRecorder  # noqa: E402

from media.keyframes import EncodedFrame, is_keyframe  # noqa: E402
from media.recorder import Recorder  # noqa: E402
from tests.fakes.camera import NumberedVideoTrack  # noqa: E402

PROFILES = {"480p15": (640, 480, 15, 1_000_000), "720p30": (1280, 720, 30, 2_500_000)}
#: Distinct frames generated and then looped (a keyframe every 2 s, as the server asks).
LOOP_S = 4


def cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def make_frames(
    width: int, height: int, fps: int, bitrate: int
) -> tuple[list[Any], list[bytes]]:
    """Frames of the synthetic camera (numbered, as in the tests) and their VP8 encoding."""
    encoder: Any = av.CodecContext.create("libvpx", "w")
    encoder.width, encoder.height, encoder.pix_fmt = width, height, "yuv420p"
    encoder.time_base = fractions.Fraction(1, fps)
    encoder.framerate = fps
    encoder.bit_rate = bitrate
    encoder.options = {"deadline": "realtime", "cpu-used": "8", "g": str(2 * fps)}
    decoded: list[Any] = []
    encoded: list[bytes] = []
    camera = NumberedVideoTrack(width, height, fps)
    for i in range(LOOP_S * fps):
        frame = await camera.recv()  # paced in real time: LOOP_S seconds
        frame.pts = i
        decoded.append(frame)
        encoded += [bytes(p) for p in encoder.encode(frame)]
    encoded += [bytes(p) for p in encoder.encode(None)]
    return decoded, encoded[: len(decoded)]


class LoopTrack(MediaStreamTrack):
    kind = "video"

    def __init__(self, frames: list[Any], fps: int) -> None:
        super().__init__()
        self._frames, self._fps, self._i = frames, fps, 0
        self._start: float | None = None

    async def recv(self) -> Any:
        loop = asyncio.get_running_loop()
        self._start = self._start or loop.time()
        delay = self._start + self._i / self._fps - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        frame = self._frames[self._i % len(self._frames)]
        frame.pts = self._i * 90_000 // self._fps
        frame.time_base = fractions.Fraction(1, 90_000)
        self._i += 1
        return frame


async def feed_copy(recorder: Recorder, encoded: list[bytes], fps: int, seconds: float) -> None:
    loop = asyncio.get_running_loop()
    start = loop.time()
    for i in range(int(seconds * fps)):
        delay = start + i / fps - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        data = encoded[i % len(encoded)]
        recorder.write(
            "video",
            EncodedFrame(
                "video",
                "vp8",
                data,
                i * 90_000 // fps,
                90_000,
                is_keyframe("vp8", data),
                loop.time(),
            ),
        )


async def run_copy(
    directory: Path, encoded: list[bytes], fps: int, streams: int, seconds: float
) -> float:
    loop = asyncio.get_running_loop()
    recorders = []
    for n in range(streams):
        recorder = Recorder(
            directory / f"copy-{n}.webm",
            f"s{n}",
            "webm",
            origin=loop.time(),
            requested_at=loop.time(),
        )
        recorder.add_track("video", "video")
        recorder.start()
        recorders.append(recorder)
    before = cpu()
    await asyncio.gather(*(feed_copy(r, encoded, fps, seconds) for r in recorders))
    results = await asyncio.gather(*(r.aclose() for r in recorders))
    used = cpu() - before
    assert all(r.error is None and r.dropped == 0 for r in results), results
    return used


async def run_mediarecorder(
    directory: Path, decoded: list[Any], fps: int, streams: int, seconds: float
) -> float:
    recorders = []
    for n in range(streams):
        recorder = MediaRecorder(str(directory / f"aiortc-{n}.webm"))
        recorder.addTrack(LoopTrack(decoded, fps))
        recorders.append(recorder)
    before = cpu()
    for recorder in recorders:
        await recorder.start()
    await asyncio.sleep(seconds)
    for recorder in recorders:
        await recorder.stop()
    return cpu() - before


async def main(streams: int, seconds: float) -> None:
    print(
        f"{streams} streams x {seconds:.0f} s; CPU seconds per second of recorded stream (%),"
        " over 100% = cannot keep up in real time"
    )
    with tempfile.TemporaryDirectory() as tmp:
        for profile, (width, height, fps, bitrate) in PROFILES.items():
            decoded, encoded = await make_frames(width, height, fps, bitrate)
            kbps = sum(map(len, encoded)) * 8 / LOOP_S / 1000
            copy = await run_copy(Path(tmp), encoded, fps, streams, seconds)
            again = await run_mediarecorder(Path(tmp), decoded, fps, streams, seconds)
            per_copy = 100 * copy / seconds / streams
            per_aiortc = 100 * again / seconds / streams
            per_frame_ms = 1000 * copy / (streams * seconds * fps)
            print(
                f"{profile} ({kbps:.0f} kbit/s): copy {per_copy:.2f}% "
                f"({per_frame_ms:.3f} ms/frame), aiortc MediaRecorder {per_aiortc:.1f}%, "
                f"ratio {per_aiortc / max(per_copy, 1e-9):.0f}x"
            )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--streams", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=10.0)
    args = parser.parse_args()
    start = time.monotonic()
    asyncio.run(main(args.streams, args.seconds))
    print(f"total {time.monotonic() - start:.0f} s")
