"""The pre-roll ring buffer and keyframe detection, without a network."""

from __future__ import annotations

import pytest

from media.keyframes import EncodedFrame, h264_parameter_sets, is_keyframe, vp8_size
from media.preroll import PrerollBuffer

KEY = b"\x50\x02\x00\x9d\x01\x2a\x40\x01\xf0\x00"  # VP8 keyframe header, 320x240


def frame(t: float, key: bool, size: int = 100) -> EncodedFrame:
    data = KEY + bytes(size) if key else b"\x31" + bytes(size)
    return EncodedFrame("video", "vp8", data, round(t * 90_000), 90_000, key, arrival=t)


def test_keyframe_detection_and_vp8_size() -> None:
    assert is_keyframe("vp8", KEY) and not is_keyframe("vp8", b"\x31\x00")
    assert vp8_size(KEY) == (320, 240) and vp8_size(b"\x31" + KEY[1:]) is None
    sps, pps, idr, slice_ = b"\x67\x42\x00\x1f", b"\x68\xce", b"\x65\x88", b"\x41\x9a"
    access_unit = b"\x00\x00\x00\x01" + sps + b"\x00\x00\x00\x01" + pps + b"\x00\x00\x01" + idr
    assert is_keyframe("h264", access_unit)
    assert not is_keyframe("h264", b"\x00\x00\x00\x01" + slice_)
    assert h264_parameter_sets(access_unit) == b"\x00\x00\x00\x01" + sps + b"\x00\x00\x00\x01" + pps
    assert is_keyframe("opus", b"\xfc")


def test_keeps_newest_keyframe_at_least_n_seconds_back() -> None:
    buffer = PrerollBuffer(3.0)
    buffer.push(frame(0.0, False))  # nothing to start from yet
    assert len(buffer) == 0 and buffer.dropped == 1
    for i in range(150):  # 10 s at 15 fps, a keyframe every 2 s
        buffer.push(frame(i / 15, i % 30 == 0))
    frames = buffer.last()
    assert frames[0].keyframe
    newest = frames[-1].seconds
    # Starts at the keyframe at 6.0 s: >= 3 s back from 9.93 s, and the next (8.0) is not.
    assert frames[0].seconds == pytest.approx(6.0)
    assert newest - frames[0].seconds >= 3.0
    assert buffer.last(1.0)[0].seconds == pytest.approx(8.0)
    assert buffer.last(20.0)[0].seconds == pytest.approx(6.0)  # all there is
    assert buffer.since(7.0)[0].seconds == pytest.approx(6.0)


def test_byte_cap_drops_whole_groups() -> None:
    buffer = PrerollBuffer(100.0, max_bytes=10_000)
    for i in range(300):
        buffer.push(frame(i / 15, i % 30 == 0, size=200))
    assert buffer.bytes <= 10_000
    assert buffer.last()[0].keyframe and buffer.dropped > 0
    # A group bigger than the cap is dropped whole: nothing undecodable is kept.
    small = PrerollBuffer(100.0, max_bytes=1_000)
    for i in range(20):
        small.push(frame(i / 15, i == 0, size=200))
    assert small.last() == [] or small.last()[0].keyframe
