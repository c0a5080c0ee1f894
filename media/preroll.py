"""The last seconds of one published track, kept as encoded frames so a capture can begin
before it was asked for.

The buffer holds whole groups of pictures (a keyframe and the frames that depend on it) and
keeps the newest keyframe that lies at least ``seconds`` before the newest frame, so what it
returns always starts decodable. Audio frames are all keyframes. Memory is bounded twice: by
time (older groups are dropped whole) and by a hard byte cap.
"""

from __future__ import annotations

from collections import deque

from .keyframes import EncodedFrame

__all__ = ["DEFAULT_MAX_BYTES", "PrerollBuffer"]

#: 10 s of 720p at 4 Mbit/s is 5 MB; 32 MB leaves room for a slow keyframe cadence.
DEFAULT_MAX_BYTES = 32 * 1024 * 1024


class PrerollBuffer:
    """Encoded frames of one track, from a keyframe at least ``seconds`` back to the newest."""

    def __init__(self, seconds: float, *, max_bytes: int = DEFAULT_MAX_BYTES) -> None:
        if seconds < 0:
            raise ValueError("seconds must not be negative")
        if max_bytes <= 0:
            raise ValueError("max_bytes must be positive")
        self.seconds = seconds
        self.max_bytes = max_bytes
        self._gops: deque[list[EncodedFrame]] = deque()
        self._bytes = 0
        #: Frames dropped because no keyframe preceded them or the byte cap was hit.
        self.dropped = 0

    def __len__(self) -> int:
        return sum(len(gop) for gop in self._gops)

    @property
    def bytes(self) -> int:
        return self._bytes

    @property
    def span_s(self) -> float:
        """Seconds from the first buffered frame to the newest."""
        if not self._gops:
            return 0.0
        return self._gops[-1][-1].seconds - self._gops[0][0].seconds

    def push(self, frame: EncodedFrame) -> None:
        """Add the newest frame, dropping what is no longer needed."""
        if frame.keyframe:
            self._gops.append([frame])
        elif self._gops:
            self._gops[-1].append(frame)
        else:
            self.dropped += 1  # undecodable without the keyframe before it
            return
        self._bytes += len(frame.data)
        self._trim(frame)

    def _trim(self, newest: EncodedFrame) -> None:
        horizon = newest.timestamp - self.seconds * newest.clock_rate
        # Drop the oldest group while the next one alone still reaches back far enough.
        while len(self._gops) > 1 and self._gops[1][0].timestamp <= horizon:
            self._drop_oldest()
        while self._bytes > self.max_bytes and self._gops:
            self._drop_oldest()

    def _drop_oldest(self) -> None:
        gop = self._gops.popleft()
        self._bytes -= sum(len(f.data) for f in gop)
        self.dropped += len(gop)

    def last(self, seconds: float | None = None) -> list[EncodedFrame]:
        """Frames from the newest keyframe at least ``seconds`` before the newest frame (all
        buffered frames when ``None`` or when the buffer does not reach that far back)."""
        gops = list(self._gops)
        if not gops:
            return []
        start = 0
        if seconds is not None:
            newest = gops[-1][-1]
            horizon = newest.timestamp - seconds * newest.clock_rate
            for i, gop in enumerate(gops):
                if gop[0].timestamp <= horizon:
                    start = i
        return [frame for gop in gops[start:] for frame in gop]

    def since(self, arrival: float) -> list[EncodedFrame]:
        """Frames from the newest keyframe that arrived at or before ``arrival`` (the oldest
        buffered keyframe if none did): how audio lines up with the start of a video pre-roll."""
        gops = list(self._gops)
        start = 0
        for i, gop in enumerate(gops):
            if gop[0].arrival <= arrival:
                start = i
        return [frame for gop in gops[start:] for frame in gop]

    def clear(self) -> None:
        self._gops.clear()
        self._bytes = 0
