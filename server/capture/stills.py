"""Intake of a still image: a photo a customer's phone uploads.

:func:`read_still` takes the uploaded bytes and says what they are (JPEG or PNG, by their magic
bytes, never by the name or the header the browser sent), how large, which way up (the EXIF
orientation) and where they were taken (the EXIF GPS location). Without the customer's consent
the location is removed from the bytes that are kept, and nothing else is: the pixels, the other
metadata and every other segment stay byte for byte as they came, so the photo kept is the photo
sent.

The EXIF block is read and edited here, not by Pillow: Pillow warns instead of failing on damaged
EXIF and offers no way to remove one IFD without re-encoding the image, while a location that
must go has to be found and removed with certainty. Pillow only decodes the pixels, from a copy
without the EXIF, to prove the image is whole."""

from __future__ import annotations

import io
import math
import struct
import zlib
from collections.abc import Callable
from dataclasses import dataclass

from PIL import Image

from server.errors import DomainError, DomainErrorCode, InvalidRequest

__all__ = ["ALLOWED_TYPES", "Location", "Still", "jpeg_size", "read_still", "sniff"]

#: The still types taken, with the file extension each is filed under.
ALLOWED_TYPES: dict[str, str] = {"image/jpeg": ".jpg", "image/png": ".png"}

_JPEG_MAGIC = b"\xff\xd8\xff"
_PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
_EXIF_PREFIX = b"Exif\x00"
_XMP_PREFIX = b"http://ns.adobe.com/xap/1.0/\x00"
_XMP_EXTENSION_PREFIX = b"http://ns.adobe.com/xmp/extension/\x00"
#: What in an XMP packet gives a location away (``exif:GPSLatitude`` and friends).
_XMP_GPS_MARKS = (b"exif:GPS", b"GPSLatitude", b"GPSLongitude")
#: PNG text chunks that hold an XMP packet, and those that hold an EXIF block as hex (ImageMagick).
_PNG_XMP_KEYWORDS = frozenset({"xml:com.adobe.xmp", "raw profile type xmp"})
_PNG_RAW_EXIF_KEYWORDS = frozenset({"raw profile type exif", "raw profile type app1"})
#: The most a compressed PNG text chunk is inflated to when looking into it.
_MAX_TEXT_BYTES = 8 * 1024 * 1024

_APP1 = 0xE1
_SOS = 0xDA
_EOI = 0xD9
#: Start-of-frame markers (the ones that carry the image size): C0..CF but DHT, JPG and DAC.
_SOF_MARKERS = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}
#: Markers without a length: TEM and the restart markers.
_STANDALONE_MARKERS = frozenset({0x01, *range(0xD0, 0xD8)})

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

_DAMAGED = "the photo is damaged or cut short: send it again, or take a new one"


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


@dataclass(frozen=True, slots=True)
class Still:
    """A still image as read: the bytes to keep and what they are."""

    #: The bytes to keep: as sent, less the location unless it was to be kept.
    data: bytes
    content_type: str
    extension: str
    #: The size of the stored pixels, before the orientation is applied.
    width: int
    height: int
    #: What the EXIF GPS data said, whether or not it was kept.
    location: Location | None
    #: Whether anything was removed from the bytes sent to keep the location out.
    location_stripped: bool
    #: The EXIF orientation, 1 (upright) to 8; 1 when the photo says none.
    orientation: int


class _Damaged(Exception):
    """The bytes do not have the structure their type promises."""


class _Unparsable(Exception):
    """An EXIF block that cannot be read with certainty."""


def sniff(head: bytes) -> str | None:
    """The content type the first bytes of a file show (``image/jpeg``, ``image/png``), or
    None for anything else."""
    if head.startswith(_JPEG_MAGIC):
        return "image/jpeg"
    if head.startswith(_PNG_MAGIC):
        return "image/png"
    return None


def jpeg_size(data: bytes) -> tuple[int, int]:
    """A JPEG's width and height in pixels, from its frame header alone (nothing is decoded).
    Raises :class:`InvalidRequest` when the header cannot be read."""
    try:
        segments, _ = _jpeg_segments(data, 0)
        return _jpeg_dimensions(data, segments)
    except _Damaged:
        raise InvalidRequest(_DAMAGED, fields=("photo",)) from None


def read_still(data: bytes, *, keep_location: bool, max_pixels: int = 50_000_000) -> Still:
    """Read an uploaded photo: its type (JPEG or PNG), size, orientation and EXIF location,
    and the bytes to keep, which are the bytes sent less any location unless
    ``keep_location``. The image is decoded in full to prove it whole, after its header showed
    it at most ``max_pixels`` pixels.

    Raises :class:`DomainError` (``unsupported_media_type``) for anything but a JPEG or PNG,
    (``too_large``) for too many pixels, and :class:`InvalidRequest` for a damaged or
    truncated image."""
    content_type = sniff(data[:8])
    if content_type is None:
        raise DomainError(
            "the photo is not a JPEG or PNG image: send a photo from the camera or the gallery",
            code=DomainErrorCode.UNSUPPORTED_MEDIA_TYPE,
        )
    is_jpeg = content_type == "image/jpeg"
    try:
        width, height = jpeg_size(data) if is_jpeg else _png_size(data)
        _refuse_too_large(width, height, max_pixels)
        if is_jpeg:
            layout = _read_jpeg(data)
        else:
            layout = _read_png(data)
    except _Damaged:
        raise InvalidRequest(_DAMAGED, fields=("photo",)) from None
    width, height = _decode(layout.pixels_only, "JPEG" if is_jpeg else "PNG", max_pixels)

    location: Location | None = None
    orientation = 1
    if layout.exif is not None:
        try:
            tiff = _Tiff(layout.exif)
            orientation = _orientation(tiff)
            location = _location(tiff)
        except _Unparsable:
            pass
    kept = data if keep_location else layout.without_location()
    return Still(
        data=kept,
        content_type=content_type,
        extension=ALLOWED_TYPES[content_type],
        width=width,
        height=height,
        location=location,
        location_stripped=kept != data,
        orientation=orientation,
    )


def _refuse_too_large(width: int, height: int, max_pixels: int) -> None:
    if width * height > max_pixels:
        raise DomainError(
            f"the photo is {width}×{height} pixels, more than the {max_pixels:,} this service "
            "takes: send a smaller photo (a lower camera resolution, or a screenshot of it)",
            code=DomainErrorCode.TOO_LARGE,
        )


def _decode(pixels_only: bytes, image_format: str, max_pixels: int) -> tuple[int, int]:
    """Decode the image in full (a truncated or corrupt one fails here) and return its size."""
    try:
        if image_format == "PNG":
            # verify() checks every chunk's CRC, which decoding alone does not; it leaves the
            # image unusable, hence the second open.
            with Image.open(io.BytesIO(pixels_only), formats=[image_format]) as image:
                image.verify()
        with Image.open(io.BytesIO(pixels_only), formats=[image_format]) as image:
            # The header was checked already; Pillow's own reading of the size is the one that
            # decides how much it allocates, so it is checked too.
            _refuse_too_large(image.width, image.height, max_pixels)
            image.load()
            return image.size
    except Image.DecompressionBombError:
        raise DomainError(
            "the photo has too many pixels: send a smaller photo (a lower camera resolution)",
            code=DomainErrorCode.TOO_LARGE,
        ) from None
    except (OSError, SyntaxError, ValueError, EOFError, struct.error):
        # Pillow reports broken files as any of these (SyntaxError for a bad PNG chunk).
        raise InvalidRequest(_DAMAGED, fields=("photo",)) from None


@dataclass(frozen=True, slots=True)
class _Layout:
    """What a file's structure gave: its EXIF block, a copy for the decoder without it, and a
    way to produce the file without its location."""

    exif: bytes | None
    pixels_only: bytes
    without_location: Callable[[], bytes]


# -- JPEG -----------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Segment:
    marker: int
    #: Index of the segment's 0xFF marker byte, and one past its last byte.
    start: int
    end: int

    def payload(self, data: bytes | bytearray) -> bytes:
        return bytes(data[self.start + 4 : self.end])


def _jpeg_segments(data: bytes, start: int) -> tuple[list[_Segment], int]:
    """The segments of the JPEG that starts at ``start`` up to its first scan, and the index
    of that scan's SOS marker."""
    segments: list[_Segment] = []
    pos = start + 2
    while True:
        if pos + 1 >= len(data) or data[pos] != 0xFF:
            raise _Damaged
        while data[pos + 1] == 0xFF:  # fill bytes before a marker
            pos += 1
            if pos + 1 >= len(data):
                raise _Damaged
        marker = data[pos + 1]
        if marker == _SOS:
            return segments, pos
        if marker in _STANDALONE_MARKERS:
            pos += 2
            continue
        if marker in (0xD8, _EOI) or pos + 4 > len(data):
            raise _Damaged
        end = pos + 2 + int.from_bytes(data[pos + 2 : pos + 4], "big")
        if end < pos + 4 or end > len(data):
            raise _Damaged
        segments.append(_Segment(marker, pos, end))
        pos = end


def _jpeg_dimensions(data: bytes, segments: list[_Segment]) -> tuple[int, int]:
    for segment in segments:
        if segment.marker in _SOF_MARKERS and segment.end - segment.start >= 9:
            height, width = struct.unpack_from(">HH", data, segment.start + 5)
            if width == 0 or height == 0:
                raise _Damaged
            return width, height
    raise _Damaged


def _jpeg_end(data: bytes, sos: int) -> int:
    """One past the EOI marker that ends the image whose first scan starts at ``sos``: a file
    cut short has none."""
    pos = sos
    while True:
        if pos + 4 > len(data):
            raise _Damaged
        pos += 2 + int.from_bytes(data[pos + 2 : pos + 4], "big")
        # Entropy-coded data: 0xFF is followed by 0x00 (a stuffed byte), a restart marker or
        # more 0xFF fill; anything else is a marker.
        while True:
            found = data.find(b"\xff", pos)
            if found < 0 or found + 1 >= len(data):
                raise _Damaged
            following = data[found + 1]
            if following == 0x00 or following in _STANDALONE_MARKERS:
                pos = found + 2
            elif following == 0xFF:
                pos = found + 1
            else:
                break
        if following == _EOI:
            return found + 2
        if following == 0xD8:
            raise _Damaged
        # Another table or scan of a progressive image, then more entropy-coded data.
        pos = found


def _read_jpeg(data: bytes) -> _Layout:
    segments, sos = _jpeg_segments(data, 0)
    end = _jpeg_end(data, sos)
    exif_segments = [s for s in segments if _is_exif_app1(data, s)]
    exif = exif_segments[0].payload(data)[6:] if exif_segments else None
    pixels_only = data
    if exif_segments:
        pixels_only = _splice(data, dict.fromkeys(exif_segments))
    return _Layout(exif, pixels_only, lambda: _jpeg_without_location(data, segments, end))


def _is_exif_app1(data: bytes | bytearray, segment: _Segment) -> bool:
    return segment.marker == _APP1 and data.startswith(_EXIF_PREFIX, segment.start + 4)


def _xmp_reveals_location(packet: bytes) -> bool:
    return any(mark in packet for mark in _XMP_GPS_MARKS)


def _jpeg_without_location(data: bytes, segments: list[_Segment], end: int) -> bytes:
    """The JPEG with GPS taken out of its EXIF and XMP; every other byte as it was."""
    changes: dict[_Segment, bytes | None] = {}
    extended_xmp: list[_Segment] = []
    for segment in segments:
        if segment.marker != _APP1:
            continue
        payload = segment.payload(data)
        if payload.startswith(_EXIF_PREFIX):
            # An EXIF block that cannot be read with certainty goes as a whole.
            stripped = _exif_without_gps(payload[:6], payload[6:])
            if stripped != payload:
                changes[segment] = stripped or None
        elif payload.startswith(_XMP_PREFIX) and _xmp_reveals_location(payload):
            changes[segment] = None
        elif payload.startswith(_XMP_EXTENSION_PREFIX):
            extended_xmp.append(segment)
    # Extended XMP is one packet split over segments: a mark may straddle two of them.
    if extended_xmp and _xmp_reveals_location(b"".join(s.payload(data) for s in extended_xmp)):
        changes.update(dict.fromkeys(extended_xmp))
    image = _splice(data[:end], changes)
    return image + _trailer_without_location(data[end:])


def _splice(data: bytes, changes: dict[_Segment, bytes | None]) -> bytes:
    """``data`` with each segment in ``changes`` replaced by a new payload, or dropped (None)."""
    pieces: list[bytes] = []
    pos = 0
    for segment in sorted(changes, key=lambda s: s.start):
        pieces.append(data[pos : segment.start])
        payload = changes[segment]
        if payload is not None:
            pieces.append(bytes([0xFF, segment.marker]) + struct.pack(">H", len(payload) + 2))
            pieces.append(payload)
        pos = segment.end
    pieces.append(data[pos:])
    return b"".join(pieces)


def _trailer_without_location(trailer: bytes) -> bytes:
    """What follows the image's EOI, less any location: phones append further JPEGs there
    (the MPO format's second view, previews) with EXIF of their own. Those are edited in place
    without changing their length, since the main image's MPF index points at them by offset."""
    if not trailer or (_EXIF_PREFIX not in trailer and not _xmp_reveals_location(trailer)):
        return trailer
    out = bytearray(trailer)
    start = trailer.find(_JPEG_MAGIC)
    while start >= 0:
        try:
            segments, _ = _jpeg_segments(trailer, start)
        except _Damaged:
            segments = []
        for segment in segments:
            if segment.marker != _APP1:
                continue
            payload = segment.payload(trailer)
            blank = bytes(len(payload))
            if payload.startswith(_EXIF_PREFIX):
                stripped = _exif_without_gps(payload[:6], payload[6:], fallback=blank)
            elif _xmp_reveals_location(payload):
                stripped = blank
            else:
                continue
            out[segment.start + 4 : segment.end] = stripped
        start = trailer.find(_JPEG_MAGIC, start + 3)
    return bytes(out)


# -- PNG ------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Chunk:
    kind: bytes
    start: int
    end: int

    def body(self, data: bytes) -> bytes:
        return data[self.start + 8 : self.end - 4]


def _png_size(data: bytes) -> tuple[int, int]:
    if len(data) < 33 or data[12:16] != b"IHDR":
        raise _Damaged
    width, height = struct.unpack_from(">II", data, 16)
    if width == 0 or height == 0:
        raise _Damaged
    return width, height


def _png_chunks(data: bytes) -> tuple[list[_Chunk], int]:
    """The chunks up to IEND, and the index one past it (a file cut short has no IEND)."""
    chunks: list[_Chunk] = []
    pos = len(_PNG_MAGIC)
    while pos + 12 <= len(data):
        (length,) = struct.unpack_from(">I", data, pos)
        chunk = _Chunk(data[pos + 4 : pos + 8], pos, pos + 12 + length)
        if chunk.end > len(data):
            break
        chunks.append(chunk)
        pos = chunk.end
        if chunk.kind == b"IEND":
            return chunks, pos
    raise _Damaged


def _png_chunk(kind: bytes, body: bytes) -> bytes:
    crc = zlib.crc32(kind + body)
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", crc)


def _read_png(data: bytes) -> _Layout:
    chunks, end = _png_chunks(data)
    exif: bytes | None = None
    for chunk in chunks:
        if chunk.kind == b"eXIf":
            body = chunk.body(data)
            exif = body[6:] if body.startswith(_EXIF_PREFIX) else body
            break
    else:
        for chunk in chunks:
            if chunk.kind in (b"tEXt", b"zTXt", b"iTXt"):
                keyword, text = _png_text(chunk.kind, chunk.body(data))
                if keyword.lower() in _PNG_RAW_EXIF_KEYWORDS and text is not None:
                    exif = _raw_profile(text)
                    break
    pixels_only = b"".join(
        [data[:8], *(data[c.start : c.end] for c in chunks if c.kind != b"eXIf"), data[end:]]
    )
    return _Layout(exif, pixels_only, lambda: _png_without_location(data, chunks, end))


def _png_without_location(data: bytes, chunks: list[_Chunk], end: int) -> bytes:
    """The PNG without GPS in its eXIf chunk and without the text chunks that give a location
    away; every other chunk as it was."""
    pieces = [data[:8]]
    for chunk in chunks:
        raw = data[chunk.start : chunk.end]
        if chunk.kind == b"eXIf":
            body = chunk.body(data)
            prefix = body[:6] if body.startswith(_EXIF_PREFIX) else b""
            stripped = _exif_without_gps(prefix, body[len(prefix) :])
            if not stripped:
                continue
            if stripped != body:
                raw = _png_chunk(b"eXIf", stripped)
        elif chunk.kind in (b"tEXt", b"zTXt", b"iTXt"):
            if _png_text_reveals_location(*_png_text(chunk.kind, chunk.body(data))):
                continue
        pieces.append(raw)
    pieces.append(data[end:])
    return b"".join(pieces)


def _png_text(kind: bytes, body: bytes) -> tuple[str, bytes | None]:
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


def _png_text_reveals_location(keyword: str, text: bytes | None) -> bool:
    """Whether a text chunk gives a location away. One that cannot be read is taken to."""
    name = keyword.lower()
    if "gps" in name:
        return True
    if name in _PNG_XMP_KEYWORDS:
        return text is None or _xmp_reveals_location(text)
    if name in _PNG_RAW_EXIF_KEYWORDS:
        exif = _raw_profile(text) if text is not None else None
        if exif is None:
            return True
        try:
            return bool(_Tiff(exif).pointers(_TAG_GPS_IFD))
        except _Unparsable:
            return True
    return False


def _raw_profile(text: bytes) -> bytes | None:
    """The EXIF block of an ImageMagick raw profile: a name line, a length line, then hex."""
    lines = text.strip().split(b"\n")
    try:
        block = bytes.fromhex(b"".join(lines[2:]).decode("ascii"))
    except (UnicodeDecodeError, ValueError):
        return None
    return block[6:] if block.startswith(_EXIF_PREFIX) else block


# -- EXIF (a TIFF structure) ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Entry:
    tag: int
    kind: int
    count: int
    #: Index of the entry in the TIFF block; its value (or the value's offset) is at +8.
    pos: int


class _Tiff:
    """An EXIF block read in place: its byte order, its IFDs and their values."""

    __slots__ = ("data", "order")

    def __init__(self, data: bytes) -> None:
        if data[:4] == b"II*\x00":
            self.order = "<"
        elif data[:4] == b"MM\x00*":
            self.order = ">"
        else:
            raise _Unparsable
        self.data = data

    def _unpack(self, fmt: str, pos: int) -> tuple[int, ...]:
        try:
            return struct.unpack_from(self.order + fmt, self.data, pos)
        except struct.error:
            raise _Unparsable from None

    def first_ifd(self) -> int:
        return self._unpack("I", 4)[0]

    def entries(self, offset: int) -> list[_Entry]:
        (count,) = self._unpack("H", offset)
        if offset < 8 or offset + 2 + 12 * count + 4 > len(self.data):
            raise _Unparsable
        found = []
        for pos in range(offset + 2, offset + 2 + 12 * count, 12):
            tag, kind, values = self._unpack("HHI", pos)
            found.append(_Entry(tag, kind, values, pos))
        return found

    def value_range(self, entry: _Entry) -> tuple[int, int]:
        """Where an entry's value lies: in the entry itself when it fits in 4 bytes."""
        size = _TIFF_TYPE_SIZES.get(entry.kind)
        if size is None:
            raise _Unparsable
        total = size * entry.count
        if total <= 4:
            return entry.pos + 8, entry.pos + 8 + total
        (offset,) = self._unpack("I", entry.pos + 8)
        if offset + total > len(self.data):
            raise _Unparsable
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
            except _Unparsable:
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


def _orientation(tiff: _Tiff) -> int:
    for entry in tiff.entries(tiff.first_ifd()):
        if entry.tag == _TAG_ORIENTATION:
            value = tiff.integer(entry)
            return value if value is not None and 1 <= value <= 8 else 1
    return 1


def _location(tiff: _Tiff) -> Location | None:
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


def _exif_without_gps(prefix: bytes, block: bytes, *, fallback: bytes = b"") -> bytes:
    """``prefix`` and the EXIF block without its GPS IFD, the same length as before: the GPS
    entry leaves the first IFD and the GPS IFD's bytes are zeroed where they lie, so no other
    value moves (maker notes point into the block by absolute offset). Unchanged when there is
    no GPS IFD; ``fallback`` when the block cannot be read with certainty."""
    try:
        tiff = _Tiff(block)
        first = tiff.first_ifd()
        entries = tiff.entries(first)
        gps = [entry for entry in entries if entry.tag == _TAG_GPS_IFD]
        if not gps:
            return prefix + block
        doomed: list[tuple[int, int]] = []
        for entry in gps:
            if entry.kind not in (4, 13) or entry.count != 1:
                raise _Unparsable
            doomed.extend(tiff.ifd_span(tiff.pointer(entry), strict=True))
        kept = _kept_spans(tiff, first)
        if any(a < d and c < b for a, b in doomed for c, d in kept):
            raise _Unparsable  # the GPS IFD shares bytes with what stays: not ours to zero
    except _Unparsable:
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


def _kept_spans(tiff: _Tiff, first: int) -> list[tuple[int, int]]:
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
