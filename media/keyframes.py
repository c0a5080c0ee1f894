"""What an encoded frame is: its codec, whether it is a keyframe, and its picture size.

Pure functions over the bytes aiortc's depacketizers produce (VP8 frames; H.264 in Annex-B with
start codes; Opus packets), so they are tested without a network.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = [
    "EncodedFrame",
    "codec_of",
    "h264_nal_types",
    "is_keyframe",
    "vp8_size",
]

#: RTP clock rates of the codecs the recorder understands.
CLOCK_RATES = {"vp8": 90_000, "h264": 90_000, "opus": 48_000}

_H264_IDR = 5


@dataclass(frozen=True, slots=True)
class EncodedFrame:
    """One complete encoded frame as the receiver hands it to its decoder.

    ``timestamp`` counts ``clock_rate`` ticks from the track's first frame (aiortc unwraps the
    32-bit RTP timestamp); ``arrival`` is the loop's monotonic time when it was complete.
    """

    kind: str
    codec: str
    data: bytes
    timestamp: int
    clock_rate: int
    keyframe: bool
    arrival: float

    @property
    def seconds(self) -> float:
        return self.timestamp / self.clock_rate


def codec_of(mime_type: str) -> str:
    """``video/VP8`` -> ``vp8``: the lower-case codec name of an RTP mime type."""
    return mime_type.split("/", 1)[-1].lower()


def h264_nal_types(data: bytes) -> list[int]:
    """The NAL unit types of an Annex-B access unit (start codes of 3 or 4 bytes)."""
    types: list[int] = []
    i = data.find(b"\x00\x00\x01")
    while i != -1 and i + 3 < len(data):
        types.append(data[i + 3] & 0x1F)
        i = data.find(b"\x00\x00\x01", i + 3)
    return types


def is_keyframe(codec: str, data: bytes) -> bool:
    """Whether a decoder can start at this frame. Audio frames always can."""
    if codec == "vp8":
        # RFC 6386 9.1: bit 0 of the frame tag is 0 for a key frame.
        return bool(data) and not data[0] & 1
    if codec == "h264":
        return _H264_IDR in h264_nal_types(data)
    return codec in CLOCK_RATES


def vp8_size(data: bytes) -> tuple[int, int] | None:
    """Width and height from a VP8 keyframe header (RFC 6386 9.1), or ``None``."""
    if len(data) < 10 or data[0] & 1 or data[3:6] != b"\x9d\x01\x2a":
        return None
    width = int.from_bytes(data[6:8], "little") & 0x3FFF
    height = int.from_bytes(data[8:10], "little") & 0x3FFF
    return (width, height) if width and height else None


def h264_parameter_sets(data: bytes) -> bytes:
    """The SPS and PPS NAL units of an Annex-B access unit, with 4-byte start codes."""
    out = bytearray()
    starts = []
    i = data.find(b"\x00\x00\x01")
    while i != -1:
        starts.append(i + 3)
        i = data.find(b"\x00\x00\x01", i + 3)
    for n, start in enumerate(starts):
        end = starts[n + 1] - 3 if n + 1 < len(starts) else len(data)
        # A 4-byte start code leaves a zero byte before the next 3-byte one.
        while end > start and data[end - 1] == 0 and n + 1 < len(starts):
            end -= 1
        if data[start] & 0x1F in (7, 8):
            out += b"\x00\x00\x00\x01" + data[start:end]
    return bytes(out)
