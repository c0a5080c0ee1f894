"""A synthetic camera that shows a returned item, drawn by the training generator, with a
barcode label beside it: what a customer's phone shows the agent, for the grading tests."""

from __future__ import annotations

import fractions
from typing import Any

import av
import numpy as np
import zxingcpp
from aiortc import MediaStreamTrack
from aiortc.mediastreams import MediaStreamError

from inference.training.generator import SampleSpec, make_spec, render_scene
from tests.fakes.camera import VIDEO_CLOCK, _Pacer

__all__ = ["SceneVideoTrack", "code_image", "scene_frames"]


def code_image(text: str, fmt: str = "QRCode", scale: int = 6) -> np.ndarray[Any, Any]:
    """A printed code (black on white, quiet zone included) as H x W x 3 uint8."""
    barcode = zxingcpp.create_barcode(text, getattr(zxingcpp.BarcodeFormat, fmt))
    grey = np.asarray(barcode.to_image(scale=scale, add_quiet_zones=True))
    return np.repeat(grey[..., None], 3, axis=2)


def scene_frames(
    spec: SampleSpec,
    *,
    code: str | None = None,
    count: int = 6,
    size: tuple[int, int] = (480, 640),
    seed: int = 11,
) -> list[np.ndarray[Any, Any]]:
    """``count`` views of the item (RGB); with ``code``, a QR label in the top-left corner."""
    rng = np.random.default_rng(seed)
    frames = []
    label = code_image(code) if code else None
    for _ in range(count):
        image = render_scene(spec, rng, size, nuisance=False).copy()
        if label is not None:
            h, w = label.shape[:2]
            image[8 : 8 + h, 8 : 8 + w] = label
        frames.append(image)
    return frames


class SceneVideoTrack(MediaStreamTrack):
    """Cycles through pre-rendered scene frames in real time (default: a cracked item)."""

    kind = "video"

    def __init__(
        self,
        spec: SampleSpec | None = None,
        *,
        code: str | None = None,
        fps: int = 15,
        frames: list[np.ndarray[Any, Any]] | None = None,
    ) -> None:
        super().__init__()
        self.spec = spec or make_spec(crack=True)
        images = frames or scene_frames(self.spec, code=code)
        # Each view is held for a third of a second: a hand moving the item slowly.
        self._frames = [av.VideoFrame.from_ndarray(image, format="rgb24") for image in images]
        self.fps = fps
        self._pacer = _Pacer(1 / fps)
        self.frames_sent = 0

    async def recv(self) -> av.VideoFrame:
        if self.readyState != "live":
            raise MediaStreamError
        index = self.frames_sent
        await self._pacer.wait(index)
        source = self._frames[(index // max(1, self.fps // 3)) % len(self._frames)]
        frame = source.reformat(format="yuv420p")
        frame.pts = index * VIDEO_CLOCK // self.fps
        frame.time_base = fractions.Fraction(1, VIDEO_CLOCK)
        self.frames_sent += 1
        return frame
