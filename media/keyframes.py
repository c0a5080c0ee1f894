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
    "h264_size",
    "h264_sps_size",
    "is_keyframe",
    "received_frame",
    "vp8_size",
    "vp8_temporal_layer",
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
    #: The frame's temporal layer (0 is the base; VP8 ``TID`` of RFC 7741 4.2), or ``None``
    #: when the publisher does not send temporal layers.
    temporal_id: int | None = None
    #: The frame refers to nothing above the base layer since that layer's last base frame
    #: (the ``Y`` bit): a subscriber may start taking its layer here.
    layer_sync: bool = False

    @property
    def seconds(self) -> float:
        return self.timestamp / self.clock_rate


def received_frame(
    kind: str,
    mime_type: str,
    clock_rate: int,
    data: bytes,
    timestamp: int,
    arrival: float,
    head: bytes = b"",
) -> EncodedFrame:
    """A frame as an RTP receiver hands it over (codec by MIME type, keyframe from the bytes,
    temporal layer from ``head``: the start of its first packet's RTP payload)."""
    codec = codec_of(mime_type)
    layer = vp8_temporal_layer(head) if codec == "vp8" and head else None
    return EncodedFrame(
        kind=kind,
        codec=codec,
        data=data,
        timestamp=timestamp,
        clock_rate=clock_rate,
        keyframe=is_keyframe(codec, data),
        arrival=arrival,
        temporal_id=layer[0] if layer is not None else None,
        layer_sync=layer[1] if layer is not None else False,
    )


def vp8_temporal_layer(payload: bytes) -> tuple[int, bool] | None:
    """``(TID, Y)`` from the VP8 payload descriptor at the start of an RTP payload (RFC 7741
    4.2), or ``None`` when it carries no temporal layer index (no ``T`` bit) or is cut short.

    The descriptor: ``X|R|N|S|R|PID``, then when ``X`` is set ``I|L|T|K|RSV``, a picture id of
    one or two bytes (``I``; ``M``, its top bit, says two), ``TL0PICIDX`` (``L``) and
    ``TID(2)|Y|KEYIDX(5)`` (``T`` or ``K``)."""
    if len(payload) < 2 or not payload[0] & 0x80:
        return None
    extension = payload[1]
    if not extension & 0x20:
        return None
    at = 2
    if extension & 0x80:
        if at >= len(payload):
            return None
        at += 2 if payload[at] & 0x80 else 1
    if extension & 0x40:
        at += 1
    if at >= len(payload):
        return None
    return payload[at] >> 6, bool(payload[at] & 0x20)


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


class _Bits:
    """An RBSP bit reader (emulation-prevention bytes already removed)."""

    def __init__(self, data: bytes) -> None:
        self._data = data
        self._pos = 0

    def bit(self) -> int:
        byte = self._data[self._pos >> 3]  # IndexError past the end: caught by the caller
        value = (byte >> (7 - (self._pos & 7))) & 1
        self._pos += 1
        return value

    def bits(self, n: int) -> int:
        value = 0
        for _ in range(n):
            value = value << 1 | self.bit()
        return value

    def ue(self) -> int:
        zeros = 0
        while not self.bit():
            zeros += 1
            if zeros > 31:
                raise ValueError("bad exp-Golomb code")
        return (1 << zeros) - 1 + self.bits(zeros)

    def se(self) -> int:
        value = self.ue()
        return (value + 1) // 2 if value & 1 else -(value // 2)


def _rbsp(nal: bytes) -> bytes:
    return nal.replace(b"\x00\x00\x03", b"\x00\x00")


def _skip_scaling_list(bits: _Bits, size: int) -> None:
    last = next_ = 8
    for _ in range(size):
        if next_:
            next_ = (last + bits.se() + 256) % 256
        last = next_ or last


def h264_sps_size(sps: bytes) -> tuple[int, int] | None:
    """Width and height from an H.264 SPS NAL unit (with its header byte), or ``None``."""
    try:
        bits = _Bits(_rbsp(sps[1:]))
        profile = bits.bits(8)
        bits.bits(16)  # constraint flags, level
        bits.ue()  # sps id
        chroma = 1
        if profile in (100, 110, 122, 244, 44, 83, 86, 118, 128, 138, 139, 134, 135):
            chroma = bits.ue()
            if chroma == 3:
                bits.bit()
            bits.ue()
            bits.ue()
            bits.bit()
            if bits.bit():  # scaling matrix present
                for i in range(8 if chroma != 3 else 12):
                    if bits.bit():
                        _skip_scaling_list(bits, 16 if i < 6 else 64)
        bits.ue()  # log2_max_frame_num
        poc_type = bits.ue()
        if poc_type == 0:
            bits.ue()
        elif poc_type == 1:
            bits.bit()
            bits.se()
            bits.se()
            for _ in range(bits.ue()):
                bits.se()
        bits.ue()  # max_num_ref_frames
        bits.bit()
        width_mbs = bits.ue() + 1
        height_units = bits.ue() + 1
        frame_mbs_only = bits.bit()
        if not frame_mbs_only:
            bits.bit()
        bits.bit()  # direct_8x8_inference
        width, height = width_mbs * 16, height_units * 16 * (2 - frame_mbs_only)
        if bits.bit():  # frame cropping
            left, right, top, bottom = bits.ue(), bits.ue(), bits.ue(), bits.ue()
            sub_w, sub_h = {1: (2, 2), 2: (2, 1)}.get(chroma, (1, 1))
            crop_x, crop_y = sub_w, sub_h * (2 - frame_mbs_only)
            width -= (left + right) * crop_x
            height -= (top + bottom) * crop_y
        return (width, height) if width > 0 and height > 0 else None
    except (IndexError, ValueError):
        return None


def h264_size(data: bytes) -> tuple[int, int] | None:
    """Width and height from the first SPS of an Annex-B access unit, or ``None``."""
    i = data.find(b"\x00\x00\x01")
    while i != -1 and i + 3 < len(data):
        start = i + 3
        end = data.find(b"\x00\x00\x01", start)
        if data[start] & 0x1F == 7:
            return h264_sps_size(data[start : end if end != -1 else len(data)])
        i = end
    return None
