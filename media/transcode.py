"""A published track re-encoded to another codec once, shared by every subscriber that needs
it (an H.264-only viewer of a VP8 publisher): :class:`Transcode`."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from fractions import Fraction
from typing import Any

import av

from ._fanout import Fanout, Origin, Outlet
from .keyframes import EncodedFrame, is_keyframe

__all__ = ["Transcode"]

logger = logging.getLogger(__name__)


#: PyAV encoder and options per target codec: real-time, no B-frames, in-band parameter sets.
_ENCODERS: dict[str, tuple[str, dict[str, str]]] = {
    "vp8": ("libvpx", {"deadline": "realtime", "cpu-used": "8", "lag-in-frames": "0"}),
    "h264": (
        "libx264",
        {"preset": "ultrafast", "tune": "zerolatency", "profile": "baseline", "bf": "0"},
    ),
}


class Transcode(Fanout):
    """One source re-encoded to another codec, shared by every subscriber that needs it.

    A frame tap on the source (so the source decodes); frames are encoded with PyAV on the
    transcode's own thread, and a frame that arrives while the previous one is still being
    encoded is skipped rather than queued. Idle (no subscriber) for a second, it tells
    ``on_idle`` (the source, which takes its frame tap off and closes it).
    """

    def __init__(
        self,
        source: Origin,
        codec: str,
        *,
        on_idle: Callable[[Transcode], None],
        bitrate: int = 1_500_000,
        gop_s: float = 2.0,
    ) -> None:
        super().__init__()
        if source.kind != "video" or codec not in _ENCODERS:
            raise ValueError(f"cannot transcode {source.kind} to {codec!r}")
        self._source = source
        self._on_idle = on_idle
        self.codec = codec
        self.kind = source.kind
        self.room_id = source.room_id
        self.publisher_id = source.publisher_id
        self.track_id = source.track_id
        self.live = True
        self._bitrate = bitrate
        self._gop_s = gop_s
        self._pool = ThreadPoolExecutor(1, thread_name_prefix=f"media-transcode-{codec}")
        self._context: Any = None
        self._busy = False
        self._force_keyframe = True
        self._idle_since: float | None = None
        #: Frames encoded and frames skipped because the encoder was busy.
        self.encoded = 0
        self.skipped = 0

    @property
    def origin(self) -> Origin:
        return self._source

    def request_keyframe(self) -> None:
        self._force_keyframe = True

    def detach(self, outlet: Outlet) -> None:
        super().detach(outlet)
        if not self._outlets and self.live:
            self._idle_since = time.monotonic()

    def push(self, frame: Any) -> None:
        if not self.live:
            return
        if not self._outlets:
            if self._idle_since is not None and time.monotonic() - self._idle_since > 1.0:
                self._on_idle(self)
            return
        self._idle_since = None
        if self._busy:
            self.skipped += 1
            return
        self._busy = True
        force, self._force_keyframe = self._force_keyframe, False
        loop = asyncio.get_running_loop()
        future = loop.run_in_executor(self._pool, self._encode, frame, force)
        future.add_done_callback(self._encoded)

    def _encode(self, frame: Any, force: bool) -> list[tuple[bytes, int, bool]]:
        context: Any = self._context
        if context is None or (context.width, context.height) != (frame.width, frame.height):
            name, options = _ENCODERS[self.codec]
            context = av.CodecContext.create(name, "w")
            context.width = frame.width
            context.height = frame.height
            context.pix_fmt = "yuv420p"
            context.time_base = Fraction(1, 90_000)
            context.framerate = Fraction(30, 1)
            context.bit_rate = self._bitrate
            context.gop_size = max(1, int(30 * self._gop_s))
            context.options = dict(options)
            self._context = context
            force = True
        if frame.format.name != "yuv420p":
            frame = frame.reformat(format="yuv420p")
        frame.pict_type = av.video.frame.PictureType.I if force else av.video.frame.PictureType.NONE
        out = []
        for packet in context.encode(frame):
            if packet.pts is None:
                continue
            out.append((bytes(packet), int(packet.pts), bool(packet.is_keyframe)))
        return out

    def _encoded(self, future: asyncio.Future[list[tuple[bytes, int, bool]]]) -> None:
        self._busy = False
        if future.cancelled() or not self.live:
            return
        error = future.exception()
        if error is not None:
            logger.error("transcoding to %s failed: %s", self.codec, error)
            self._force_keyframe = True
            return
        now = time.monotonic()
        for data, pts, keyframe in future.result():
            self.encoded += 1
            self._fan(
                EncodedFrame(
                    kind="video",
                    codec=self.codec,
                    data=data,
                    timestamp=pts,
                    clock_rate=90_000,
                    keyframe=keyframe or is_keyframe(self.codec, data),
                    arrival=now,
                )
            )

    def close(self) -> None:
        if not self.live:
            return
        self.live = False
        self._detach_all()
        self._pool.shutdown(wait=False, cancel_futures=True)
