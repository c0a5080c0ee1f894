"""A fixed station camera's view for the station tests: an empty bench, or a parcel label with a
real Code128 barcode (written by zxing-cpp) of the tracking number the test holds up, with the
frame number drawn on top as :class:`tests.fakes.camera.NumberedVideoTrack` draws it, so a clip
can be checked frame by frame against what the camera showed."""

from __future__ import annotations

import fractions
from typing import Any

import av
import numpy as np
import zxingcpp
from aiortc import MediaStreamTrack
from aiortc.mediastreams import MediaStreamError

from tests.fakes.camera import VIDEO_CLOCK, _draw_number, _Pacer

__all__ = ["ParcelVideoTrack", "barcode_label"]

_WHITE, _BLACK, _BENCH = 235, 16, 110


def barcode_label(text: str, fmt: str = "Code128", scale: int = 2) -> np.ndarray[Any, Any]:
    """A printed label: the code in black on white with its quiet zone, as luma (16-235)."""
    barcode = zxingcpp.create_barcode(text, getattr(zxingcpp.BarcodeFormat, fmt))
    grey = np.asarray(barcode.to_image(scale=scale, add_quiet_zones=True))
    return np.where(grey > 127, _WHITE, _BLACK).astype(np.uint8)


class ParcelVideoTrack(MediaStreamTrack):
    """A station camera: :meth:`show` puts a parcel's label in view (``None``: the bench is
    empty). ``shown[i]`` is the tracking number frame ``i`` showed (frames are numbered from 0,
    mod 2**16, in the band at the top), paced in real time at ``fps``."""

    kind = "video"

    def __init__(
        self, width: int = 640, height: int = 480, fps: int = 15, fmt: str = "Code128"
    ) -> None:
        super().__init__()
        self.width, self.height, self.fps, self.fmt = width, height, fps, fmt
        self.shown: list[str | None] = []
        self._showing: str | None = None
        self._labels: dict[str, np.ndarray[Any, Any]] = {}
        self._pacer = _Pacer(1 / fps)
        self._bench = self._draw_bench()

    def show(self, tracking_number: str | None) -> None:
        """From the next frame on, show this parcel's label (or nothing)."""
        if tracking_number is not None and tracking_number not in self._labels:
            self._labels[tracking_number] = barcode_label(tracking_number, self.fmt)
        self._showing = tracking_number

    def frames_of(self, tracking_number: str) -> list[int]:
        """The numbers of the frames that showed ``tracking_number``."""
        return [i for i, shown in enumerate(self.shown) if shown == tracking_number]

    def _draw_bench(self) -> np.ndarray[Any, Any]:
        w, h = self.width, self.height
        yuv = np.empty((h * 3 // 2, w), dtype=np.uint8)
        yuv[:h] = _BENCH
        yuv[h:] = 128
        return yuv

    async def recv(self) -> av.VideoFrame:
        if self.readyState != "live":
            raise MediaStreamError
        index = len(self.shown)
        await self._pacer.wait(index)
        yuv = self._bench.copy()
        showing = self._showing
        if showing is not None:
            label = self._labels[showing]
            lh, lw = label.shape
            top, left = (self.height - lh) // 2, (self.width - lw) // 2
            yuv[top : top + lh, left : left + lw] = label
        _draw_number(yuv[: self.height], index & 0xFFFF)
        self.shown.append(showing)
        frame = av.VideoFrame.from_ndarray(yuv, format="yuv420p")
        frame.pts = index * VIDEO_CLOCK // self.fps
        frame.time_base = fractions.Fraction(1, VIDEO_CLOCK)
        return frame
