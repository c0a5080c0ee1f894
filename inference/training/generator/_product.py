"""The product: its body (shape and material), the features of an intact item (printed text,
logo, screen, buttons, grille) and the defects that decide the grade (dent, scratches, stains,
crack).
"""

from __future__ import annotations

import math

import cv2
import numpy as np

from inference.training.generator._draw import (
    Image,
    _blob,
    _inner_points,
    _random_colour,
    _rounded_rect,
    _u,
)
from inference.training.generator.spec import SampleSpec


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
