"""Composition: the parts pasted into a scene, camera nuisances, letterboxing into the model
input, and the entry points that turn a :class:`SampleSpec` into pixels (:func:`render`,
:func:`render_scene`, :func:`make_set`).
"""

from __future__ import annotations

import math
import os
from concurrent.futures import ProcessPoolExecutor

import cv2
import numpy as np

from inference.training.generator._draw import Image, _u
from inference.training.generator._product import _product
from inference.training.generator._scene_parts import (
    _accessories,
    _background,
    _box,
    _clutter,
    _hand,
)
from inference.training.generator.spec import DAMAGES, GRADES, SampleSpec, random_spec

#: Border grey used when a frame is letterboxed into the model input (same as the server).
LETTERBOX_FILL = 114


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
