"""Procedural training images for the default condition grader (numpy + OpenCV only).

Every picture is drawn from a :class:`SampleSpec`: a product-like body (plastic, brushed metal,
woven fabric or a glossy screen-like finish, with printed text, logos, buttons), optionally a
cardboard box behind it (tape, shipping label, and when the packaging is damaged: tears, a
crushed corner, wet stains), accessories (cables, chargers, earbuds) present or missing, a table
or cloth background with clutter (papers, pens, hand-like blobs holding the item), and camera
nuisances (perspective, blur, exposure, white balance, noise, JPEG).

Labelling rule (the grade follows from what is drawn *on the product*; see :func:`grade_for`):

* **D** (functional problem): a **crack** in the housing or screen. A cracked body or screen is
  treated as a functional defect (it lets in dust and moisture, a screen stops responding).
* **C** (cosmetic flaws, works): a **dent**, **heavy scratches** (many, long, deep, high contrast)
  or a **large stain**; no crack.
* **B** (light signs of use): only **light scratches** (a few short fine lines) and/or a
  **small stain**.
* **A** (packaging damaged only, product as new): nothing on the product. The box may be torn,
  crushed or wet (``torn_packaging``), which does not lower the grade.

Damage labels are multi-label: ``scratch`` (light or heavy), ``dent``, ``crack``, ``stain``
(small or large) on the product and ``torn_packaging`` for any damage drawn on the box.
Whether accessories are complete is drawn (cables and small parts present or missing) but is a
separate fact for the agent, not part of the visual grade.

Every sample is drawn from its own generator seeded with ``(seed, index)``, so
:func:`make_set` returns the same pixels whatever the number of worker processes.
"""

from __future__ import annotations

import math
import os
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np

__all__ = [
    "DAMAGES",
    "GRADES",
    "LETTERBOX_FILL",
    "MATERIALS",
    "SHAPES",
    "SampleSpec",
    "grade_for",
    "letterbox",
    "make_set",
    "make_spec",
    "random_spec",
    "render",
    "render_scene",
]

GRADES = ("A", "B", "C", "D")
DAMAGES = ("scratch", "dent", "crack", "stain", "torn_packaging")
MATERIALS = ("plastic", "metal", "fabric", "glossy")
SHAPES = ("slab", "round", "block", "bottle")
#: Border grey used when a frame is letterboxed into the model input (same as the server).
LETTERBOX_FILL = 114

Image = np.ndarray[Any, Any]


@dataclass(frozen=True, slots=True)
class SampleSpec:
    """What one picture shows; the labels are derived from it.

    ``scratch`` is ``"none" | "light" | "heavy"`` and ``stain`` is ``"none" | "small" |
    "large"``; ``damages`` is the multi-label set of :data:`DAMAGES` names that are drawn.
    """

    grade: str
    damages: frozenset[str]
    accessories_complete: bool
    material: str = "plastic"
    shape: str = "slab"
    scratch: str = "none"
    stain: str = "none"
    dent: bool = False
    crack: bool = False
    has_box: bool = False
    torn_packaging: bool = False

    @property
    def damage_vector(self) -> np.ndarray[Any, Any]:
        """Damage labels as float32 ``[5]`` in :data:`DAMAGES` order."""
        return np.array([d in self.damages for d in DAMAGES], dtype=np.float32)


def grade_for(scratch: str, stain: str, dent: bool, crack: bool) -> str:
    """The labelling rule: product defects -> grade (packaging never lowers the grade)."""
    if crack:
        return "D"
    if dent or scratch == "heavy" or stain == "large":
        return "C"
    if scratch == "light" or stain == "small":
        return "B"
    return "A"


def make_spec(
    *,
    scratch: str = "none",
    stain: str = "none",
    dent: bool = False,
    crack: bool = False,
    torn_packaging: bool = False,
    has_box: bool | None = None,
    accessories_complete: bool = True,
    material: str = "plastic",
    shape: str = "slab",
) -> SampleSpec:
    """Build a consistent spec from the drawn facts (grade and labels derived)."""
    damages = {
        name
        for name, on in (
            ("scratch", scratch != "none"),
            ("stain", stain != "none"),
            ("dent", dent),
            ("crack", crack),
            ("torn_packaging", torn_packaging),
        )
        if on
    }
    return SampleSpec(
        grade=grade_for(scratch, stain, dent, crack),
        damages=frozenset(damages),
        accessories_complete=accessories_complete,
        material=material,
        shape=shape,
        scratch=scratch,
        stain=stain,
        dent=dent,
        crack=crack,
        has_box=torn_packaging or bool(has_box),
        torn_packaging=torn_packaging,
    )


def random_spec(rng: np.random.Generator, grade: str | None = None) -> SampleSpec:
    """A random spec, uniform over the grades (or for the given ``grade``)."""
    g = grade if grade is not None else GRADES[int(rng.integers(4))]
    scratch, stain, dent, crack = "none", "none", False, False
    if g == "B":
        kind = rng.random()
        scratch = "light" if kind < 0.65 else "none"
        stain = "small" if kind >= 0.45 else "none"
    elif g == "C":
        while not (dent or scratch == "heavy" or stain == "large"):
            dent = rng.random() < 0.45
            scratch = "heavy" if rng.random() < 0.45 else "none"
            stain = "large" if rng.random() < 0.4 else "none"
        if scratch == "none" and rng.random() < 0.2:
            scratch = "light"
        if stain == "none" and rng.random() < 0.15:
            stain = "small"
    elif g == "D":
        crack = True
        dent = rng.random() < 0.2
        scratch = str(rng.choice(["none", "light", "heavy"], p=[0.65, 0.2, 0.15]))
        stain = str(rng.choice(["none", "small", "large"], p=[0.75, 0.15, 0.1]))
    has_box = rng.random() < 0.6
    torn = has_box and rng.random() < 0.6
    return make_spec(
        scratch=scratch,
        stain=stain,
        dent=dent,
        crack=crack,
        torn_packaging=torn,
        has_box=has_box,
        accessories_complete=bool(rng.random() < 0.6),
        material=MATERIALS[int(rng.integers(len(MATERIALS)))],
        shape=SHAPES[int(rng.integers(len(SHAPES)))],
    )


# --------------------------------------------------------------------------- small helpers


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


# --------------------------------------------------------------------------- scene parts


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


def _product(rng: np.random.Generator, spec: SampleSpec, size: int) -> tuple[Image, Image]:
    """The product drawn upright in its own canvas with its defects; (rgb float, mask uint8)."""
    shape = spec.shape
    aspect = {"slab": _u(rng, 0.5, 1.5), "round": _u(rng, 0.8, 1.2), "block": _u(rng, 0.7, 1.3)}
    ratio = aspect.get(shape, _u(rng, 0.35, 0.5))
    ph, pw = (size, int(size * ratio)) if ratio < 1 else (int(size / ratio), size)
    ph, pw = max(ph, 16), max(pw, 16)
    mask = np.zeros((ph, pw), np.uint8)
    if shape == "slab":
        cv2.fillPoly(mask, [_rounded_rect(pw - 1, ph - 1, min(pw, ph) * _u(rng, 0.05, 0.2))], 255)
    elif shape == "round":
        cv2.ellipse(mask, (pw // 2, ph // 2), (pw // 2 - 1, ph // 2 - 1), 0, 0, 360, 255, -1)
    elif shape == "block":
        cv2.fillPoly(mask, [_rounded_rect(pw - 1, ph - 1, min(pw, ph) * 0.04)], 255)
    else:  # bottle: body + shoulder + neck
        neck = pw * 0.35
        cv2.fillPoly(mask, [_rounded_rect(pw - 1, ph * 0.78, pw * 0.2, 0, ph * 0.22 - 1)], 255)
        cv2.fillPoly(mask, [_rounded_rect(neck, ph * 0.3, neck * 0.2, (pw - neck) / 2, 0)], 255)
    if rng.random() < 0.5:  # most products are black, white, grey or silver
        base = np.full(3, _u(rng, 20, 235), np.float32)
    else:
        base = _random_colour(rng)
    img = np.empty((ph, pw, 3), np.float32)
    img[:] = base
    material = spec.material
    if material == "metal":
        img[:] = np.float32(_u(rng, 120, 215)) * np.array(
            [1.0, _u(rng, 0.92, 1.0), _u(rng, 0.8, 1.02)], np.float32
        )
        streak: Image = rng.normal(0, 1, (ph, 6)).astype(np.float32)
        streak = cv2.resize(streak, (pw, ph), interpolation=cv2.INTER_LINEAR)
        if rng.random() < 0.5:
            streak = cv2.resize(rng.normal(0, 1, (6, pw)).astype(np.float32), (pw, ph))
        img += (streak * 6)[..., None]
    elif material == "fabric":
        p = _u(rng, 1.2, 2.2)
        xx = np.arange(pw, dtype=np.float32)[None, :]
        yy = np.arange(ph, dtype=np.float32)[:, None]
        weave = np.sin(xx * p) * np.sin(yy * p) * _u(rng, 8, 18)
        img += (weave + rng.normal(0, 4, (ph, pw)).astype(np.float32))[..., None]
    elif material == "glossy":
        img[:] = np.float32(_u(rng, 10, 60)) * np.array([1, 1, _u(rng, 1.0, 1.6)], np.float32)
    # lighting: a gradient plus a soft specular band
    gx = np.linspace(-1, 1, pw, dtype=np.float32)[None, :] * _u(rng, -30, 30)
    gy = np.linspace(-1, 1, ph, dtype=np.float32)[:, None] * _u(rng, -30, 30)
    img += (gx + gy)[..., None]
    if material in ("glossy", "plastic", "metal"):
        band: Image = np.zeros((ph, pw), np.float32)
        x0 = _u(rng, 0, pw)
        cv2.line(band, (int(x0), 0), (int(x0 + pw * _u(rng, -0.6, 0.6)), ph), 1.0, max(2, pw // 6))
        band = cv2.GaussianBlur(band, (0, 0), max(2.0, pw / 12))
        img += (band * _u(rng, 15, 60 if material == "glossy" else 35))[..., None]
    _features(rng, img, mask, spec, ph, pw)
    _defects(rng, img, mask, spec, min(ph, pw), size)
    # rim: a dark outline and a thin highlight just inside it
    contours, _ = cv2.findContours(mask, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    cv2.drawContours(img, contours, -1, (base * 0.35).tolist(), max(1, size // 90), cv2.LINE_AA)
    return img, mask


def _features(
    rng: np.random.Generator, img: Image, mask: Image, spec: SampleSpec, ph: int, pw: int
) -> None:
    """Printed text, a logo, a screen, buttons or a grille: parts of an intact product."""
    s = min(ph, pw)
    ink = (255 - img[ph // 2, pw // 2]).clip(0, 255)
    if spec.shape == "slab" and spec.material in ("glossy", "plastic") and rng.random() < 0.6:
        m = int(s * 0.08)
        cv2.rectangle(img, (m, m), (pw - m, ph - m), (_u(rng, 5, 35),) * 3, -1)
    if rng.random() < 0.75:
        text = "".join(rng.choice(list("ACMESONIQVOLTXPRO"), int(rng.integers(3, 7))))
        scale = s / 160 * _u(rng, 0.6, 1.1)
        org = (int(pw * _u(rng, 0.1, 0.4)), int(ph * _u(rng, 0.25, 0.85)))
        layer = np.zeros((ph, pw), np.uint8)  # putText draws on 8-bit images only
        cv2.putText(layer, text, org, cv2.FONT_HERSHEY_SIMPLEX, scale, 255, 1, cv2.LINE_AA)
        a = (layer.astype(np.float32) / 255)[..., None]
        img[:] = img * (1 - a) + ink * a
    if rng.random() < 0.5:
        c = (int(pw * _u(rng, 0.3, 0.7)), int(ph * _u(rng, 0.2, 0.4)))
        cv2.circle(img, c, max(2, int(s * _u(rng, 0.05, 0.1))), ink.tolist(), 1, cv2.LINE_AA)
    if rng.random() < 0.4:  # speaker grille or buttons
        step = max(3, s // 18)
        x0, y0 = int(pw * 0.3), int(ph * 0.65)
        for i in range(int(rng.integers(3, 7))):
            for j in range(2):
                cv2.circle(img, (x0 + i * step, y0 + j * step), max(1, s // 70), (20, 20, 20), -1)


def _defects(
    rng: np.random.Generator, img: Image, mask: Image, spec: SampleSpec, s: int, size: int
) -> None:
    """Scratches, a dent, a crack and stains drawn on the product surface."""
    unit = max(1.0, size / 140)  # line width that stays ~1 px at the model's input size
    if spec.dent:
        for _ in range(int(rng.integers(1, 3))):
            cx, cy = _inner_points(rng, mask, 1, s * 0.2)[0]
            r = s * _u(rng, 0.12, 0.22)
            ph, pw = mask.shape
            yy, xx = np.mgrid[0:ph, 0:pw].astype(np.float32)
            dx, dy = (xx - cx) / r, (yy - cy) / (r * _u(rng, 0.6, 1.0))
            rr = dx * dx + dy * dy
            a = _u(rng, 0, 2 * np.pi)
            inside = np.clip(1 - rr, 0, 1)
            shade = (dx * math.cos(a) + dy * math.sin(a)) * inside * _u(rng, 55, 95)
            ring = np.exp(-((np.sqrt(rr) - 1) ** 2) / 0.02) * -20
            img += (shade + ring)[..., None]
            cv2.ellipse(
                img,
                (int(cx), int(cy)),
                (int(r * 0.5), int(r * 0.35)),
                math.degrees(a),
                0,
                180,
                (img[int(cy), int(cx)] * 0.5).tolist(),
                max(1, int(unit)),
                cv2.LINE_AA,
            )
    if spec.scratch != "none":
        heavy = spec.scratch == "heavy"
        n = int(rng.integers(5, 11)) if heavy else int(rng.integers(1, 4))
        for p in _inner_points(rng, mask, n, s * 0.08):
            length = s * (_u(rng, 0.25, 0.6) if heavy else _u(rng, 0.1, 0.25))
            a = _u(rng, 0, np.pi)
            bend = rng.uniform(-0.15, 0.15)
            pts = np.array(
                [
                    p + length * k / 3 * np.array([math.cos(a + bend * k), math.sin(a + bend * k)])
                    for k in range(4)
                ],
                np.int32,
            )
            here = img[int(p[1]), int(p[0])]
            lum = float(here.mean())
            contrast = _u(rng, 90, 150) if heavy else _u(rng, 55, 85)
            colour = (here + contrast) if lum < 150 else (here - contrast)
            width = max(1, int(unit * (_u(rng, 1.0, 2.2) if heavy else 1.0)))
            cv2.polylines(img, [pts], False, colour.tolist(), width, cv2.LINE_AA)
            if heavy and rng.random() < 0.5:  # the dark groove beside a deep scratch
                cv2.polylines(img, [pts + 1], False, (here * 0.3).tolist(), width, cv2.LINE_AA)
    if spec.stain != "none":
        large = spec.stain == "large"
        n = int(rng.integers(1, 3)) if large else 1
        colour = [(110, 70, 35), (60, 55, 50), (190, 160, 60), (140, 80, 30), (90, 60, 40)]
        ink = np.float32(colour[int(rng.integers(len(colour)))])
        for p in _inner_points(rng, mask, n, s * 0.15):
            r = s * (_u(rng, 0.14, 0.24) if large else _u(rng, 0.06, 0.09))
            pts = _blob(rng, float(p[0]), float(p[1]), r)
            overlay = img.copy()
            cv2.fillPoly(overlay, [pts], ink.tolist(), cv2.LINE_AA)
            alpha = _u(rng, 0.45, 0.75)
            img[:] = img * (1 - alpha) + overlay * alpha
            cv2.polylines(img, [pts], True, (ink * 0.6).tolist(), max(1, int(unit)), cv2.LINE_AA)
    if spec.crack:
        _crack(rng, img, mask, s, unit)


def _crack(rng: np.random.Generator, img: Image, mask: Image, s: int, unit: float) -> None:
    """Branching lines from an impact point: dark on light surfaces, white on dark glass.

    The contrast is chosen per segment from the surface under it, so a crack that runs from a
    light bezel onto a black screen stays visible on both.
    """
    origin = _inner_points(rng, mask, 1, s * 0.15)[0]
    dark = (_u(rng, 0, 40),) * 3
    light = (_u(rng, 200, 255),) * 3
    lum = img.mean(2)
    ph, pw = lum.shape
    width = max(1, int(unit * _u(rng, 1.0, 1.8)))
    stack = [(origin, _u(rng, 0, 2 * np.pi), s * _u(rng, 0.4, 0.8), 0)]
    for k in range(int(rng.integers(2, 5)) - 1):
        stack.append((origin, _u(rng, 0, 2 * np.pi) + k, s * _u(rng, 0.25, 0.6), 0))
    segments = 0
    while stack and segments < 60:
        p, a, remaining, depth = stack.pop()
        pts = [p]
        step = s * 0.05
        while remaining > 0:
            a += rng.normal(0, 0.35)
            p = p + step * np.array([math.cos(a), math.sin(a)])
            pts.append(p)
            remaining -= step
            segments += 1
            if depth < 2 and rng.random() < 0.22:
                stack.append(
                    (p, a + rng.choice([-1, 1]) * _u(rng, 0.4, 1.1), remaining * 0.6, depth + 1)
                )
        poly = np.array(pts, np.int32)
        for q0, q1 in zip(poly[:-1], poly[1:], strict=True):
            mx = min(pw - 1, max(0, int((q0[0] + q1[0]) // 2)))
            my = min(ph - 1, max(0, int((q0[1] + q1[1]) // 2)))
            line, edge = (light, dark) if lum[my, mx] < 90 else (dark, light)
            a0, a1 = (int(q0[0]), int(q0[1])), (int(q1[0]), int(q1[1]))
            b0, b1 = (a0[0] + 1, a0[1] + 1), (a1[0] + 1, a1[1] + 1)
            cv2.line(img, b0, b1, edge, max(1, width - 1), cv2.LINE_AA)
            cv2.line(img, a0, a1, line, width, cv2.LINE_AA)


# --------------------------------------------------------------------------- composition


def _paste(canvas: Image, obj: Image, mask: Image, matrix: Image, shadow: float) -> None:
    """Warp an object into the canvas with an affine matrix, with a soft drop shadow.

    Only the region the object (and its shadow) can cover is touched.
    """
    h, w = canvas.shape[:2]
    oh, ow = mask.shape
    corners = np.array([(0, 0, 1), (ow, 0, 1), (ow, oh, 1), (0, oh, 1)], np.float64) @ matrix.T
    pad = int(3 * shadow + 2)
    x0 = max(0, int(corners[:, 0].min()) - pad)
    y0 = max(0, int(corners[:, 1].min()) - pad)
    x1 = min(w, int(corners[:, 0].max()) + 2 * pad)
    y1 = min(h, int(corners[:, 1].max()) + 2 * pad)
    if x1 <= x0 or y1 <= y0:
        return
    local = matrix.copy()
    local[:, 2] -= (x0, y0)
    size = (x1 - x0, y1 - y0)
    roi = canvas[y0:y1, x0:x1]
    m = cv2.warpAffine(mask, local, size, flags=cv2.INTER_LINEAR).astype(np.float32) / 255
    if shadow > 0:
        sh = cv2.GaussianBlur(m, (0, 0), max(1.0, shadow))
        sh = np.roll(sh, (int(shadow), int(shadow)), (0, 1))
        roi *= (1 - 0.45 * sh)[..., None]
    o = cv2.warpAffine(obj, local, size, flags=cv2.INTER_LINEAR)
    m3 = m[..., None]
    roi[:] = roi * (1 - m3) + o * m3


def _place(obj_w: int, obj_h: int, cx: float, cy: float, angle: float) -> Image:
    m = cv2.getRotationMatrix2D((obj_w / 2, obj_h / 2), angle, 1.0)
    m[:, 2] += np.array((cx - obj_w / 2, cy - obj_h / 2))
    return m


def _camera(rng: np.random.Generator, img: Image, strength: float) -> Image:
    """Perspective, blur, exposure, white balance, noise and JPEG, scaled by ``strength``."""
    h, w = img.shape[:2]
    px = max(h, w) / 224  # nuisance sizes are defined at the model's scale
    if rng.random() < 0.7 * strength:
        j = 0.05 * strength * min(h, w)
        src = np.array([(0, 0), (w, 0), (w, h), (0, h)], np.float32)
        dst = src + rng.uniform(-j, j, (4, 2)).astype(np.float32)
        hm = cv2.getPerspectiveTransform(src, dst)
        img = cv2.warpPerspective(img, hm, (w, h), borderMode=cv2.BORDER_REFLECT)
    r = rng.random()
    if r < 0.35 * strength:
        img = cv2.GaussianBlur(img, (0, 0), _u(rng, 0.3, 0.8) * px)
    elif r < 0.45 * strength:  # motion blur
        k = max(3, int(_u(rng, 2, 4) * px) | 1)
        kern: Image = np.zeros((k, k), np.float32)
        kern[k // 2, :] = 1 / k
        rot = cv2.getRotationMatrix2D((k / 2 - 0.5, k / 2 - 0.5), _u(rng, 0, 180), 1)
        kern = cv2.warpAffine(kern, rot, (k, k))
        img = cv2.filter2D(img, -1, kern / max(kern.sum(), 1e-6))
    # exposure, white balance and gamma as one lookup table per channel
    gain = 1 + rng.uniform(-0.35, 0.3) * strength
    wb = 1 + rng.uniform(-0.12, 0.12, 3) * strength
    gamma = 1 + _u(rng, -0.3, 0.3) * strength
    levels = np.arange(256, dtype=np.float64)[:, None] * (gain * wb)[None, :]
    lut = (255 * (np.clip(levels, 0, 255) / 255) ** gamma).astype(np.uint8)
    u8 = np.clip(img, 0, 255).astype(np.uint8)
    img = cv2.LUT(u8, lut.reshape(256, 1, 3)).astype(np.float32)
    if rng.random() < 0.4 * strength:  # vignette
        yy, xx = np.mgrid[-1 : 1 : h * 1j, -1 : 1 : w * 1j].astype(np.float32)
        img *= (1 - _u(rng, 0.1, 0.35) * (xx * xx + yy * yy) / 2)[..., None]
    sigma = _u(rng, 0, 6) * strength
    if sigma > 0.5:
        img += rng.standard_normal(img.shape, dtype=np.float32) * np.float32(sigma)
    out = np.clip(img, 0, 255).astype(np.uint8)
    if rng.random() < 0.8 * strength:
        q = int(rng.integers(35, 95))
        ok, buf = cv2.imencode(".jpg", out[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, q])
        decoded = cv2.imdecode(buf, cv2.IMREAD_COLOR) if ok else None
        if decoded is not None:
            out = decoded[..., ::-1]
    return np.ascontiguousarray(out)


def _scene(
    spec: SampleSpec,
    rng: np.random.Generator,
    h: int,
    w: int,
    item: float,
    jitter: float,
    strength: float,
) -> Image:
    """Draw the whole scene at h x w; ``item`` is the product size as a fraction of min(h, w)."""
    scale = min(h, w) / 224
    canvas = _background(rng, h, w)
    _clutter(rng, canvas, scale)
    cx = w / 2 + _u(rng, -jitter, jitter) * w
    cy = h / 2 + _u(rng, -jitter, jitter) * h
    psize = int(item * min(h, w))
    if spec.has_box:
        bw, bh = int(min(h, w) * _u(rng, 0.55, 0.8)), int(min(h, w) * _u(rng, 0.5, 0.7))
        a = _u(rng, 0, 2 * np.pi)
        off = 0.5 * (psize * 0.45 + max(bw, bh) * 0.45)
        bx, by = cx + math.cos(a) * off * 1.2, cy + math.sin(a) * off
        bangle = _u(rng, -15, 15)
        bm = _place(bw, bh, bx, by, bangle)
        inv = cv2.invertAffineTransform(bm)
        avoid = inv @ np.array([cx, cy, 1.0])
        box, bmask = _box(rng, bw, bh, spec.torn_packaging, (float(avoid[0]), float(avoid[1])))
        _paste(canvas, box, bmask, bm, 3 * scale)
    if rng.random() < 0.3:
        _hand(rng, canvas, (cx, cy), scale)
    _accessories(rng, canvas, spec.accessories_complete, scale)
    prod, pmask = _product(rng, spec, psize)
    ph, pw = pmask.shape
    _paste(canvas, prod, pmask, _place(pw, ph, cx, cy, _u(rng, -30, 30)), 4 * scale)
    if rng.random() < 0.25:  # a hand holding the item at its edge
        side = float(rng.choice([-1, 1]))
        edge = (cx + _u(rng, -0.3, 0.3) * pw, cy + ph * 0.5 * side)
        _hand(rng, canvas, edge, scale, inward=(0.0, -side))
    return _camera(rng, canvas, strength)


def letterbox(image: Image, size: tuple[int, int], fill: int = LETTERBOX_FILL) -> Image:
    """Fit an RGB frame into ``size`` (h, w) keeping its aspect ratio, grey borders.

    The same fitting the server applies before the model (INTER_AREA when shrinking).
    """
    th, tw = size
    h, w = image.shape[:2]
    s = min(th / h, tw / w)
    rw, rh = max(1, min(tw, round(w * s))), max(1, min(th, round(h * s)))
    shrink = rw <= w and rh <= h
    interp = cv2.INTER_AREA if shrink else cv2.INTER_LINEAR
    resized = image if (rw, rh) == (w, h) else cv2.resize(image, (rw, rh), interpolation=interp)
    out = np.full((th, tw, 3), fill, np.uint8)
    y0, x0 = (th - rh) // 2, (tw - rw) // 2
    out[y0 : y0 + rh, x0 : x0 + rw] = resized
    return out


def render(spec: SampleSpec, rng: np.random.Generator, size: tuple[int, int] = (224, 224)) -> Image:
    """One training image (H x W x 3 uint8 RGB) showing ``spec``.

    Half the images are drawn straight at ``size``; the other half are camera-like frames of
    another aspect ratio and resolution (4:3, 16:9, portrait), letterboxed into ``size`` the way
    the server fits live frames.
    """
    h, w = size
    if rng.random() < 0.5:
        return _scene(spec, rng, h, w, _u(rng, 0.5, 0.85), 0.12, _u(rng, 0.3, 1.0))
    aspect = float(rng.choice([4 / 3, 16 / 9, 3 / 4, 9 / 16, 1.0]))
    up = 1 + 1.0 * rng.random() ** 2
    fh = int(min(h, w) * up * (1 if aspect >= 1 else 1 / aspect))
    fw = int(fh * aspect)
    frame = _scene(spec, rng, fh, fw, _u(rng, 0.5, 0.8), 0.06, _u(rng, 0.3, 1.0))
    return letterbox(frame, size)


def render_scene(
    spec: SampleSpec,
    rng: np.random.Generator,
    size: tuple[int, int] = (480, 640),
    nuisance: bool = True,
) -> Image:
    """A camera-like frame (H x W x 3 uint8 RGB) with the item centred, for end-to-end tests."""
    h, w = size
    return _scene(spec, rng, h, w, 0.7, 0.03, 0.5 if nuisance else 0.0)


def _render_one(args: tuple[int, int, tuple[int, int]]) -> tuple[Image, int, Image]:
    seed, index, size = args
    rng = np.random.default_rng((seed, index))
    spec = random_spec(rng, GRADES[index % 4])
    return render(spec, rng, size), GRADES.index(spec.grade), spec.damage_vector


def make_set(
    seed: int, count: int, size: tuple[int, int] = (224, 224), workers: int | None = None
) -> tuple[Image, Image, Image]:
    """``count`` images (uint8 ``[N,H,W,3]``), grades (int64 ``[N]``), damages (float32 ``[N,5]``).

    Grades cycle A, B, C, D so every set is balanced; sample ``i`` is drawn from
    ``default_rng((seed, i))`` and is identical whatever ``workers`` is.
    """
    jobs = [(seed, i, size) for i in range(count)]
    n = workers if workers is not None else min(os.cpu_count() or 1, 8)
    if n > 1 and count >= 64:
        with ProcessPoolExecutor(n) as pool:
            results = list(pool.map(_render_one, jobs, chunksize=32))
    else:
        results = [_render_one(j) for j in jobs]
    images = np.empty((count, size[0], size[1], 3), np.uint8)
    grades = np.empty(count, np.int64)
    damages = np.empty((count, len(DAMAGES)), np.float32)
    for i, (img, g, d) in enumerate(results):
        images[i], grades[i], damages[i] = img, g, d
    return images, grades, damages
