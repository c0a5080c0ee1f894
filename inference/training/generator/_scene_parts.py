"""Everything in the picture around the product: a table or cloth background, clutter
(papers, pens), hands, accessories (cables, chargers, earbuds) and a cardboard box with its
damage (tears, a crushed corner, wet stains).

None of it lowers the grade; it is drawn so the model learns to look past it. Box damage is
the one part with a label of its own (``torn_packaging``).
"""

from __future__ import annotations

import math

import cv2
import numpy as np

from inference.training.generator._draw import (
    Image,
    _blob,
    _random_colour,
    _smooth_noise,
    _u,
)


def _background(rng: np.random.Generator, h: int, w: int) -> Image:
    base = _random_colour(rng) * _u(rng, 0.5, 1.0)
    kind = rng.integers(3)
    img = np.empty((h, w, 3), np.float32)
    img[:] = base
    if kind == 0:  # wood-like table: warped grain stripes
        warp = _smooth_noise(rng, h, w, 4) * _u(rng, 5, 25)
        yy: Image = np.arange(h, dtype=np.float32)[:, None] + warp
        grain = np.sin(yy * _u(rng, 0.15, 0.6)) * _u(rng, 6, 18)
        img += grain[..., None]
    elif kind == 1:  # tablecloth: stripes or checks
        p = _u(rng, 8, 30) * max(h, w) / 224
        xx = np.arange(w, dtype=np.float32)[None, :]
        yy = np.arange(h, dtype=np.float32)[:, None]
        pat = (np.sin(xx * np.pi / p) > 0) ^ (np.sin(yy * np.pi / p) > 0) * (rng.random() < 0.5)
        img += (pat.astype(np.float32) * _u(rng, 10, 40))[..., None]
    img += (_smooth_noise(rng, h, w, 3) * _u(rng, 5, 30))[..., None]
    # a soft light falloff across the table
    gx = np.linspace(-1, 1, w, dtype=np.float32)[None, :] * _u(rng, -25, 25)
    gy = np.linspace(-1, 1, h, dtype=np.float32)[:, None] * _u(rng, -25, 25)
    img += (gx + gy)[..., None]
    return img


def _clutter(rng: np.random.Generator, img: Image, scale: float) -> None:
    h, w = img.shape[:2]
    for _ in range(int(rng.integers(0, 3))):
        if rng.random() < 0.5:  # a sheet of paper with text lines
            cx, cy = _u(rng, 0, w), _u(rng, 0, h)
            pw, ph = _u(rng, 0.2, 0.4) * w, _u(rng, 0.25, 0.5) * h
            box = cv2.boxPoints(((cx, cy), (pw, ph), _u(rng, -40, 40))).astype(np.int32)
            cv2.fillPoly(img, [box], (_u(rng, 200, 250),) * 3, cv2.LINE_AA)
            for k in range(int(rng.integers(3, 8))):
                y = int(cy - ph / 3 + k * ph / 10)
                cv2.line(img, (int(cx - pw / 3), y), (int(cx + pw / 4), y), (90, 90, 90), 1)
        else:  # a pen
            p0 = (int(_u(rng, 0, w)), int(_u(rng, 0, h)))
            a = _u(rng, 0, 2 * np.pi)
            p1 = (int(p0[0] + math.cos(a) * 60 * scale), int(p0[1] + math.sin(a) * 60 * scale))
            colour = tuple(float(c) for c in _random_colour(rng))
            cv2.line(img, p0, p1, colour, max(2, int(5 * scale)), cv2.LINE_AA)


def _hand(
    rng: np.random.Generator,
    img: Image,
    target: tuple[float, float],
    scale: float,
    inward: tuple[float, float] | None = None,
) -> None:
    """A skin-coloured palm with fingers reaching towards ``target``.

    The hand comes from a frame edge, or along ``inward`` (a direction) when given.
    """
    h, w = img.shape[:2]
    side = rng.integers(4)
    ex, ey = (
        [(0, _u(rng, 0.2, 0.8) * h), (w, _u(rng, 0.2, 0.8) * h)][side % 2]
        if side < 2
        else [
            (_u(rng, 0.2, 0.8) * w, 0),
            (_u(rng, 0.2, 0.8) * w, h),
        ][side % 2]
    )
    red = _u(rng, 90, 240)
    green = red * _u(rng, 0.62, 0.8)
    tone = np.array([red, green, green * _u(rng, 0.75, 0.9)], np.float32)
    d = np.array([target[0] - ex, target[1] - ey], np.float32)
    if inward is not None:
        d = np.array(inward, np.float32)
    d /= float(np.linalg.norm(d)) + 1e-6
    r = 28 * scale
    # the fingertips end at ``target``; the palm sits behind them, towards the frame edge
    palm = np.array(target, np.float32) - d * r * 2.3
    angle = math.degrees(math.atan2(d[1], d[0]))
    axes = (int(r * 1.3), int(r))
    cv2.ellipse(img, (int(palm[0]), int(palm[1])), axes, angle, 0, 360, tone.tolist(), -1)
    arm = palm - d * r * 3
    cv2.line(img, (int(palm[0]), int(palm[1])), (int(arm[0]), int(arm[1])), tone.tolist(), int(r))
    perp = np.array([-d[1], d[0]])
    for k in range(4):
        base = palm + perp * (k - 1.5) * r * 0.45 + d * r * 0.8
        tip = base + d * r * _u(rng, 1.0, 1.5) * (1.0 if k in (1, 2) else 0.8)
        cv2.line(
            img,
            (int(base[0]), int(base[1])),
            (int(tip[0]), int(tip[1])),
            (tone * 0.95).tolist(),
            max(2, int(r * 0.38)),
            cv2.LINE_AA,
        )


def _accessories(rng: np.random.Generator, img: Image, complete: bool, scale: float) -> None:
    h, w = img.shape[:2]
    n = int(rng.integers(1, 4)) if complete else int(rng.integers(0, 2))
    for _ in range(n):
        kind = rng.integers(3)
        colour = [(30, 30, 30), (235, 235, 235), (120, 120, 125)][int(rng.integers(3))]
        if kind == 0:  # a cable: a bezier curve with a plug
            pts = rng.uniform(0, 1, (4, 2)) * (w, h)
            t = np.linspace(0, 1, 30)[:, None]
            curve = (
                (1 - t) ** 3 * pts[0]
                + 3 * (1 - t) ** 2 * t * pts[1]
                + 3 * (1 - t) * t**2 * pts[2]
                + t**3 * pts[3]
            )
            thick = max(2, int(_u(rng, 3, 6) * scale))
            cv2.polylines(img, [curve.astype(np.int32)], False, colour, thick, cv2.LINE_AA)
            end = curve[-1]
            cv2.rectangle(
                img,
                (int(end[0] - 6 * scale), int(end[1] - 4 * scale)),
                (int(end[0] + 6 * scale), int(end[1] + 4 * scale)),
                colour,
                -1,
            )
        elif kind == 1:  # charger brick
            c = (_u(rng, 0.05, 0.95) * w, _u(rng, 0.05, 0.95) * h)
            s = _u(rng, 18, 30) * scale
            box = cv2.boxPoints((c, (s, s * 1.3), _u(rng, 0, 90))).astype(np.int32)
            cv2.fillPoly(img, [box], colour, cv2.LINE_AA)
            cv2.polylines(img, [box], True, (60, 60, 60), 1, cv2.LINE_AA)
        else:  # earbuds / small parts
            for _ in range(2):
                c = (int(_u(rng, 0.05, 0.95) * w), int(_u(rng, 0.05, 0.95) * h))
                rr = max(2, int(_u(rng, 5, 9) * scale))
                cv2.circle(img, c, rr, colour, -1, cv2.LINE_AA)


def _box(
    rng: np.random.Generator, bw: int, bh: int, torn: bool, avoid: tuple[float, float]
) -> tuple[Image, Image]:
    """A cardboard box drawn upright in its own canvas; returns (rgb float, mask uint8)."""
    img = np.zeros((bh, bw, 3), np.float32)
    mask = np.zeros((bh, bw), np.uint8)
    d, t = int(bw * _u(rng, 0.08, 0.18)), int(bh * _u(rng, 0.15, 0.3))
    front = np.array([(0, t), (bw - d, t), (bw - d, bh - 1), (0, bh - 1)], np.int32)
    top = np.array([(0, t), (d, 0), (bw - 1, 0), (bw - d, t)], np.int32)
    side = np.array([(bw - d, t), (bw - 1, 0), (bw - 1, bh - t), (bw - d, bh - 1)], np.int32)
    card = np.array([_u(rng, 150, 205), _u(rng, 110, 150), _u(rng, 65, 100)], np.float32)
    if rng.random() < 0.15:  # white mailer box
        card = np.array([225, 222, 215], np.float32) * _u(rng, 0.85, 1.0)
    for poly, shade in ((front, 1.0), (top, _u(rng, 1.05, 1.2)), (side, _u(rng, 0.7, 0.85))):
        cv2.fillPoly(img, [poly], (card * shade).tolist())
        cv2.fillPoly(mask, [poly], 255)
    # corrugation and fibre noise
    xx = np.arange(bw, dtype=np.float32)[None, :]
    img += (np.sin(xx * _u(rng, 0.8, 1.6)) * 3 + _smooth_noise(rng, bh, bw, 12) * 6)[..., None]
    # tape across the top and down the front
    tape = np.array([_u(rng, 170, 215), _u(rng, 140, 180), _u(rng, 90, 130)], np.float32)
    cx = (bw - d) // 2
    tw = max(3, int(bw * _u(rng, 0.06, 0.12)))
    cv2.rectangle(
        img, (cx - tw // 2, t), (cx + tw // 2, int(bh * _u(rng, 0.3, 0.6))), tape.tolist(), -1
    )
    cv2.line(img, (cx + d // 2, 0), (cx, t), tape.tolist(), tw)
    # shipping label with a barcode
    if rng.random() < 0.7:
        lx, ly = int(bw * _u(rng, 0.05, 0.25)), int(t + (bh - t) * _u(rng, 0.45, 0.6))
        lw, lh = int(bw * 0.3), int((bh - t) * 0.3)
        cv2.rectangle(img, (lx, ly), (lx + lw, ly + lh), (240, 240, 235), -1)
        for k in range(int(lw * 0.8)):
            if rng.random() < 0.5:
                x = lx + 2 + k
                cv2.line(img, (x, ly + lh // 2), (x, ly + lh - 2), (20, 20, 20), 1)
    if torn:
        _box_damage(rng, img, mask, front, avoid, bw, bh, d, t)
    return img, mask


def _box_damage(
    rng: np.random.Generator,
    img: Image,
    mask: Image,
    front: Image,
    avoid: tuple[float, float],
    bw: int,
    bh: int,
    d: int,
    t: int,
) -> None:
    """Tears, a crushed corner or wet stains, placed away from the product (``avoid``)."""
    cand = np.stack([rng.uniform(0.12, 0.88, 16) * (bw - d), rng.uniform(t + 8, bh - 8, 16)], 1)
    dist = np.hypot(cand[:, 0] - avoid[0], cand[:, 1] - avoid[1])
    order = np.argsort(-dist)
    size = min(bw, bh)
    kinds = rng.permutation(3)[: int(rng.integers(1, 3))]
    for i, kind in enumerate(kinds):
        cx, cy = cand[order[i]]
        if kind == 0:  # tear: dark inner hole with ragged light paper fibres
            pts = _blob(rng, cx, cy, size * _u(rng, 0.08, 0.16), n=18)
            pts += rng.integers(-2, 3, pts.shape).astype(np.int32)
            cv2.fillPoly(img, [pts], (_u(rng, 35, 70),) * 3)
            cv2.polylines(img, [pts], True, (235, 225, 205), max(1, size // 80), cv2.LINE_AA)
            flap = pts[: len(pts) // 2] + np.array([int(size * 0.05), int(size * 0.03)], np.int32)
            cv2.fillPoly(img, [flap], (img[int(cy), int(cx)] * 0 + (185, 150, 105)).tolist())
        elif kind == 1:  # crushed corner: a dark wedge with crease lines
            corner = np.array([(bw - d) * rng.choice([0.0, 1.0]), bh - 1.0])
            r = size * _u(rng, 0.2, 0.35)
            wedge = np.array(
                [corner, corner + (r * (1 if corner[0] == 0 else -1), 0), corner + (0, -r)],
                np.int32,
            )
            overlay = img.copy()
            cv2.fillPoly(overlay, [wedge], (40, 30, 20))
            img[:] = cv2.addWeighted(img, 0.45, overlay, 0.55, 0)
            for _ in range(4):
                p0 = corner + rng.uniform(0, r * 0.9, 2) * ((1 if corner[0] == 0 else -1), -1)
                p1 = p0 + rng.uniform(-r / 2, r / 2, 2)
                cv2.line(img, tuple(int(v) for v in p0), tuple(int(v) for v in p1), (30, 25, 20), 2)
        else:  # wet stain: darker patch with a tide ring
            pts = _blob(rng, cx, cy, size * _u(rng, 0.12, 0.22), n=16)
            overlay = img.copy()
            cv2.fillPoly(overlay, [pts], (70, 50, 30))
            img[:] = cv2.addWeighted(img, 0.45, overlay, 0.55, 0)
            cv2.polylines(img, [pts], True, (60, 40, 25), max(1, size // 60), cv2.LINE_AA)
