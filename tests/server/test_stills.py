"""Intake of customers' photos: type by magic bytes, size limits before decoding, EXIF location
and orientation read, and the location removed without touching the pixels."""

from __future__ import annotations

import io
import struct
import zlib
from typing import Any

import numpy as np
import pytest
from PIL import ExifTags, Image, ImageFile, PngImagePlugin

from server.capture.stills import ALLOWED_TYPES, Location, jpeg_size, read_still, sniff
from server.errors import DomainError, DomainErrorCode, InvalidRequest

GPS = ExifTags.IFD.GPSInfo
MAKE = 0x010F
ORIENTATION = 0x0112
TAKEN = 0x9003  # DateTimeOriginal, in the Exif sub-IFD
BERLIN = {1: "N", 2: (52.0, 31.0, 12.0), 3: "E", 4: (13.0, 24.0, 18.0), 5: b"\x00", 6: 34.5}
SYDNEY = {1: "S", 2: (33.0, 52.0, 4.8), 3: "W", 4: (151.0, 12.0, 30.0), 5: b"\x01", 6: 3.0}


def picture(width: int = 320, height: int = 240) -> Image.Image:
    # Noise, so that the entropy-coded data is most of a JPEG and cutting it hits the scan.
    rng = np.random.default_rng(7)
    return Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8))


def exif_with(
    gps: dict[int, Any] | None = None,
    *,
    orientation: int | None = None,
    endian: str = ">",
) -> Image.Exif:
    exif = Image.Exif()
    exif.endian = endian
    exif[MAKE] = "TestCam"
    exif.get_ifd(ExifTags.IFD.Exif)[TAKEN] = "2026:12:03 15:04:05"
    if orientation is not None:
        exif[ORIENTATION] = orientation
    if gps is not None:
        exif[GPS] = dict(gps)
    return exif


def jpeg(exif: Image.Exif | bytes | None = None, **save: Any) -> bytes:
    out = io.BytesIO()
    if exif is not None:
        save["exif"] = exif
    picture().save(out, "JPEG", quality=85, **save)
    return out.getvalue()


def png(exif: Image.Exif | None = None, pnginfo: PngImagePlugin.PngInfo | None = None) -> bytes:
    out = io.BytesIO()
    save: dict[str, Any] = {}
    if exif is not None:
        save["exif"] = exif
    if pnginfo is not None:
        save["pnginfo"] = pnginfo
    picture().save(out, "PNG", **save)
    return out.getvalue()


def pixels(data: bytes) -> np.ndarray[Any, Any]:
    with Image.open(io.BytesIO(data)) as image:
        return np.asarray(image.convert("RGB"))


def exif_of(data: bytes) -> Image.Exif:
    with Image.open(io.BytesIO(data)) as image:
        image.load()
        return image.getexif()


def png_chunks(data: bytes) -> list[tuple[bytes, bytes]]:
    chunks, pos = [], 8
    while pos < len(data):
        (length,) = struct.unpack_from(">I", data, pos)
        kind, body = data[pos + 4 : pos + 8], data[pos + 8 : pos + 8 + length]
        (crc,) = struct.unpack_from(">I", data, pos + 8 + length)
        assert crc == zlib.crc32(kind + body), f"bad CRC on {kind!r}"
        chunks.append((kind, body))
        pos += 12 + length
    return chunks


def test_sniff_goes_by_the_magic_bytes() -> None:
    assert sniff(jpeg()[:8]) == "image/jpeg"
    assert sniff(png()[:8]) == "image/png"
    assert sniff(b"GIF89a\x01\x00") is None
    assert sniff(b"") is None
    assert ALLOWED_TYPES == {"image/jpeg": ".jpg", "image/png": ".png"}


def test_a_jpeg_location_is_read_as_signed_decimal_degrees() -> None:
    still = read_still(jpeg(exif_with(BERLIN)), keep_location=True)

    assert still.location is not None
    assert still.location.latitude == pytest.approx(52.52)
    assert still.location.longitude == pytest.approx(13.405)
    assert still.location.altitude_m == pytest.approx(34.5)
    assert (still.content_type, still.extension) == ("image/jpeg", ".jpg")
    assert (still.width, still.height) == (320, 240)


@pytest.mark.parametrize("endian", [">", "<"])
def test_south_and_west_are_negative_and_below_sea_level_too(endian: str) -> None:
    still = read_still(jpeg(exif_with(SYDNEY, endian=endian)), keep_location=True)

    assert still.location is not None
    assert still.location.latitude == pytest.approx(-(33 + 52 / 60 + 4.8 / 3600))
    assert still.location.longitude == pytest.approx(-(151 + 12 / 60 + 30 / 3600))
    assert still.location.altitude_m == pytest.approx(-3.0)
    assert Location(-33.5, -151.25, None).to_json() == {
        "latitude": -33.5,
        "longitude": -151.25,
        "altitude_m": None,
    }


def test_kept_location_leaves_the_photo_byte_identical() -> None:
    data = jpeg(exif_with(BERLIN))

    still = read_still(data, keep_location=True)

    assert still.data == data
    assert not still.location_stripped
    assert still.location is not None


@pytest.mark.parametrize("endian", [">", "<"])
def test_a_jpeg_loses_its_gps_and_nothing_else(endian: str) -> None:
    data = jpeg(exif_with(BERLIN, orientation=6, endian=endian))

    still = read_still(data, keep_location=False)

    assert still.location_stripped
    assert still.location is not None and still.location.latitude == pytest.approx(52.52)
    exif = exif_of(still.data)
    assert GPS not in exif
    assert exif.get_ifd(GPS) == {}
    assert exif[MAKE] == "TestCam"
    assert exif[ORIENTATION] == 6
    assert exif.get_ifd(ExifTags.IFD.Exif)[TAKEN] == "2026:12:03 15:04:05"
    assert read_still(still.data, keep_location=True).location is None
    # Every segment but the EXIF one as it was (from the quantisation tables on), the pixels
    # decode the same, and the EXIF segment kept its length.
    assert len(still.data) == len(data)
    assert still.data[still.data.index(b"\xff\xdb") :] == data[data.index(b"\xff\xdb") :]
    assert np.array_equal(pixels(still.data), pixels(data))


def test_the_gps_values_are_gone_from_the_bytes_not_only_unlinked() -> None:
    # An odd rational no other field has: if it is still in the file, the GPS data is too.
    gps = {**BERLIN, 2: (52.0, 31.0, 12.345678)}
    data = jpeg(exif_with(gps))
    marker = Image.Exif()
    marker[GPS] = {2: (52.0, 31.0, 12.345678)}
    rational = marker.tobytes()[-8:]
    assert rational in data

    still = read_still(data, keep_location=False)

    assert rational not in still.data


def test_a_jpeg_without_exif_passes_unchanged() -> None:
    data = jpeg()

    still = read_still(data, keep_location=False)

    assert still.data == data
    assert not still.location_stripped
    assert still.location is None
    assert still.orientation == 1


def test_exif_without_gps_is_left_alone() -> None:
    data = jpeg(exif_with(orientation=3))

    still = read_still(data, keep_location=False)

    assert still.data == data
    assert not still.location_stripped
    assert still.orientation == 3


def test_a_gps_block_without_a_position_is_still_removed() -> None:
    data = jpeg(exif_with({0: b"\x02\x02\x00\x00", 29: "2026:12:03"}))

    still = read_still(data, keep_location=False)

    assert still.location is None
    assert still.location_stripped
    assert exif_of(still.data).get_ifd(GPS) == {}


def _tiff_pointing_gps_outside() -> bytes:
    # IFD0: Make "Cam" (inline) and a GPS pointer past the end of the block.
    entries = struct.pack(">HHI4s", MAKE, 2, 4, b"Cam\x00")
    entries += struct.pack(">HHII", GPS, 4, 1, 0x00FFFF00)
    return b"MM\x00*" + struct.pack(">I", 8) + struct.pack(">H", 2) + entries + b"\x00" * 4


@pytest.mark.parametrize(
    "block", [b"Exif\x00\x00" + b"XY garbage" * 4, b"Exif\x00\x00" + _tiff_pointing_gps_outside()]
)
def test_exif_that_cannot_be_read_goes_as_a_whole(block: bytes) -> None:
    data = jpeg(block)
    assert block in data

    still = read_still(data, keep_location=False)

    assert still.location_stripped
    assert b"Exif\x00\x00" not in still.data
    assert np.array_equal(pixels(still.data), pixels(data))
    assert read_still(data, keep_location=True).data == data


def test_jpeg_xmp_with_a_location_is_dropped_and_other_xmp_kept() -> None:
    located = b'<x:xmpmeta><rdf:Description exif:GPSLatitude="52,31.2N"/></x:xmpmeta>'
    plain = b'<x:xmpmeta><rdf:Description dc:format="image/jpeg"/></x:xmpmeta>'

    stripped = read_still(jpeg(xmp=located), keep_location=False)
    kept = read_still(jpeg(xmp=plain), keep_location=False)

    assert stripped.location_stripped
    assert b"GPSLatitude" not in stripped.data
    assert b"http://ns.adobe.com/xap/1.0/" not in stripped.data
    assert not kept.location_stripped
    assert plain in kept.data


def test_the_second_view_of_an_mpo_loses_its_gps_too() -> None:
    out = io.BytesIO()
    second = picture(160, 120)
    picture().save(out, "MPO", save_all=True, append_images=[second], exif=exif_with(BERLIN))
    data = out.getvalue()
    with Image.open(io.BytesIO(data)) as image:
        image.seek(1)
        assert image.getexif().get_ifd(GPS)  # the fixture has GPS in both views

    still = read_still(data, keep_location=False)

    assert len(still.data) == len(data)  # the MPF index of the views still holds
    with Image.open(io.BytesIO(still.data)) as image:
        assert image.getexif().get_ifd(GPS) == {}
        image.seek(1)
        assert image.getexif().get_ifd(GPS) == {}
        assert image.getexif()[MAKE] == "TestCam"


def test_a_png_location_is_read_and_removed_with_its_crc_recomputed() -> None:
    data = png(exif_with(SYDNEY, orientation=8))

    still = read_still(data, keep_location=False)

    assert (still.content_type, still.extension) == ("image/png", ".png")
    assert still.location is not None
    assert still.location.latitude == pytest.approx(-33.868, abs=1e-3)
    assert still.orientation == 8
    assert still.location_stripped
    kinds = [kind for kind, _ in png_chunks(still.data)]  # checks every CRC
    assert b"eXIf" in kinds
    exif = exif_of(still.data)
    assert exif.get_ifd(GPS) == {}
    assert (exif[MAKE], exif[ORIENTATION]) == ("TestCam", 8)
    assert np.array_equal(pixels(still.data), pixels(data))
    assert read_still(data, keep_location=True).data == data


def test_png_text_that_gives_the_location_away_is_dropped() -> None:
    info = PngImagePlugin.PngInfo()
    info.add_text("GPSPosition", "52.52 N, 13.405 E")
    info.add_itxt("XML:com.adobe.xmp", '<x:xmpmeta exif:GPSLongitude="13,24.3E"/>', zip=True)
    info.add_text("Comment", "return of order 4711")
    data = png(pnginfo=info)

    still = read_still(data, keep_location=False)

    assert still.location_stripped
    texts = [body for kind, body in png_chunks(still.data) if kind in (b"tEXt", b"iTXt")]
    assert texts == [b"Comment\x00return of order 4711"]
    assert np.array_equal(pixels(still.data), pixels(data))


def test_png_xmp_without_a_location_stays() -> None:
    info = PngImagePlugin.PngInfo()
    info.add_itxt("XML:com.adobe.xmp", '<x:xmpmeta dc:format="image/png"/>')
    data = png(pnginfo=info)

    still = read_still(data, keep_location=False)

    assert still.data == data
    assert not still.location_stripped


def test_orientation_is_read_and_nonsense_taken_as_upright() -> None:
    assert read_still(jpeg(exif_with(orientation=6)), keep_location=True).orientation == 6
    assert read_still(jpeg(exif_with(orientation=9)), keep_location=True).orientation == 1
    assert read_still(png(exif_with(orientation=5)), keep_location=True).orientation == 5


@pytest.mark.parametrize("data", [b"", b"%PDF-1.7 not a photo", b"GIF89a" + b"\x00" * 40])
def test_anything_but_jpeg_or_png_is_an_unsupported_media_type(data: bytes) -> None:
    with pytest.raises(DomainError) as raised:
        read_still(data, keep_location=False)

    assert raised.value.code is DomainErrorCode.UNSUPPORTED_MEDIA_TYPE
    assert "JPEG or PNG" in raised.value.message


@pytest.mark.parametrize("kind", ["jpeg", "png"])
def test_a_photo_cut_in_half_is_damaged(kind: str) -> None:
    data = jpeg(exif_with(BERLIN)) if kind == "jpeg" else png()

    with pytest.raises(InvalidRequest) as raised:
        read_still(data[: len(data) // 2], keep_location=False)

    assert raised.value.message.startswith("the photo is damaged or cut short: ")


def test_a_cut_jpeg_is_damaged_even_where_pillow_would_fill_it_in(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Someone else in the process may have told Pillow to accept truncated files.
    monkeypatch.setattr(ImageFile, "LOAD_TRUNCATED_IMAGES", True)
    data = jpeg()

    with pytest.raises(InvalidRequest):
        read_still(data[: len(data) // 2], keep_location=False)


def test_a_png_with_a_corrupt_chunk_is_damaged() -> None:
    data = bytearray(png())
    data[data.index(b"IDAT") + 40] ^= 0xFF

    with pytest.raises(InvalidRequest):
        read_still(bytes(data), keep_location=False)


def _fail_if_decoded(monkeypatch: pytest.MonkeyPatch) -> None:
    def load(self: ImageFile.ImageFile) -> None:
        raise AssertionError("decoded an image it should have refused from its header")

    monkeypatch.setattr(ImageFile.ImageFile, "load", load)


def test_a_png_claiming_too_many_pixels_is_refused_from_its_header(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    data = bytearray(png())
    data[16:24] = struct.pack(">II", 20_000, 20_000)
    data[29:33] = struct.pack(">I", zlib.crc32(bytes(data[12:29])))
    _fail_if_decoded(monkeypatch)

    with pytest.raises(DomainError) as raised:
        read_still(bytes(data), keep_location=False)

    assert raised.value.code is DomainErrorCode.TOO_LARGE
    assert "20000×20000" in raised.value.message


def test_a_jpeg_claiming_too_many_pixels_is_refused_from_its_header(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    data = bytearray(jpeg())
    sof = data.index(b"\xff\xc0")
    data[sof + 5 : sof + 9] = struct.pack(">HH", 60_000, 60_000)
    _fail_if_decoded(monkeypatch)

    with pytest.raises(DomainError) as raised:
        read_still(bytes(data), keep_location=False)

    assert raised.value.code is DomainErrorCode.TOO_LARGE


def test_the_pixel_limit_is_the_callers() -> None:
    data = jpeg()

    with pytest.raises(DomainError) as raised:
        read_still(data, keep_location=False, max_pixels=320 * 240 - 1)
    assert raised.value.code is DomainErrorCode.TOO_LARGE

    assert read_still(data, keep_location=False, max_pixels=320 * 240).width == 320


def test_jpeg_size_reads_the_frame_header() -> None:
    assert jpeg_size(jpeg()) == (320, 240)
    with pytest.raises(InvalidRequest):
        jpeg_size(b"\xff\xd8\xff\xe0\x00")
