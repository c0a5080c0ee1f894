"""Frames to model input: ``[N, 3, H, W]`` float32 RGB 0-255 (the model normalises itself).

Frames are fitted to the model's input size keeping their aspect ratio. The default is
**letterbox**: the whole frame scaled down to fit, centred, the borders filled with neutral grey
(:data:`LETTERBOX_FILL`). Letterbox rather than centre-crop because the customer holds the item
anywhere in the picture and a crop would cut off the edge that shows the dent. A model can ask
for ``center_crop`` (fill the input, cut the overhang) or ``stretch`` (plain resize, aspect not
kept) through its ``inspect.resize`` metadata if it was trained that way.

Downscaling uses ``cv2.INTER_AREA`` (the right filter for shrinking: no aliasing on fine
scratches); the rare upscale uses ``INTER_LINEAR``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import cv2
import numpy as np

__all__ = ["LETTERBOX_FILL", "fit_frame", "to_model_input"]

#: Border value for letterboxing (grey, so the borders read as "nothing there", not as a dark
#: stain or an overexposed surface).
LETTERBOX_FILL = 114


def _resize(image: np.ndarray[Any, Any], width: int, height: int) -> np.ndarray[Any, Any]:
    if image.shape[1] == width and image.shape[0] == height:
        return image
    shrink = width <= image.shape[1] and height <= image.shape[0]
    out: np.ndarray[Any, Any] = cv2.resize(
        image, (width, height), interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR
    )
    return out


def fit_frame(
    image: np.ndarray[Any, Any],
    size: tuple[int, int],
    mode: str = "letterbox",
    out: np.ndarray[Any, Any] | None = None,
) -> np.ndarray[Any, Any]:
    """Fit one H x W x 3 uint8 frame into ``size`` (h, w); writes into ``out`` when given."""
    th, tw = size
    if out is None:
        out = np.empty((th, tw, 3), dtype=np.uint8)
    h, w = image.shape[:2]
    if mode == "stretch":
        out[...] = _resize(image, tw, th)
    elif mode == "center_crop":
        scale = max(th / h, tw / w)
        rw, rh = max(tw, round(w * scale)), max(th, round(h * scale))
        resized = _resize(image, rw, rh)
        y0, x0 = (rh - th) // 2, (rw - tw) // 2
        out[...] = resized[y0 : y0 + th, x0 : x0 + tw]
    elif mode == "letterbox":
        scale = min(th / h, tw / w)
        rw, rh = max(1, min(tw, round(w * scale))), max(1, min(th, round(h * scale)))
        resized = _resize(image, rw, rh)
        y0, x0 = (th - rh) // 2, (tw - rw) // 2
        out.fill(LETTERBOX_FILL)
        out[y0 : y0 + rh, x0 : x0 + rw] = resized
    else:
        raise ValueError(f"unknown resize mode {mode!r}")
    return out


def to_model_input(
    frames: Sequence[np.ndarray[Any, Any]], size: tuple[int, int], mode: str = "letterbox"
) -> np.ndarray[Any, Any]:
    """Stack RGB uint8 frames (H x W x 3, any sizes) into ``[N, 3, h, w]`` float32 0-255.

    Each frame is resized once into a preallocated uint8 buffer; the layout change and the
    float conversion happen in one pass over the whole batch.
    """
    th, tw = size
    canvas = np.empty((len(frames), th, tw, 3), dtype=np.uint8)
    for i, frame in enumerate(frames):
        if frame.ndim != 3 or frame.shape[2] != 3 or frame.dtype != np.uint8:
            raise ValueError(
                f"frame {i}: expected H x W x 3 uint8 RGB, got {frame.shape} {frame.dtype}"
            )
        fit_frame(frame, size, mode, out=canvas[i])
    batch: np.ndarray[Any, Any] = np.ascontiguousarray(
        canvas.transpose(0, 3, 1, 2), dtype=np.float32
    )
    return batch
