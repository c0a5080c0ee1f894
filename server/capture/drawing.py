"""What is drawn on evidence images: the stamp on the stamped copy of a still, and the marks an
agent or a customer drew on a frozen frame.

A stamped copy is what a person reads without the record at hand: the time (UTC and the
merchant's), the case, order, tracking number and unit, and what the picture is, printed across
its bottom. A marked-up frame is the frame with its strokes drawn where they were placed; the
strokes travel normalised to the frame (0..1 from the top-left corner), so the drawing matches
what each screen showed whatever its size."""

from __future__ import annotations

import functools
import io
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Protocol
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from PIL import Image, ImageDraw, ImageFont, ImageOps, UnidentifiedImageError

from server.errors import InvalidRequest
from signaling import MAX_STROKES, Stroke

__all__ = [
    "MAX_STROKES",
    "TOOLS",
    "Stamp",
    "Stroke",
    "StrokeLike",
    "render_markup",
    "stamped_copy",
    "stroke_summary",
]

#: The drawing tools, in the order a summary lists them.
TOOLS: tuple[str, ...] = ("arrow", "circle", "freehand", "text", "marker")

_DEJAVU_PATH = "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf"
#: Stamp text as a share of the picture's shorter side, and the sizes it may not go below (the
#: second only when a narrow picture leaves no other way to fit the stamp).
_STAMP_TEXT_SHARE = 0.022
_STAMP_MIN_PX = 12
_STAMP_FLOOR_PX = 6
#: The most of the picture's height the stamp may cover before its text is made smaller.
_STAMP_MAX_SHARE = 0.4
_BAND_RGBA = (0, 0, 0, 165)
_WHITE = (255, 255, 255)
_OUTLINE = (16, 16, 16)

_Font = ImageFont.FreeTypeFont | ImageFont.ImageFont
_RGB = tuple[int, int, int]


# -- stamped copies -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Stamp:
    """What a stamped copy says about its picture."""

    #: When the picture was taken (time-zone aware).
    taken_at: datetime
    #: The merchant's IANA time zone, printed beside UTC; None, ``UTC`` or an unknown name
    #: print UTC alone.
    local_tz: str | None
    case_id: str
    order_id: str | None
    tracking_number: str | None
    unit_id: str | None
    #: Latitude and longitude in decimal degrees.
    location: tuple[float, float] | None
    #: What the picture is: ``photo · from the camera``, ``snapshot``, ``marked-up frame``.
    label: str

    def __post_init__(self) -> None:
        if self.taken_at.utcoffset() is None:
            raise ValueError("a stamp's taken_at needs its time zone")

    def lines(self) -> list[str]:
        """The stamp's text, one line each: the time, the references, the location, the label."""
        refs = [("Case", self.case_id), ("Order", self.order_id)]
        refs += [("Tracking", self.tracking_number), ("Unit", self.unit_id)]
        lines = [self._when(), " · ".join(f"{name} {value}" for name, value in refs if value)]
        if self.location is not None:
            latitude, longitude = self.location
            lines.append(f"Location {latitude:.5f}, {longitude:.5f}")
        if self.label:
            lines.append(self.label)
        return lines

    def _when(self) -> str:
        utc = self.taken_at.astimezone(UTC)
        text = f"{utc:%Y-%m-%d %H:%M:%S} UTC"
        zone = _zone(self.local_tz)
        if zone is None:
            return text
        local = self.taken_at.astimezone(zone)
        if local.utcoffset() == timedelta(0) and local.tzname() == "UTC":
            return text
        # Past midnight on one side only, the local time needs its own date to be read right.
        day = "" if local.date() == utc.date() else f"{local:%Y-%m-%d} "
        return f"{text} · {day}{local:%H:%M:%S} {local.tzname()} ({self.local_tz})"


def _zone(name: str | None) -> ZoneInfo | None:
    if not name:
        return None
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        # A misconfigured zone must not keep evidence from being filed: UTC alone is printed.
        return None


def stamped_copy(data: bytes, stamp: Stamp, *, quality: int = 90) -> bytes:
    """A JPEG copy of a still (JPEG or PNG bytes), upright, with the stamp's lines in white on
    a dark band across its bottom. The text scales with the picture and wraps, or shrinks, to
    stay on it."""
    image = _open_upright(data)
    width, height = image.size
    font, lines, line_height = _fit_stamp(stamp.lines(), width, height)
    margin = max(2, round(line_height * 0.5))
    band_height = min(height, len(lines) * line_height + 2 * margin)
    top = height - band_height
    band = image.crop((0, top, width, height)).convert("RGBA")
    shade = Image.new("RGBA", band.size, _BAND_RGBA)
    image.paste(Image.alpha_composite(band, shade).convert("RGB"), (0, top))
    draw = ImageDraw.Draw(image)
    for i, line in enumerate(lines):
        draw.text((margin, top + margin + i * line_height), line, font=font, fill=_WHITE)
    out = io.BytesIO()
    icc = image.info.get("icc_profile")
    # No EXIF goes with the copy: it is upright already, and it must not carry a location.
    if icc:
        image.save(out, "JPEG", quality=quality, icc_profile=icc)
    else:
        image.save(out, "JPEG", quality=quality)
    return out.getvalue()


def _fit_stamp(lines: list[str], width: int, height: int) -> tuple[_Font, list[str], int]:
    """The font, the wrapped lines and the line height that fit the stamp on the picture."""
    size = max(_STAMP_MIN_PX, round(_STAMP_TEXT_SHARE * min(width, height)))
    while True:
        font = _font(size)
        line_height = round(size * 1.3)
        margin = max(2, round(line_height * 0.5))
        room = max(1, width - 2 * margin)
        wrapped = [part for line in lines for part in _wrap(_printable(line), font, room)]
        fits = len(wrapped) * line_height + 2 * margin <= _STAMP_MAX_SHARE * height
        if fits or size <= _STAMP_FLOOR_PX:
            return font, wrapped, line_height
        size = max(_STAMP_FLOOR_PX, math.floor(size * 0.85))


def _wrap(
    text: str, font: _Font, room: int, separators: tuple[str, ...] = (" · ", " ")
) -> list[str]:
    """``text`` in lines at most ``room`` pixels wide, broken between its parts (``Order
    4711``, ``Tracking 1Z999``) first, then between words, and a word wider than the room
    between its characters."""
    if font.getlength(text) <= room:
        return [text]
    if not separators:
        return _break_characters(text, font, room)
    separator, finer = separators[0], separators[1:]
    lines: list[str] = []
    current = ""
    for part in text.split(separator):
        candidate = f"{current}{separator}{part}" if current else part
        if font.getlength(candidate) <= room:
            current = candidate
            continue
        if current:
            lines.append(current)
        *full, current = _wrap(part, font, room, finer)
        lines.extend(full)
    if current:
        lines.append(current)
    return lines


def _break_characters(word: str, font: _Font, room: int) -> list[str]:
    lines: list[str] = []
    current = ""
    for char in word:
        if current and font.getlength(current + char) > room:
            lines.append(current)
            current = ""
        current += char
    return [*lines, current]


def _printable(text: str) -> str:
    # Order ids and tracking numbers come from outside: a control character would draw as a box.
    return "".join(char if char.isprintable() else " " for char in text)


@functools.cache
def _font_source() -> str | None:
    """The DejaVu Sans file Pillow finds, if any (looking is slow: it walks the font folders)."""
    for source in ("DejaVuSans.ttf", _DEJAVU_PATH):
        try:
            ImageFont.truetype(source, 12)
        except OSError:
            continue
        return source
    return None


def _font(size: int) -> _Font:
    source = _font_source()
    if source is not None:
        return ImageFont.truetype(source, size)
    return ImageFont.load_default(size)


def _open_upright(data: bytes) -> Image.Image:
    """The picture decoded, turned upright by its EXIF orientation, in RGB (any transparency
    flattened onto white)."""
    try:
        with Image.open(io.BytesIO(data), formats=["JPEG", "PNG"]) as image:
            upright = ImageOps.exif_transpose(image)
    except UnidentifiedImageError:
        raise InvalidRequest(
            "the picture is not a JPEG or PNG image: send a photo or take a snapshot",
            fields=("image",),
        ) from None
    if upright.mode in ("RGBA", "LA", "PA") or "transparency" in upright.info:
        rgba = upright.convert("RGBA")
        flat = Image.new("RGBA", rgba.size, (*_WHITE, 255))
        flat.alpha_composite(rgba)
        upright = flat
    rgb = upright.convert("RGB")
    if "icc_profile" in upright.info:
        rgb.info["icc_profile"] = upright.info["icc_profile"]
    return rgb


# -- marked-up frames -----------------------------------------------------------------------------

# The wire format of a stroke, and the bound of a frame's strokes, are signaling's.


class StrokeLike(Protocol):
    """What drawing a stroke reads (:class:`signaling.Stroke` fits it)."""

    @property
    def tool(self) -> str: ...
    @property
    def color(self) -> str: ...
    @property
    def points(self) -> Sequence[tuple[float, float]]: ...
    @property
    def text(self) -> str | None: ...
    @property
    def number(self) -> int | None: ...


def stroke_summary(strokes: Iterable[StrokeLike]) -> dict[str, int]:
    """How many strokes of each tool there are, every tool listed (0 when unused)."""
    counts = dict.fromkeys(TOOLS, 0)
    for stroke in strokes:
        counts[stroke.tool] = counts.get(stroke.tool, 0) + 1
    return counts


def render_markup(data: bytes, strokes: Sequence[StrokeLike]) -> bytes:
    """The frame (JPEG or PNG bytes) with the strokes drawn on it in order, as a PNG (lossless,
    so the drawing is exactly what was drawn)."""
    if len(strokes) > MAX_STROKES:
        raise InvalidRequest(
            f"a frame takes at most {MAX_STROKES} strokes: clear some and try again",
            fields=("strokes",),
        )
    image = _open_upright(data)
    pen = _Pen(ImageDraw.Draw(image), *image.size)
    for stroke in strokes:
        pen.draw(stroke)
    out = io.BytesIO()
    image.save(out, "PNG")
    return out.getvalue()


class _Pen:
    """Draws strokes on one image, sized to it."""

    def __init__(self, draw: ImageDraw.ImageDraw, width: int, height: int) -> None:
        self._draw = draw
        self._width = width
        self._height = height
        short = min(width, height)
        self._short = short
        self._line = max(2, round(0.006 * short))

    def _at(self, point: tuple[float, float]) -> tuple[float, float]:
        return point[0] * self._width, point[1] * self._height

    def draw(self, stroke: StrokeLike) -> None:
        color = _rgb(stroke.color)
        points = [self._at(point) for point in stroke.points]
        if stroke.tool == "arrow":
            self._arrow(points[0], points[1], color)
        elif stroke.tool == "circle":
            (x0, y0), (x1, y1) = points[0], points[1]
            box = (min(x0, x1), min(y0, y1), max(x0, x1), max(y0, y1))
            self._draw.ellipse(box, outline=color, width=self._line)
        elif stroke.tool == "freehand":
            self._draw.line(points, fill=color, width=self._line, joint="curve")
            for x, y in (points[0], points[-1]):  # round ends, as the pages draw them
                self._dot(x, y, self._line / 2, color)
        elif stroke.tool == "text":
            self._text(points[0], stroke.text or "", color)
        elif stroke.tool == "marker":
            self._marker(points[0], stroke.number or 0, color)
        else:
            raise ValueError(f"unknown drawing tool {stroke.tool!r}")

    def _dot(self, x: float, y: float, radius: float, color: _RGB) -> None:
        self._draw.ellipse((x - radius, y - radius, x + radius, y + radius), fill=color)

    def _arrow(self, tail: tuple[float, float], head: tuple[float, float], color: _RGB) -> None:
        dx, dy = head[0] - tail[0], head[1] - tail[1]
        length = math.hypot(dx, dy)
        if length < 1:
            self._dot(head[0], head[1], self._line, color)
            return
        ux, uy = dx / length, dy / length
        # The head is sized to the line, and never longer than the arrow itself.
        head_length = min(length, max(4.0 * self._line, 0.025 * self._short))
        half_width = head_length * 0.55
        base = (head[0] - ux * head_length, head[1] - uy * head_length)
        # The shaft stops at the head's base: its square end would blunt the tip.
        self._draw.line([tail, base], fill=color, width=self._line)
        left = (base[0] - uy * half_width, base[1] + ux * half_width)
        right = (base[0] + uy * half_width, base[1] - ux * half_width)
        self._draw.polygon([head, left, right], fill=color)

    def _text(self, anchor: tuple[float, float], text: str, color: _RGB) -> None:
        size = max(12, round(0.03 * self._short))
        self._draw.text(
            anchor,
            _printable_multiline(text),
            font=_font(size),
            fill=color,
            anchor="la",
            # A dark outline keeps the text legible on light and dark parts of the frame alike.
            stroke_width=max(1, round(size / 12)),
            stroke_fill=_OUTLINE,
        )

    def _marker(self, centre: tuple[float, float], number: int, color: _RGB) -> None:
        radius = max(6, round(0.025 * self._short))
        self._dot(centre[0], centre[1], radius, color)
        label = str(number)
        size = max(6, round(radius * (1.1 if len(label) == 1 else 0.85)))
        self._draw.text(centre, label, font=_font(size), fill=_WHITE, anchor="mm")


def _printable_multiline(text: str) -> str:
    return "\n".join(_printable(line) for line in text.split("\n"))


def _rgb(color: str) -> _RGB:
    return int(color[1:3], 16), int(color[3:5], 16), int(color[5:7], 16)
