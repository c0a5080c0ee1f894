"""Temporal layers: each VP8 frame's layer read from its RTP payload descriptor, a subscriber
sent only the layers its link carries (down at once, up at a keyframe or a layer sync), the
publisher's aim set so one slow subscriber does not slow the rest, and a sampler that needs
only the base layer leaving the rest undecoded. The premise, that the base layer of a real
Chromium L1T3 stream decodes on its own to the same pictures, is checked with Chromium's own
stream in ``tests/e2e/test_temporal_layers.py``."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

from aiortc.codecs import depayload
from aiortc.rtcrtpparameters import RTCRtpCodecParameters
from aiortc.rtp import RtpPacket

from media._aiortc import HeadedFrame, MarkerJitterBuffer
from media.keyframes import EncodedFrame, received_frame, vp8_temporal_layer
from media.source import TrackSource
from media.subscriber import SubscriberTrack

VP8 = RTCRtpCodecParameters(mimeType="video/VP8", clockRate=90_000, payloadType=96)
#: libvpx's three-layer pattern: layer of frame ``i`` is ``PATTERN[i % 4]``.
PATTERN = (0, 2, 1, 2)


def descriptor(tid: int | None, *, sync: bool = False, start: bool = True) -> bytes:
    """A VP8 payload descriptor (RFC 7741 4.2) with a 15-bit picture id, a TL0PICIDX and,
    unless ``tid`` is None, the T byte."""
    first = 0x80 | (0x10 if start else 0)
    if tid is None:
        return bytes([first, 0xC0, 0x80, 0x01, 0x07])
    return bytes([first, 0xE0, 0x80, 0x01, 0x07, (tid << 6) | (0x20 if sync else 0)])


def test_the_layer_is_read_from_every_shape_of_descriptor() -> None:
    assert vp8_temporal_layer(descriptor(1, sync=True)) == (1, True)
    assert vp8_temporal_layer(descriptor(2)) == (2, False)
    assert vp8_temporal_layer(descriptor(None)) is None
    # One-byte picture id, no TL0PICIDX: X, then I|T, then M=0 picture id, then TID 0.
    assert vp8_temporal_layer(bytes([0x90, 0xA0, 0x05, 0x00])) == (0, False)
    # Only T (no picture id, no TL0PICIDX).
    assert vp8_temporal_layer(bytes([0x90, 0x20, 0xC0])) == (3, False)
    # K without T: KEYIDX only, no layer. No X: no extension at all.
    assert vp8_temporal_layer(bytes([0x90, 0x10, 0x00])) is None
    assert vp8_temporal_layer(bytes([0x10, 0x9D])) is None
    # Cut short where the T byte should be.
    assert vp8_temporal_layer(descriptor(1)[:5]) is None
    assert vp8_temporal_layer(b"") is None and vp8_temporal_layer(b"\x80") is None


def _rtp(seq: int, timestamp: int, payload: bytes, *, marker: bool) -> RtpPacket:
    packet = RtpPacket(payload_type=96, sequence_number=seq, timestamp=timestamp, marker=marker)
    packet.payload = payload
    packet._data = depayload(VP8, payload)  # type: ignore[attr-defined]  # as aiortc's receiver does
    return packet


def test_the_jitter_buffer_keeps_the_first_packets_descriptor_for_the_layer() -> None:
    buffer = MarkerJitterBuffer(capacity=128)
    vp8 = b"\x11\x02\x00" + b"\x00" * 20  # an interframe's first bytes
    # A frame in two packets: only the first has S set; both carry the descriptor.
    first = _rtp(1, 3000, descriptor(1, sync=True) + vp8[:10], marker=False)
    second = _rtp(2, 3000, descriptor(1, sync=True, start=False) + vp8[10:], marker=True)
    assert buffer.add(first)[1] is None
    frame = buffer.add(second)[1]
    assert isinstance(frame, HeadedFrame)
    assert frame.data == vp8  # the descriptors are gone from the frame itself
    encoded = received_frame("video", VP8.mimeType, 90_000, frame.data, 3000, 1.0, frame.head)
    assert (encoded.temporal_id, encoded.layer_sync, encoded.keyframe) == (1, True, False)
    # A frame without the T bit, and H.264 bytes, have no layer.
    plain = received_frame("video", "video/VP8", 90_000, vp8, 0, 0.0, descriptor(None))
    assert plain.temporal_id is None
    h264 = received_frame("video", "video/H264", 90_000, b"\x00\x00\x01\x65", 0, 0.0, b"\xa0")
    assert h264.temporal_id is None


def frames(count: int, *, size: int = 1000, start: float = 0.0) -> Iterator[EncodedFrame]:
    """A layered stream at 15 fps: a keyframe, then libvpx's pattern; layer 1 and 2 frames
    right after a base frame are layer syncs."""
    for i in range(count):
        layer = PATTERN[i % 4]
        yield EncodedFrame(
            kind="video",
            codec="vp8",
            data=(b"\x10" if i == 0 else b"\x11") + b"\x00" * (size - 1),
            timestamp=i * 6000,
            clock_rate=90_000,
            keyframe=i == 0,
            arrival=start + i / 15,
            temporal_id=layer,
            layer_sync=i % 4 == 1 or i % 4 == 2,
        )


def layers_of(track: SubscriberTrack) -> list[int]:
    return [f.temporal_id or 0 for f in track._frames]


class Taps:
    base_layer_only = True

    def push(self, frame: object) -> None:
        pass

    def close(self) -> None:
        pass


class Transcoder:
    def push(self, frame: object) -> None:
        pass

    def close(self) -> None:
        pass


def _source(requests: list[int] | None = None) -> TrackSource:
    async def ask() -> bool:
        if requests is not None:
            requests.append(1)
        return True

    return TrackSource("room", "pub", "video", "t", keyframe_requester=ask, keyframe_interval_s=0)


async def test_a_subscriber_gets_the_layers_its_estimate_carries_and_goes_up_at_a_sync() -> None:
    track = SubscriberTrack("video", "viewer", queue_size=1000)
    # Up to layer 0, 1, 2: 400, 600, 1000 kbit/s.
    rates = [400_000.0, 600_000.0, 1_000_000.0]
    assert track.choose_layer(rates) > 2  # no estimate yet: everything
    track.estimate_bps = 400_000
    assert track.choose_layer(rates) > 2  # a first estimate climbs: it is not congestion
    track.estimate_bps = 1_500_000
    assert track.choose_layer(rates) > 2
    track.estimate_bps = 700_000  # falling, and under 0.8 x 1 Mbit/s
    assert track.choose_layer(rates) == 1
    for frame in frames(8):
        track.put(frame)
    assert layers_of(track) == [0, 1, 0, 1]
    assert track.layer_skipped == 4 and track.dropped == 0  # left out, not lost
    track._frames.clear()

    # A narrower link (a falling estimate): the base layer only, at once, never less.
    track.estimate_bps = 100_000
    assert track.choose_layer(rates) == 0
    for frame in frames(8, start=1.0):
        track.put(frame)
    assert layers_of(track) == [0, 0]
    track._frames.clear()

    # Room again: up a layer once the estimate reaches 0.9 of its rate; at the first sync frame.
    track.estimate_bps = 850_000
    assert track.choose_layer(rates) == 1  # 0.9 x 1 Mbit/s is more than 850 kbit/s
    track.estimate_bps = 820_000
    assert track.choose_layer(rates) == 1  # and layer 1 stays until under 0.8 x 600 kbit/s
    track.estimate_bps = 1_300_000
    assert track.choose_layer(rates) > 2
    stream = list(frames(8, start=2.0))[1:]  # starts at a layer-2 sync frame
    for frame in stream:
        track.put(frame)
    assert layers_of(track) == [2, 1, 2, 0, 2, 1, 2]


async def test_going_up_without_a_sync_asks_for_a_keyframe_after_a_while() -> None:
    requests: list[int] = []
    source = _source(requests)
    track = SubscriberTrack("video", "viewer", queue_size=1000)
    source.attach(track)
    for rate in (2_000_000, 100_000):
        track.estimate_bps = rate
        track.choose_layer([400_000.0, 1_000_000.0])
    assert track.target_layer == 0
    for frame in frames(4):
        source.push(frame)
    await _settle()
    requests.clear()  # the subscriber's first keyframe
    track.estimate_bps = 5_000_000
    track.choose_layer([400_000.0, 1_000_000.0])
    # Frames without syncs (as a publisher that never sets Y would send): 1.9 s, then 4 s.
    unsynced = [
        EncodedFrame(**{**_fields(frame), "layer_sync": False, "keyframe": False})
        for frame in list(frames(90, start=1.0))[1:]
    ]
    for frame in unsynced[:28]:
        source.push(frame)
    await _settle()
    assert not requests and track.layer == 0
    for frame in unsynced[28:]:
        source.push(frame)
    await _settle()
    assert requests, "no keyframe was asked for"
    assert track.layer == 0  # still the base layer until that keyframe comes
    source.end()


def _fields(frame: EncodedFrame) -> dict[str, object]:
    return {name: getattr(frame, name) for name in EncodedFrame.__slots__}


async def _settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


async def test_one_slow_subscriber_does_not_slow_the_publisher_for_the_rest() -> None:
    source = _source()
    fast = SubscriberTrack("video", "fast", queue_size=1000)
    slow = SubscriberTrack("video", "slow", queue_size=1000)
    source.attach(fast)
    source.attach(slow)
    for frame in frames(30):
        source.push(frame)
    assert source.temporal_layers == 3
    rates = source.layer_bitrates()
    assert len(rates) == 3 and rates[0] < rates[1] < rates[2]
    slow.estimate_bps = int(rates[2])
    slow.choose_layer(rates)
    # The slow link congests: its estimate falls to just over the base layer's rate.
    fast.estimate_bps, slow.estimate_bps = 2 * int(rates[2]), int(rates[0] * 1.1)
    # Without layers the aim would be the slow one's estimate; with them it is the lowest
    # estimate over the base layer's share, capped by the highest.
    aim = source.subscriber_estimate()
    assert aim is not None and slow.estimate_bps < aim <= fast.estimate_bps
    assert aim == int(min(fast.estimate_bps, slow.estimate_bps / max(0.4, rates[0] / rates[2])))
    fast.choose_layer(rates)
    slow.choose_layer(rates)
    fast._frames.clear()
    slow._frames.clear()
    for frame in frames(12, start=3.0):
        source.push(EncodedFrame(**{**_fields(frame), "keyframe": False}))
    assert layers_of(fast) == [PATTERN[i % 4] for i in range(12)]
    assert layers_of(slow) == [0, 0, 0]
    source.end()


async def test_an_unlayered_source_aims_at_the_lowest_estimate() -> None:
    source = _source()
    a, b = SubscriberTrack("video", "a", 100), SubscriberTrack("video", "b", 100)
    source.attach(a)
    source.attach(b)
    for frame in frames(10):
        source.push(EncodedFrame(**{**_fields(frame), "temporal_id": None}))
    a.estimate_bps, b.estimate_bps = 300_000, 2_000_000
    assert source.temporal_layers == 1
    assert source.subscriber_estimate() == 300_000
    assert a.choose_layer(source.layer_bitrates()) > 2


async def test_only_a_base_layer_tap_leaves_the_upper_layers_undecoded() -> None:
    source = _source()
    source.add_frame_tap(Taps())
    decoded = [source.push(frame) for frame in frames(16)]
    assert decoded == [PATTERN[i % 4] == 0 for i in range(16)]
    # A transcode needs every frame.
    source.add_frame_tap(Transcoder())
    assert [source.push(f) for f in list(frames(8, start=2.0))[1:]] == [True] * 7
