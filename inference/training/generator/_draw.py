"""Small drawing helpers shared by the scene parts, the product and the composition.

Each helper takes its random draws from the caller's generator in a fixed order; reordering
them changes every picture of a seed (tests/inference/test_generator_stable.py notices).
"""

from __future__ import annotations

import math
from typing import Any

import cv2
import numpy as np

Image = np.ndarray[Any, Any]


def _u(rng: np.random.Generator, lo: float, hi: float) -> float:
    return float(rng.uniform(lo, hi))


def _smooth_noise(rng: np.random.Generator, h: int, w: int, cells: int) -> Image:
    """Low-frequency noise in [-1, 1] (a coarse random grid upsampled)."""
    ch, cw = max(2, h * cells // max(h, w)), max(2, w * cells // max(h, w))
    grid = rng.uniform(-1, 1, (ch, cw)).astype(np.float32)
    out: Image = cv2.resize(grid, (w, h), interpolation=cv2.INTER_CUBIC)
    return out


def _blob(rng: np.random.Generator, cx: float, cy: float, r: float, n: int = 14) -> Image:
    """An irregular closed polygon around (cx, cy) of mean radius r."""
    ang = np.sort(rng.uniform(0, 2 * np.pi, n))
    rad = r * (1 + 0.35 * rng.uniform(-1, 1, n))
    rad = (rad + np.roll(rad, 1) + np.roll(rad, -1)) / 3
    pts = np.stack([cx + rad * np.cos(ang), cy + rad * np.sin(ang) * _u(rng, 0.6, 1.0)], 1)
    return pts.astype(np.int32)


def _random_colour(rng: np.random.Generator) -> np.ndarray[Any, Any]:
    hsv = np.array(
        [[[rng.integers(0, 180), rng.integers(0, 230), rng.integers(40, 245)]]], dtype=np.uint8
    )
    rgb: np.ndarray[Any, Any] = cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)[0, 0].astype(np.float32)
    return rgb


def _rounded_rect(w: float, h: float, r: float, x0: float = 0, y0: float = 0) -> Image:
    r = min(r, w / 2, h / 2)
    pts = []
    for cx, cy, a0 in (
        (x0 + w - r, y0 + r, -90),
        (x0 + w - r, y0 + h - r, 0),
        (x0 + r, y0 + h - r, 90),
        (x0 + r, y0 + r, 180),
    ):
        for a in np.linspace(a0, a0 + 90, 6):
            pts.append((cx + r * math.cos(math.radians(a)), cy + r * math.sin(math.radians(a))))
    return np.array(pts, dtype=np.int32)


def _inner_points(rng: np.random.Generator, mask: Image, n: int, margin: float) -> Image:
    """n random points inside ``mask`` at least ``margin`` pixels from its edge."""
    inner = cv2.erode(mask, np.ones((3, 3), np.uint8), iterations=max(1, int(margin)))
    ys, xs = np.nonzero(inner)
    if len(xs) == 0:
        ys, xs = np.nonzero(mask)
    idx = rng.integers(0, len(xs), n)
    return np.stack([xs[idx], ys[idx]], 1).astype(np.float32)
