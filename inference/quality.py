"""Frame quality gate (before the model) and the sharpest frames kept as snapshot candidates.

Measured on a grey copy downscaled to :data:`ANALYSIS_WIDTH` pixels wide, so the figures do not
depend on the camera resolution and the gate costs ~1 ms per frame:

- sharpness: variance of the Laplacian (low = blurred: motion blur or out of focus);
- brightness: mean grey level 0-255; contrast: its standard deviation.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np

__all__ = [
    "ANALYSIS_WIDTH",
    "BLUR_THRESHOLD",
    "DARK_THRESHOLD",
    "OVEREXPOSED_THRESHOLD",
    "BestFrames",
    "FrameQuality",
    "SnapshotCandidate",
    "assess_quality",
]

logger = logging.getLogger(__name__)

#: Width of the grey copy the measures are taken on.
ANALYSIS_WIDTH = 320
#: Laplacian variance below this: blurry. Sharp phone video of an object is typically 150-2000
#: at this width; motion blur and focus hunting fall under ~50.
BLUR_THRESHOLD = 60.0
#: Mean grey level below this: too dark to see surface damage.
DARK_THRESHOLD = 40.0
#: Mean grey level above this: washed out (facing a window or a lamp).
OVEREXPOSED_THRESHOLD = 225.0
#: JPEG quality of snapshot candidates.
JPEG_QUALITY = 90


@dataclass(frozen=True, slots=True)
class FrameQuality:
    """Quality figures of one frame and whether it is worth grading."""

    sharpness: float
    brightness: float
    contrast: float
    usable: bool
    #: Why not usable: "too_dark", "overexposed" or "blurry"; None when usable.
    reason: str | None = None

    @property
    def weight(self) -> float:
        """How much this frame should count when aggregating predictions: 0 for unusable
        frames, then rising with sharpness to 1 at twice the blur threshold."""
        if not self.usable:
            return 0.0
        return float(min(1.0, max(0.25, self.sharpness / (2.0 * BLUR_THRESHOLD))))

    def as_dict(self) -> dict[str, Any]:
        return {
            "sharpness": round(self.sharpness, 1),
            "brightness": round(self.brightness, 1),
            "contrast": round(self.contrast, 1),
            "usable": self.usable,
            "reason": self.reason,
        }


def _grey(image: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
    h, w = image.shape[:2]
    if w > ANALYSIS_WIDTH:
        height = max(1, round(h * ANALYSIS_WIDTH / w))
        image = cv2.resize(image, (ANALYSIS_WIDTH, height), interpolation=cv2.INTER_AREA)
    grey: np.ndarray[Any, Any] = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)
    return grey


def assess_quality(image: np.ndarray[Any, Any]) -> FrameQuality:
    """Measure an H x W x 3 uint8 RGB frame; exposure is judged before blur (a dark frame also
    has a low Laplacian variance, and "too dark" is the more useful thing to tell the user)."""
    grey = _grey(image)
    mean, std = cv2.meanStdDev(grey)
    brightness, contrast = float(mean[0][0]), float(std[0][0])
    sharpness = float(cv2.Laplacian(grey, cv2.CV_64F).var())
    reason: str | None = None
    if brightness < DARK_THRESHOLD:
        reason = "too_dark"
    elif brightness > OVEREXPOSED_THRESHOLD:
        reason = "overexposed"
    elif sharpness < BLUR_THRESHOLD:
        reason = "blurry"
    return FrameQuality(sharpness, brightness, contrast, reason is None, reason)


@dataclass(frozen=True, slots=True)
class SnapshotCandidate:
    """A sharp frame kept for evidence: JPEG bytes plus when and how sharp."""

    ts: float
    sharpness: float
    jpeg: bytes
    width: int
    height: int


def encode_jpeg(image: np.ndarray[Any, Any], quality: int = JPEG_QUALITY) -> bytes:
    """RGB uint8 -> JPEG bytes (OpenCV encodes BGR, hence the conversion)."""
    ok, data = cv2.imencode(
        ".jpg", cv2.cvtColor(image, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, quality]
    )
    if not ok:
        raise ValueError("JPEG encoding failed")
    return bytes(data.tobytes())


class BestFrames:
    """The ``k`` sharpest usable frames of a session, at least ``min_gap_s`` apart.

    A new frame within ``min_gap_s`` of kept ones replaces them only if it is sharper than all
    of them, so the candidates show different moments (different sides of the item) rather than
    ten copies of the one still second. Not thread-safe: one analyzer feeds one instance.
    """

    def __init__(self, k: int = 4, min_gap_s: float = 1.0, jpeg_quality: int = JPEG_QUALITY):
        if k < 1:
            raise ValueError("k must be >= 1")
        self.k = k
        self.min_gap_s = min_gap_s
        self.jpeg_quality = jpeg_quality
        self._kept: list[SnapshotCandidate] = []

    def offer(self, image: np.ndarray[Any, Any], ts: float, quality: FrameQuality) -> bool:
        """Consider one frame; returns True when it was kept (and JPEG-encoded)."""
        if not quality.usable:
            return False
        near = [c for c in self._kept if abs(c.ts - ts) < self.min_gap_s]
        if near:
            if quality.sharpness <= max(c.sharpness for c in near):
                return False
            remaining = [c for c in self._kept if c not in near]
        elif len(self._kept) >= self.k:
            weakest = min(self._kept, key=lambda c: c.sharpness)
            if quality.sharpness <= weakest.sharpness:
                return False
            remaining = [c for c in self._kept if c is not weakest]
        else:
            remaining = list(self._kept)
        h, w = image.shape[:2]
        candidate = SnapshotCandidate(
            ts, quality.sharpness, encode_jpeg(image, self.jpeg_quality), w, h
        )
        self._kept = sorted([*remaining, candidate], key=lambda c: c.ts)
        return True

    def candidates(self) -> list[SnapshotCandidate]:
        """Kept frames in time order."""
        return list(self._kept)

    def best(self) -> SnapshotCandidate | None:
        """The sharpest kept frame."""
        return max(self._kept, key=lambda c: c.sharpness, default=None)
