"""Synthetic faces that a face detector finds: drawn with numpy and OpenCV only, from a seed.

A face is a shaded skin oval under a hair cap, on a neck, with brows, eyes (white, iris, pupil,
upper lid), a nose line with nostrils and a mouth, darker at the sides and around the eyes, then
softened a little as a camera would. That "shaded" style is what MTCNN (and the other detectors
tried for issue 16) finds every time; flat cartoon faces are often missed.

Pictures are H x W x 3 uint8 **RGB**; boxes are ``(x, y, w, h)`` in picture pixels, the face
oval's bounding box. :func:`write_face_clip` writes a short clip of a face moving across the
picture, as the recorder files them (VP8 + Opus in WebM, or H.264 + Opus in Matroska).
"""

from __future__ import annotations

import fractions
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import av
import cv2
import numpy as np

__all__ = [
    "BACKGROUNDS",
    "FacePicture",
    "face_grid",
    "face_picture",
    "noise_picture",
    "write_face_clip",
]

Background = Literal["gray", "noise", "plain"]
BACKGROUNDS: tuple[Background, ...] = ("gray", "noise", "plain")
Box = tuple[int, int, int, int]
Image = np.ndarray[Any, Any]

_AA = cv2.LINE_AA
_HAIR = (60, 40, 30)  # RGB
_BROW = (45, 35, 30)
_EYE_WHITE = (235, 235, 235)
_IRIS = (90, 70, 60)
_PUPIL = (10, 10, 10)
_LID = (30, 30, 30)
_NOSTRIL = (90, 60, 50)
_LIPS = (160, 70, 70)
_LIP_LINE = (90, 40, 40)


@dataclass(frozen=True, slots=True)
class FacePicture:
    """A picture holding one face, and where the face is."""

    image: Image
    box: Box
    seed: int


def _background(height: int, width: int, kind: Background, rng: np.random.Generator) -> Image:
    if kind == "gray":
        return np.full((height, width, 3), 128, np.uint8)
    if kind == "plain":
        return np.full((height, width, 3), (210, 200, 180), np.uint8)
    # Coarse coloured blocks, smoothed: texture without anything face-like in it.
    blocks = rng.integers(60, 200, (height // 8 + 1, width // 8 + 1, 3)).astype(np.uint8)
    return np.asarray(cv2.resize(blocks, (width, height), interpolation=cv2.INTER_LINEAR))


def _skin(rng: np.random.Generator) -> tuple[int, int, int]:
    low, high = np.array([190, 150, 120]), np.array([235, 185, 160])
    red, green, blue = (int(v) for v in rng.integers(low, high))
    return red, green, blue


def _scaled(colour: tuple[int, int, int], factor: float) -> tuple[int, int, int]:
    red, green, blue = (int(c * factor) for c in colour)
    return red, green, blue


def draw_face(
    canvas: Image,
    rng: np.random.Generator,
    *,
    center: tuple[int, int],
    face_width: int,
) -> Box:
    """Draw one face on ``canvas`` (RGB, in place) centred at ``center``; returns its box."""
    height, width = canvas.shape[:2]
    cx, cy = center
    fw = face_width
    fh = int(fw * 1.32)
    skin = _skin(rng)
    eye_dx, eye_y = int(fw * 0.22), int(cy - fh * 0.06)
    eye_w, eye_h = int(fw * 0.11), int(fw * 0.055)
    mouth_y, mouth_w = int(cy + fh * 0.25), int(fw * 0.20)

    # Hair cap and neck behind the face.
    cv2.ellipse(
        canvas,
        (cx, cy - int(fh * 0.08)),
        (int(fw * 0.56), int(fh * 0.50)),
        0,
        180,
        360,
        _HAIR,
        -1,
        _AA,
    )
    neck_top, neck_bottom = cy + int(fh * 0.3), min(height - 1, cy + fh)
    cv2.rectangle(
        canvas,
        (cx - int(fw * 0.2), neck_top),
        (cx + int(fw * 0.2), neck_bottom),
        _scaled(skin, 0.85),
        -1,
    )
    cv2.ellipse(canvas, (cx, cy), (fw // 2, fh // 2), 0, 0, 360, skin, -1, _AA)

    # Light from the front: darker towards the sides of the face and in the eye sockets
    # (worked out over the face's box only).
    x0, x1 = max(0, cx - fw // 2 - 1), min(width, cx + fw // 2 + 2)
    y0, y1 = max(0, cy - fh // 2 - 1), min(height, cy + fh // 2 + 2)
    yy, xx = np.mgrid[y0:y1, x0:x1].astype(np.float32)
    inside = ((xx - cx) / (fw / 2)) ** 2 + ((yy - cy) / (fh / 2)) ** 2 <= 1.0
    shade = 1.0 - 0.35 * np.clip(np.abs(xx - cx) / (fw / 2), 0.0, 1.0) ** 2
    sockets = np.zeros((height, width), np.float32)
    for side in (-1, 1):
        cv2.ellipse(
            sockets,
            (cx + side * eye_dx, eye_y),
            (int(eye_w * 1.6), int(eye_h * 2.2)),
            0,
            0,
            360,
            1.0,
            -1,
            _AA,
        )
    sockets = cv2.GaussianBlur(sockets, (0, 0), fw * 0.04)[y0:y1, x0:x1]
    shade *= 1.0 - 0.35 * sockets
    face = canvas[y0:y1, x0:x1]
    lit = face.astype(np.float32)
    lit[inside] *= shade[inside][:, None]
    face[:] = np.clip(lit, 0, 255).astype(np.uint8)

    for side in (-1, 1):
        start = (cx + side * int(eye_dx - eye_w * 1.1), eye_y - int(eye_h * 2.6))
        end = (cx + side * int(eye_dx + eye_w * 1.1), eye_y - int(eye_h * 2.3))
        cv2.line(canvas, start, end, _BROW, max(2, int(fw * 0.035)), _AA)
    for side in (-1, 1):
        eye = (cx + side * eye_dx, eye_y)
        cv2.ellipse(canvas, eye, (eye_w, eye_h), 0, 0, 360, _EYE_WHITE, -1, _AA)
        cv2.circle(canvas, eye, int(eye_h * 0.95), _IRIS, -1, _AA)
        cv2.circle(canvas, eye, int(eye_h * 0.45), _PUPIL, -1, _AA)
        cv2.ellipse(canvas, eye, (eye_w, eye_h), 0, 180, 360, _LID, max(1, fw // 60), _AA)
    nose_y = int(cy + fh * 0.10)
    cv2.line(
        canvas,
        (cx, eye_y + eye_h),
        (cx - int(fw * 0.04), nose_y),
        _scaled(skin, 0.75),
        max(1, fw // 50),
        _AA,
    )
    for side in (-1, 1):
        nostril = (cx + side * int(fw * 0.05), nose_y + int(fw * 0.02))
        cv2.circle(canvas, nostril, max(1, int(fw * 0.02)), _NOSTRIL, -1, _AA)
    cv2.ellipse(canvas, (cx, mouth_y), (mouth_w, int(fw * 0.045)), 0, 0, 360, _LIPS, -1, _AA)
    cv2.line(
        canvas, (cx - mouth_w, mouth_y), (cx + mouth_w, mouth_y), _LIP_LINE, max(1, fw // 60), _AA
    )
    return cx - fw // 2, cy - fh // 2, fw, fh


def _soften(image: Image, face_width: int) -> Image:
    """The slight blur of a real lens (and what keeps the drawn edges from looking synthetic)."""
    return np.asarray(cv2.GaussianBlur(image, (0, 0), max(0.6, face_width / 150)))


def face_picture(
    seed: int,
    *,
    size: tuple[int, int] = (320, 320),
    face_width: int = 120,
    background: Background = "gray",
    center: tuple[int, int] | None = None,
) -> FacePicture:
    """One face of ``face_width`` pixels on a ``size`` (height, width) picture."""
    rng = np.random.default_rng(seed)
    height, width = size
    canvas = _background(height, width, background, rng)
    where = center if center is not None else (width // 2, height // 2)
    box = draw_face(canvas, rng, center=where, face_width=face_width)
    return FacePicture(_soften(canvas, face_width), box, seed)


def face_grid(seeds: int = 5) -> Iterator[FacePicture]:
    """The seeded test grid: face widths 60, 90, 130 and 180 pixels on a 320 x 320 picture, each
    on every background, for ``seeds`` seeds (60 pictures with the default 5)."""
    for face_width in (60, 90, 130, 180):
        for background in BACKGROUNDS:
            for seed in range(seeds):
                yield face_picture(
                    1000 * face_width + seed, face_width=face_width, background=background
                )


def noise_picture(seed: int, size: tuple[int, int] = (480, 640)) -> Image:
    """Blocky colour noise (nothing in it is a face)."""
    rng = np.random.default_rng(seed)
    height, width = size
    blocks = rng.integers(0, 255, (height // 16, width // 16, 3), dtype=np.uint8)
    return np.asarray(cv2.resize(blocks, (width, height), interpolation=cv2.INTER_NEAREST))


def write_face_clip(
    path: Path,
    *,
    seconds: float = 2.0,
    fps: int = 15,
    size: tuple[int, int] = (480, 640),
    face_width: int = 130,
    codec: Literal["vp8", "h264"] = "vp8",
    audio: bool = True,
    seed: int = 7,
    face_from: float = 0.0,
) -> list[Box | None]:
    """Write a clip of a face moving left to right across a textured picture, with a tone
    (Opus) beside it; returns the true box of every frame (None where no face is shown: the
    frames before ``face_from`` seconds). VP8 goes into WebM, H.264 into Matroska, as the
    recorder files them."""
    height, width = size
    rng = np.random.default_rng(seed)
    backdrop = _background(height, width, "noise", rng)
    count = max(1, round(seconds * fps))
    boxes: list[Box | None] = []
    container = "webm" if codec == "vp8" else "matroska"
    with av.open(str(path), "w", format=container) as output:
        video = output.add_stream("libvpx" if codec == "vp8" else "libx264", rate=fps)
        video.width, video.height, video.pix_fmt = width, height, "yuv420p"
        video.bit_rate = 1_500_000
        # Fast settings: the clip is test input, its quality beside the point.
        if codec == "vp8":
            video.options = {"deadline": "realtime", "cpu-used": "8"}
        else:
            video.options = {"preset": "ultrafast"}
        tone = None
        if audio:
            tone = output.add_stream("libopus", rate=48_000)
            tone.layout = "mono"
        left, right = face_width, width - face_width
        for index in range(count):
            canvas = backdrop.copy()
            t = index / fps
            if t >= face_from:
                progress = index / max(1, count - 1)
                cx = int(left + (right - left) * progress)
                # Each frame draws the same person: one seed for the face's colours.
                box = draw_face(
                    canvas,
                    np.random.default_rng(seed),
                    center=(cx, height // 2),
                    face_width=face_width,
                )
                boxes.append(box)
            else:
                boxes.append(None)
            frame = av.VideoFrame.from_ndarray(_soften(canvas, face_width), format="rgb24")
            frame.pts = index
            frame.time_base = fractions.Fraction(1, fps)
            output.mux(video.encode(frame))
        output.mux(video.encode(None))
        if tone is not None:
            samples = int(48_000 * count / fps)
            wave = 0.2 * np.sin(2 * np.pi * 440 * np.arange(samples) / 48_000)
            pcm = (wave * 32767).astype(np.int16)
            for start in range(0, samples, 960):
                chunk = pcm[start : start + 960]
                audio_frame = av.AudioFrame.from_ndarray(
                    chunk[None, :], format="s16", layout="mono"
                )
                audio_frame.sample_rate = 48_000
                audio_frame.pts = start
                audio_frame.time_base = fractions.Fraction(1, 48_000)
                output.mux(tone.encode(audio_frame))
            output.mux(tone.encode(None))
    return boxes
