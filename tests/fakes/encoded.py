"""Encoded frames as a publisher sends them, made offline: real VP8 pictures and Opus sound on
a timeline with the holes a lossy link leaves, to feed a :class:`media.Recorder` directly."""

from __future__ import annotations

from collections.abc import Collection, Iterable, Sequence
from fractions import Fraction
from typing import Any

import av
import numpy as np

from media.keyframes import EncodedFrame, is_keyframe

__all__ = ["Hole", "audio_frames", "by_arrival", "video_frames"]

#: ``(start_s, end_s)``: nothing is sent from ``start_s`` up to (not including) ``end_s``.
Hole = tuple[float, float]
_AUDIO_FRAME_S = 0.02


def _in_holes(t: float, holes: Iterable[Hole]) -> bool:
    return any(start <= t < end for start, end in holes)


def video_frames(
    duration_s: float,
    *,
    fps: int = 15,
    keyframes_at: Collection[float] = (0.0,),
    holes: Sequence[Hole] = (),
    width: int = 160,
    height: int = 120,
) -> list[EncodedFrame]:
    """VP8 frames every ``1/fps`` s, keyframes at ``keyframes_at`` (seconds), none sent during
    ``holes``; timestamps (90 kHz) and arrivals follow the frame times."""
    context: Any = av.CodecContext.create("libvpx", "w")
    context.width, context.height, context.pix_fmt = width, height, "yuv420p"
    context.time_base = Fraction(1, 90_000)
    context.options = {"deadline": "realtime", "cpu-used": "8", "lag-in-frames": "0"}
    keys = {round(t * fps) for t in keyframes_at}
    out: list[EncodedFrame] = []
    for n in range(round(duration_s * fps)):
        t = n / fps
        if _in_holes(t, holes):
            continue
        image = np.full((height, width, 3), (n * 7) % 256, dtype=np.uint8)
        picture = av.VideoFrame.from_ndarray(image, format="rgb24")
        picture.pts = round(t * 90_000)
        if n in keys:
            picture.pict_type = av.video.frame.PictureType.I
        for packet in context.encode(picture):
            data = bytes(packet)
            out.append(
                EncodedFrame(
                    "video", "vp8", data, int(packet.pts), 90_000, is_keyframe("vp8", data), t
                )
            )
    return out


def audio_frames(duration_s: float, *, holes: Sequence[Hole] = ()) -> list[EncodedFrame]:
    """Opus frames of a 440 Hz tone every 20 ms (48 kHz timestamps), none during ``holes``."""
    context: Any = av.CodecContext.create("libopus", "w")
    context.sample_rate, context.layout, context.format = 48_000, "stereo", "s16"
    context.time_base = Fraction(1, 48_000)
    samples = np.arange(960 * 50) / 48_000
    tone = (np.sin(2 * np.pi * 440 * samples) * 8000).astype(np.int16)
    packets: list[bytes] = []
    for i in range(50):
        chunk = np.repeat(tone[i * 960 : (i + 1) * 960], 2).reshape(1, -1)
        frame = av.AudioFrame.from_ndarray(chunk, format="s16", layout="stereo")
        frame.sample_rate, frame.pts = 48_000, i * 960
        packets.extend(bytes(p) for p in context.encode(frame))
    out: list[EncodedFrame] = []
    for n in range(round(duration_s / _AUDIO_FRAME_S)):
        t = n * _AUDIO_FRAME_S
        if not _in_holes(t, holes):
            out.append(
                EncodedFrame("audio", "opus", packets[n % len(packets)], n * 960, 48_000, True, t)
            )
    return out


def by_arrival(**tracks: list[EncodedFrame]) -> list[tuple[str, EncodedFrame]]:
    """``(track key, frame)`` of every track in arrival order (as the live path delivers them;
    on a tie the track named first goes first)."""
    order = {key: i for i, key in enumerate(tracks)}
    merged = [(key, frame) for key, frames in tracks.items() for frame in frames]
    return sorted(merged, key=lambda item: (item[1].arrival, order[item[0]]))
