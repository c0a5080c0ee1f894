"""The metadata of a still, read and edited in place: the EXIF block (a TIFF structure) with its
orientation and GPS location, and the removal of the GPS IFD without moving any other byte; the
signs of a location in an XMP packet; and the PNG text chunks that carry XMP or an EXIF block as
hex (ImageMagick's raw profiles).

The containers themselves, the JPEG segments and the PNG chunks, are walked by
:mod:`server.capture.stills`, which hands their payloads here."""

from __future__ import annotations

import math
import struct
import zlib
from dataclasses import dataclass

__all__ = [
    "EXIF_PREFIX",
    "PNG_RAW_EXIF_KEYWORDS",
    "XMP_EXTENSION_PREFIX",
    "XMP_PREFIX",
    "Location",
    "Tiff",
    "Unparsable",
    "exif_without_gps",
    "png_text",
    "png_text_reveals_location",
    "raw_profile",
    "read_location",
    "read_orientation",
    "xmp_reveals_location",
]

EXIF_PREFIX = b"Exif\x00"
XMP_PREFIX = b"http://ns.adobe.com/xap/1.0/\x00"
XMP_EXTENSION_PREFIX = b"http://ns.adobe.com/xmp/extension/\x00"
#: What in an XMP packet gives a location away (``exif:GPSLatitude`` and friends).
_XMP_GPS_MARKS = (b"exif:GPS", b"GPSLatitude", b"GPSLongitude")
#: PNG text chunks that hold an XMP packet, and those that hold an EXIF block as hex (ImageMagick).
_PNG_XMP_KEYWORDS = frozenset({"xml:com.adobe.xmp", "raw profile type xmp"})
PNG_RAW_EXIF_KEYWORDS = frozenset({"raw profile type exif", "raw profile type app1"})
#: The most a compressed PNG text chunk is inflated to when looking into it.
_MAX_TEXT_BYTES = 8 * 1024 * 1024

_TAG_ORIENTATION = 0x0112
_TAG_EXIF_IFD = 0x8769
_TAG_GPS_IFD = 0x8825
_TAG_INTEROP_IFD = 0xA005
_TAG_THUMBNAIL_OFFSET = 0x0201
_TAG_THUMBNAIL_LENGTH = 0x0202
#: Bytes per value of each TIFF field type.
_TIFF_TYPE_SIZES = {
    1: 1,
    2: 1,
    3: 2,
    4: 4,
    5: 8,
    6: 1,
    7: 1,
    8: 2,
    9: 4,
    10: 8,
    11: 4,
    12: 8,
    13: 4,
}


@dataclass(frozen=True, slots=True)
class Location:
    """Where a photo was taken, as its EXIF GPS data says: signed decimal degrees (south and
    west negative) and metres above sea level (negative below)."""

    latitude: float
    longitude: float
    altitude_m: float | None = None

    def to_json(self) -> dict[str, float | None]:
        """The location as a JSON object."""
        return {
            "latitude": self.latitude,
            "longitude": self.longitude,
            "altitude_m": self.altitude_m,
        }


class Unparsable(Exception):
    """An EXIF block that cannot be read with certainty."""


# -- XMP and PNG text ----------------------------------------------------------------------------


def xmp_reveals_location(packet: bytes) -> bool:
    """Whether an XMP packet (or any bytes that may hold one) gives a location away."""
    return any(mark in packet for mark in _XMP_GPS_MARKS)


def png_text(kind: bytes, body: bytes) -> tuple[str, bytes | None]:
    """A text chunk's keyword and text (None when it cannot be read)."""
    keyword, _, rest = body.partition(b"\x00")
    name = keyword.decode("latin-1")
    if kind == b"tEXt":
        return name, rest
    if kind == b"zTXt":
        return name, _inflate(rest[1:])
    if len(rest) < 2:
        return name, None
    compressed = rest[0] == 1
    _language, _, rest = rest[2:].partition(b"\x00")
    _translated, _, text = rest.partition(b"\x00")
    return name, _inflate(text) if compressed else text


def _inflate(data: bytes) -> bytes | None:
    inflater = zlib.decompressobj()
    try:
        text = inflater.decompress(data, _MAX_TEXT_BYTES)
    except zlib.error:
        return None
    return None if inflater.unconsumed_tail else text


def png_text_reveals_location(keyword: str, text: bytes | None) -> bool:
    """Whether a text chunk gives a location away. One that cannot be read is taken to."""
    name = keyword.lower()
    if "gps" in name:
        return True
    if name in _PNG_XMP_KEYWORDS:
        return text is None or xmp_reveals_location(text)
    if name in PNG_RAW_EXIF_KEYWORDS:
        exif = raw_profile(text) if text is not None else None
        if exif is None:
            return True
        try:
            return bool(Tiff(exif).pointers(_TAG_GPS_IFD))
        except Unparsable:
            return True
    return False


def raw_profile(text: bytes) -> bytes | None:
    """The EXIF block of an ImageMagick raw profile: a name line, a length line, then hex."""
    lines = text.strip().split(b"\n")
    try:
        block = bytes.fromhex(b"".join(lines[2:]).decode("ascii"))
    except (UnicodeDecodeError, ValueError):
        return None
    return block[6:] if block.startswith(EXIF_PREFIX) else block


# -- EXIF (a TIFF structure) ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Entry:
    tag: int
    kind: int
    count: int
    #: Index of the entry in the TIFF block; its value (or the value's offset) is at +8.
    pos: int


class Tiff:
    """An EXIF block read in place: its byte order, its IFDs and their values."""

    __slots__ = ("data", "order")

    def __init__(self, data: bytes) -> None:
        if data[:4] == b"II*\x00":
            self.order = "<"
        elif data[:4] == b"MM\x00*":
            self.order = ">"
        else:
            raise Unparsable
        self.data = data

    def _unpack(self, fmt: str, pos: int) -> tuple[int, ...]:
        try:
            return struct.unpack_from(self.order + fmt, self.data, pos)
        except struct.error:
            raise Unparsable from None

    def first_ifd(self) -> int:
        return self._unpack("I", 4)[0]

    def entries(self, offset: int) -> list[_Entry]:
        (count,) = self._unpack("H", offset)
        if offset < 8 or offset + 2 + 12 * count + 4 > len(self.data):
            raise Unparsable
        found = []
        for pos in range(offset + 2, offset + 2 + 12 * count, 12):
            tag, kind, values = self._unpack("HHI", pos)
            found.append(_Entry(tag, kind, values, pos))
        return found

    def value_range(self, entry: _Entry) -> tuple[int, int]:
        """Where an entry's value lies: in the entry itself when it fits in 4 bytes."""
        size = _TIFF_TYPE_SIZES.get(entry.kind)
        if size is None:
            raise Unparsable
        total = size * entry.count
        if total <= 4:
            return entry.pos + 8, entry.pos + 8 + total
        (offset,) = self._unpack("I", entry.pos + 8)
        if offset + total > len(self.data):
            raise Unparsable
        return offset, offset + total

    def next_ifd(self, offset: int) -> int:
        """The offset of the IFD that follows the one at ``offset`` (0: none)."""
        return self._unpack("I", offset + 2 + 12 * len(self.entries(offset)))[0]

    def pointer(self, entry: _Entry) -> int:
        """The offset of the sub-IFD an entry points at."""
        return self._unpack("I", entry.pos + 8)[0]

    def pointers(self, tag: int, ifd: int | None = None) -> list[int]:
        """The offsets of the sub-IFDs that ``tag`` of an IFD (the first one by default)
        points at."""
        found = self.entries(self.first_ifd() if ifd is None else ifd)
        return [self.pointer(entry) for entry in found if entry.tag == tag]

    def ifd_span(self, offset: int, *, strict: bool) -> list[tuple[int, int]]:
        """The byte ranges an IFD occupies: its table and its values. ``strict``: a value that
        cannot be located makes the block unparsable instead of being passed over."""
        entries = self.entries(offset)
        spans = [(offset, offset + 2 + 12 * len(entries) + 4)]
        for entry in entries:
            try:
                spans.append(self.value_range(entry))
            except Unparsable:
                if strict:
                    raise
        return spans

    def rationals(self, entry: _Entry | None) -> list[float]:
        if entry is None or entry.kind not in (5, 10):
            return []
        start, _ = self.value_range(entry)
        fmt = "II" if entry.kind == 5 else "ii"
        values = []
        for i in range(entry.count):
            numerator, denominator = self._unpack(fmt, start + 8 * i)
            values.append(numerator / denominator if denominator else math.nan)
        return values

    def text(self, entry: _Entry | None) -> str:
        if entry is None or entry.kind not in (1, 2, 7):
            return ""
        start, end = self.value_range(entry)
        return self.data[start:end].split(b"\x00")[0].decode("latin-1").strip()

    def integer(self, entry: _Entry | None) -> int | None:
        if entry is None or entry.count < 1:
            return None
        fmt = {1: "B", 3: "H", 4: "I", 7: "B"}.get(entry.kind)
        if fmt is None:
            return None
        start, _ = self.value_range(entry)
        return self._unpack(fmt, start)[0]


def read_orientation(tiff: Tiff) -> int:
    """The first IFD's orientation, 1 (upright) to 8; 1 when it has none that makes sense."""
    for entry in tiff.entries(tiff.first_ifd()):
        if entry.tag == _TAG_ORIENTATION:
            value = tiff.integer(entry)
            return value if value is not None and 1 <= value <= 8 else 1
    return 1


def read_location(tiff: Tiff) -> Location | None:
    """The GPS IFD's position, or None when it has none that makes sense."""
    pointers = tiff.pointers(_TAG_GPS_IFD)
    if not pointers:
        return None
    fields = {entry.tag: entry for entry in tiff.entries(pointers[0])}
    latitude = _degrees(tiff.rationals(fields.get(2)), tiff.text(fields.get(1)), "N", "S")
    longitude = _degrees(tiff.rationals(fields.get(4)), tiff.text(fields.get(3)), "E", "W")
    if latitude is None or longitude is None or abs(latitude) > 90 or abs(longitude) > 180:
        return None
    altitude: float | None = None
    heights = tiff.rationals(fields.get(6))
    if heights and math.isfinite(heights[0]):
        # GPSAltitudeRef 1: below sea level.
        altitude = -heights[0] if tiff.integer(fields.get(5)) == 1 else heights[0]
    return Location(latitude=latitude, longitude=longitude, altitude_m=altitude)


def _degrees(parts: list[float], ref: str, positive: str, negative: str) -> float | None:
    """Degrees, minutes and seconds with their hemisphere as signed decimal degrees."""
    if not 1 <= len(parts) <= 3 or not all(math.isfinite(p) and p >= 0 for p in parts):
        return None
    value = sum(part / 60.0**i for i, part in enumerate(parts))
    hemisphere = ref.upper()[:1]
    if hemisphere == negative:
        return -value
    # A missing reference is taken as north / east, as most readers do.
    return value if hemisphere in (positive, "") else None


def exif_without_gps(prefix: bytes, block: bytes, *, fallback: bytes = b"") -> bytes:
    """``prefix`` and the EXIF block without its GPS IFD, the same length as before: the GPS
    entry leaves the first IFD and the GPS IFD's bytes are zeroed where they lie, so no other
    value moves (maker notes point into the block by absolute offset). Unchanged when there is
    no GPS IFD; ``fallback`` when the block cannot be read with certainty."""
    try:
        tiff = Tiff(block)
        first = tiff.first_ifd()
        entries = tiff.entries(first)
        gps = [entry for entry in entries if entry.tag == _TAG_GPS_IFD]
        if not gps:
            return prefix + block
        doomed: list[tuple[int, int]] = []
        for entry in gps:
            if entry.kind not in (4, 13) or entry.count != 1:
                raise Unparsable
            doomed.extend(tiff.ifd_span(tiff.pointer(entry), strict=True))
        kept = _kept_spans(tiff, first)
        if any(a < d and c < b for a, b in doomed for c, d in kept):
            raise Unparsable  # the GPS IFD shares bytes with what stays: not ours to zero
    except Unparsable:
        return fallback
    out = bytearray(block)
    for start, end in doomed:
        out[start:end] = bytes(end - start)
    table_end = first + 2 + 12 * len(entries)
    survivors = [block[e.pos : e.pos + 12] for e in entries if e.tag != _TAG_GPS_IFD]
    table = struct.pack(tiff.order + "H", len(survivors)) + b"".join(survivors)
    table += block[table_end : table_end + 4]  # the pointer to the next IFD
    out[first : table_end + 4] = table + bytes(12 * len(gps))
    return prefix + bytes(out)


def _kept_spans(tiff: Tiff, first: int) -> list[tuple[int, int]]:
    """What must survive the GPS IFD's removal: the header, the other IFDs with their values,
    and the thumbnail."""
    kept = [(0, 8), *tiff.ifd_span(first, strict=False)]
    for exif_ifd in tiff.pointers(_TAG_EXIF_IFD, first):
        kept.extend(tiff.ifd_span(exif_ifd, strict=False))
        for interop in tiff.pointers(_TAG_INTEROP_IFD, exif_ifd):
            kept.extend(tiff.ifd_span(interop, strict=False))
    second = tiff.next_ifd(first)
    if second:
        kept.extend(tiff.ifd_span(second, strict=False))
        thumbnail = {entry.tag: tiff.integer(entry) for entry in tiff.entries(second)}
        offset = thumbnail.get(_TAG_THUMBNAIL_OFFSET)
        length = thumbnail.get(_TAG_THUMBNAIL_LENGTH)
        if offset is not None and length is not None:
            kept.append((offset, offset + length))
    return kept
