"""Intake of a still image: a photo a customer's phone uploads.

:func:`read_still` takes the uploaded bytes and says what they are (JPEG or PNG, by their magic
bytes, never by the name or the header the browser sent), how large, which way up (the EXIF
orientation) and where they were taken (the EXIF GPS location). Without the customer's consent
the location is removed from the bytes that are kept, and nothing else is: the pixels, the other
metadata and every other segment stay byte for byte as they came, so the photo kept is the photo
sent.

The EXIF block is read and edited by :mod:`server.capture._exif`, not by Pillow: Pillow warns
instead of failing on damaged EXIF and offers no way to remove one IFD without re-encoding the
image, while a location that must go has to be found and removed with certainty. Pillow only
decodes the pixels, from a copy without the EXIF, to prove the image is whole."""

from __future__ import annotations

import io
import struct
import zlib
from collections.abc import Callable
from dataclasses import dataclass

from PIL import Image

from server.capture._exif import (
    EXIF_PREFIX,
    PNG_RAW_EXIF_KEYWORDS,
    XMP_EXTENSION_PREFIX,
    XMP_PREFIX,
    Location,
    Tiff,
    Unparsable,
    exif_without_gps,
    png_text,
    png_text_reveals_location,
    raw_profile,
    read_location,
    read_orientation,
    xmp_reveals_location,
)
from server.errors import DomainError, DomainErrorCode, InvalidRequest

__all__ = ["ALLOWED_TYPES", "Location", "Still", "jpeg_size", "read_still", "sniff"]

#: The still types taken, with the file extension each is filed under.
ALLOWED_TYPES: dict[str, str] = {"image/jpeg": ".jpg", "image/png": ".png"}

_JPEG_MAGIC = b"\xff\xd8\xff"
_PNG_MAGIC = b"\x89PNG\r\n\x1a\n"

_APP1 = 0xE1
_SOS = 0xDA
_EOI = 0xD9
#: Start-of-frame markers (the ones that carry the image size): C0..CF but DHT, JPG and DAC.
_SOF_MARKERS = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}
#: Markers without a length: TEM and the restart markers.
_STANDALONE_MARKERS = frozenset({0x01, *range(0xD0, 0xD8)})

_DAMAGED = "the photo is damaged or cut short: send it again, or take a new one"


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
            tiff = Tiff(layout.exif)
            orientation = read_orientation(tiff)
            location = read_location(tiff)
        except Unparsable:
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
    return segment.marker == _APP1 and data.startswith(EXIF_PREFIX, segment.start + 4)


def _jpeg_without_location(data: bytes, segments: list[_Segment], end: int) -> bytes:
    """The JPEG with GPS taken out of its EXIF and XMP; every other byte as it was."""
    changes: dict[_Segment, bytes | None] = {}
    extended_xmp: list[_Segment] = []
    for segment in segments:
        if segment.marker != _APP1:
            continue
        payload = segment.payload(data)
        if payload.startswith(EXIF_PREFIX):
            # An EXIF block that cannot be read with certainty goes as a whole.
            stripped = exif_without_gps(payload[:6], payload[6:])
            if stripped != payload:
                changes[segment] = stripped or None
        elif payload.startswith(XMP_PREFIX) and xmp_reveals_location(payload):
            changes[segment] = None
        elif payload.startswith(XMP_EXTENSION_PREFIX):
            extended_xmp.append(segment)
    # Extended XMP is one packet split over segments: a mark may straddle two of them.
    if extended_xmp and xmp_reveals_location(b"".join(s.payload(data) for s in extended_xmp)):
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
    if not trailer or (EXIF_PREFIX not in trailer and not xmp_reveals_location(trailer)):
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
            if payload.startswith(EXIF_PREFIX):
                stripped = exif_without_gps(payload[:6], payload[6:], fallback=blank)
            elif xmp_reveals_location(payload):
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
            exif = body[6:] if body.startswith(EXIF_PREFIX) else body
            break
    else:
        for chunk in chunks:
            if chunk.kind in (b"tEXt", b"zTXt", b"iTXt"):
                keyword, text = png_text(chunk.kind, chunk.body(data))
                if keyword.lower() in PNG_RAW_EXIF_KEYWORDS and text is not None:
                    exif = raw_profile(text)
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
            prefix = body[:6] if body.startswith(EXIF_PREFIX) else b""
            stripped = exif_without_gps(prefix, body[len(prefix) :])
            if not stripped:
                continue
            if stripped != body:
                raw = _png_chunk(b"eXIf", stripped)
        elif chunk.kind in (b"tEXt", b"zTXt", b"iTXt"):
            if png_text_reveals_location(*png_text(chunk.kind, chunk.body(data))):
                continue
        pieces.append(raw)
    pieces.append(data[end:])
    return b"".join(pieces)
