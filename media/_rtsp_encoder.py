"""The one transcode of an RTSP camera whose video cannot be forwarded as it is (H.265, H.264
with B-frames, MJPEG...): H.264 constrained baseline, encoded on its own thread."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from fractions import Fraction
from typing import Any

import av

logger = logging.getLogger("media.ingest")

#: RTP clock of the video the pull publishes (90 kHz for every video codec).
VIDEO_CLOCK = 90_000
_X264 = {"preset": "ultrafast", "tune": "zerolatency", "profile": "baseline", "bf": "0"}


class _Encoder:
    """The camera's one transcode to H.264 constrained baseline, on its own thread: it encodes
    the newest decoded picture and skips those it had no time for, so reading never waits."""

    def __init__(
        self,
        name: str,
        fps: float,
        keyframe_interval_s: float,
        emit: Callable[[bytes, int, bool], None],
    ) -> None:
        self._fps = fps
        self._gop = max(1, round(fps * keyframe_interval_s))
        self._emit = emit
        self._cond = threading.Condition()
        self._frame: Any = None
        self._closed = False
        self._force = True
        self._context: Any = None
        self._last_pts = -1
        #: Pictures encoded, and skipped because the encoder was still busy.
        self.encoded = 0
        self.skipped = 0
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def put(self, frame: Any) -> None:
        with self._cond:
            if self._frame is not None:
                self.skipped += 1
            self._frame = frame
            self._cond.notify()

    def force_keyframe(self) -> None:
        with self._cond:
            self._force = True

    def close(self, timeout: float = 2.0) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify()
        if self._thread is not threading.current_thread():
            self._thread.join(timeout)

    def _run(self) -> None:
        while True:
            with self._cond:
                while self._frame is None and not self._closed:
                    self._cond.wait()
                if self._closed:
                    return
                frame, self._frame = self._frame, None
                force, self._force = self._force, False
            try:
                packets = self._encode(frame, force)
            except Exception:
                logger.exception("RTSP transcode failed; starting a new encoder")
                self._context = None
                continue
            for data, pts, keyframe in packets:
                self.encoded += 1
                self._emit(data, pts, keyframe)

    def _encode(self, frame: Any, force: bool) -> list[tuple[bytes, int, bool]]:
        width, height = frame.width & ~1, frame.height & ~1
        if frame.format.name != "yuv420p" or (width, height) != (frame.width, frame.height):
            pts = frame.pts
            frame = frame.reformat(width=width, height=height, format="yuv420p")
            frame.pts = pts
        context = self._context
        if context is None or (context.width, context.height) != (width, height):
            context = av.CodecContext.create("libx264", "w")
            context.width = width
            context.height = height
            context.pix_fmt = "yuv420p"
            context.time_base = Fraction(1, VIDEO_CLOCK)
            context.framerate = Fraction(self._fps).limit_denominator(1001)
            context.gop_size = self._gop
            context.bit_rate = _bitrate(width, height, self._fps)
            context.options = {**_X264, "forced-idr": "1"}
            self._context = context
            force = True
        # The encoder wants strictly increasing timestamps.
        pts = max(int(frame.pts or 0), self._last_pts + 1)
        self._last_pts = pts
        frame.pts = pts
        frame.time_base = Fraction(1, VIDEO_CLOCK)
        frame.pict_type = av.video.frame.PictureType.I if force else av.video.frame.PictureType.NONE
        return [
            (bytes(packet), int(packet.pts), bool(packet.is_keyframe))
            for packet in context.encode(frame)
            if packet.pts is not None
        ]


def _bitrate(width: int, height: int, fps: float) -> int:
    """About 0.1 bit per pixel, between 300 kbit/s and 6 Mbit/s."""
    return int(min(6_000_000, max(300_000, width * height * fps * 0.1)))
