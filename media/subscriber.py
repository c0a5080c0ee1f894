"""What a subscriber's sender reads: :class:`SubscriberTrack`, fed encoded frames by a
:class:`~media._fanout.Fanout` (a published :class:`~media.source.TrackSource` or a shared
:class:`~media.transcode.Transcode`), with its own bounded queue, keyframe gate and continuous
timestamps across source changes. See :mod:`media.forwarder` for the whole path."""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

from aiortc import MediaStreamTrack
from aiortc.mediastreams import MediaStreamError
from av.packet import Packet

from ._fanout import Fanout
from .keyframes import EncodedFrame

__all__ = ["DEFAULT_QUEUE", "ForwardingTotals", "SubscriberTrack"]

#: Frames a subscriber may lag before its queue overflows: video half a second at 30 fps (an
#: overflow drops to the next keyframe and asks for one), audio 200 ms of 20 ms frames (oldest
#: dropped: Opus frames stand alone).
DEFAULT_QUEUE = {"audio": 10, "video": 15}

#: "Every layer": forwards whatever temporal layers a source sends.
_ALL_LAYERS = 1 << 8
#: A subscriber leaves the top layer it takes out when its estimate falls below this share of
#: what the layers up to it carry, and takes the next one when its estimate reaches this share
#: of theirs. A receiver's REMB follows what it receives (Chromium's climbs a few percent a
#: second above it while the link has room and drops to about 0.85 of it on congestion), so a
#: link with room hovers at or above 0.9 and a congested one falls under 0.8.
_DOWN_SHARE = 0.8
_UP_SHARE = 0.9
#: How long a subscriber allowed more layers waits for a layer sync before asking for a keyframe.
_UP_WAIT_S = 2.0

#: Gap put between the last frame of one source and the first of the next, in clock ticks.
_SWITCH_GAP = {"video": 3000, "audio": 960}


@dataclass(slots=True)
class ForwardingTotals:
    """Running totals over every subscriber a forwarder ever had (Prometheus counters)."""

    frames: int = 0
    bytes: int = 0
    dropped: int = 0
    keyframe_requests: int = 0


class SubscriberTrack(MediaStreamTrack):
    """What one subscriber's sender reads: ``av.Packet``s of whichever source is attached.

    With no source attached ``recv()`` simply waits, so the sender idles without sending.
    ``codec`` is what the subscriber negotiated (``None`` until known: anything goes).
    """

    def __init__(
        self,
        kind: str,
        subscriber_id: str,
        queue_size: int,
        totals: ForwardingTotals | None = None,
    ) -> None:
        super().__init__()
        self.kind = kind
        self.subscriber_id = subscriber_id
        self._totals = totals if totals is not None else ForwardingTotals()
        self.codec: str | None = None
        self._frames: deque[EncodedFrame] = deque()
        self._queue_size = queue_size
        #: A higher bound while a replayed keyframe group drains (see :meth:`replay`).
        self._burst = 0
        self._wake = asyncio.Event()
        self._source: Fanout | None = None
        self._need_keyframe = kind == "video"
        self._offset = 0
        self._last_out: int | None = None
        self._rebase = True
        #: Frames dropped: overflow (the sender fell behind) or waiting for a keyframe.
        self.dropped = 0
        #: Frames handed to the sender, and their payload bytes.
        self.sent = 0
        self.sent_bytes = 0
        #: Keyframe requests that came from the subscriber's side (RTCP PLI/FIR).
        self.keyframe_requests = 0
        #: What the subscriber's receiver last said it can take (its REMB), in bit/s.
        self.estimate_bps: int | None = None
        #: The highest temporal layer forwarded now, and the one the estimate allows
        #: (:meth:`choose_layer`); frames of higher layers are left out, never counted as
        #: dropped. Going up waits for a frame that allows it (a keyframe or a layer sync).
        self.layer = _ALL_LAYERS
        self.target_layer = _ALL_LAYERS
        #: Frames left out for this subscriber's link (temporal layers above :attr:`layer`).
        self.layer_skipped = 0
        self._up_since: float | None = None
        self._last_estimate: float | None = None

    @property
    def source(self) -> Fanout | None:
        """What currently feeds this subscriber (a source or a transcode), if anything."""
        return self._source

    def request_keyframe(self) -> None:
        """The subscriber lost the picture (its PLI): ask the publisher, through the source."""
        self.keyframe_requests += 1
        self._totals.keyframe_requests += 1
        if self._source is not None:
            self._source.request_keyframe()

    def choose_layer(self, layer_bitrates: Sequence[float]) -> int:
        """Pick the highest temporal layer whose bitrate (``layer_bitrates[n]``: bit/s up to
        layer ``n``, as :meth:`TrackSource.layer_bitrates` gives) this subscriber's estimate
        carries: down when a falling estimate shows congestion under the layers it takes
        (:data:`_DOWN_SHARE`), up when it reaches the next layer's (:data:`_UP_SHARE`), so a
        link at its limit does not flap. The base layer always."""
        if self.estimate_bps is None or len(layer_bitrates) < 2:
            self.target_layer = _ALL_LAYERS
            return self.target_layer
        estimate = float(self.estimate_bps)
        falling = self._last_estimate is not None and estimate < self._last_estimate
        self._last_estimate = estimate
        current = min(self.target_layer, len(layer_bitrates) - 1)
        # Only a falling estimate is congestion: a receiver's first estimates start under
        # what it receives and climb, and leaving layers out then would hold them down.
        while falling and current > 0 and estimate < layer_bitrates[current] * _DOWN_SHARE:
            current -= 1
        while (
            current + 1 < len(layer_bitrates)
            and estimate >= layer_bitrates[current + 1] * _UP_SHARE
        ):
            current += 1
        self.target_layer = _ALL_LAYERS if current == len(layer_bitrates) - 1 else current
        return self.target_layer

    def _admit_layer(self, frame: EncodedFrame) -> bool:
        """Whether a frame of a layered stream goes to this subscriber."""
        layer = frame.temporal_id or 0
        if self.target_layer < self.layer:
            self.layer = self.target_layer  # leaving layers out is safe at any frame
            self._up_since = None
        elif self.target_layer > self.layer:
            if frame.keyframe or (frame.layer_sync and layer > self.layer):
                # A keyframe refers to nothing; a sync frame only to the base layer.
                self.layer = self.target_layer if frame.keyframe else min(self.target_layer, layer)
                self._up_since = None
            elif self._up_since is None:
                self._up_since = frame.arrival
            elif frame.arrival - self._up_since > _UP_WAIT_S and self._source is not None:
                # No layer sync came: a keyframe lets the subscriber take every layer.
                self._up_since = frame.arrival
                self._source.request_keyframe()
        if layer <= self.layer:
            return True
        self.layer_skipped += 1
        return False

    def put(self, frame: EncodedFrame) -> None:
        """One frame from the fan-out feeding this track (see :class:`~media._fanout.Outlet`)."""
        if frame.temporal_id is not None and not self._admit_layer(frame):
            return
        if self._need_keyframe:
            if not frame.keyframe:
                self.dropped += 1
                self._totals.dropped += 1
                return
            self._need_keyframe = False
        if len(self._frames) >= max(self._queue_size, self._burst):
            if self.kind == "video":
                # A gap in a video stream breaks every frame up to the next keyframe.
                self.dropped += len(self._frames) + 1
                self._totals.dropped += len(self._frames) + 1
                self._frames.clear()
                self._need_keyframe = True
                if self._source is not None:
                    self._source.request_keyframe()
                return
            self._frames.popleft()
            self.dropped += 1
            self._totals.dropped += 1
        self._frames.append(frame)
        self._wake.set()

    def replay(self, frames: Sequence[EncodedFrame]) -> None:
        """Start with a cached keyframe group (a source that cannot be asked for a keyframe):
        queued in full, past the queue bound, once."""
        if not self._need_keyframe or not frames or not frames[0].keyframe:
            return
        self._need_keyframe = False
        self._frames.extend(frames)
        self._burst = len(self._frames) + self._queue_size
        self._wake.set()

    def set_source(self, source: Fanout | None) -> None:
        """Called by :meth:`Fanout.attach` / :meth:`Fanout.detach` only."""
        # Frames queued from a previous publisher must not leak into the next one's stream.
        self._frames.clear()
        self._burst = 0
        self._source = source
        self._need_keyframe = self.kind == "video"
        self._rebase = True

    def _packet(self, frame: EncodedFrame) -> Packet[Any]:
        if self._rebase:
            # Continue the subscriber's clock where the previous source left it.
            start = 0 if self._last_out is None else self._last_out + _SWITCH_GAP[self.kind]
            self._offset = start - frame.timestamp
            self._rebase = False
        timestamp = frame.timestamp + self._offset
        if self._last_out is not None and timestamp < self._last_out:
            timestamp = self._last_out  # a publisher's clock never runs back on the wire
        self._last_out = timestamp
        packet = Packet(frame.data)
        packet.pts = timestamp
        packet.time_base = Fraction(1, frame.clock_rate)
        return packet

    async def recv(self) -> Packet[Any]:
        while True:
            if self.readyState != "live":
                raise MediaStreamError
            if self._frames:
                frame = self._frames.popleft()
                if self._burst and len(self._frames) <= self._queue_size:
                    self._burst = 0
                self.sent += 1
                self.sent_bytes += len(frame.data)
                self._totals.frames += 1
                self._totals.bytes += len(frame.data)
                return self._packet(frame)
            self._wake.clear()
            await self._wake.wait()

    def stop(self) -> None:
        if self._source is not None:
            self._source.detach(self)
        super().stop()
        self._wake.set()
