"""What is drawn on evidence images: the stamp on stamped copies, and marked-up frames drawn
from their strokes (and the strokes' wire format)."""

from __future__ import annotations

import io
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pytest
from PIL import Image
from pydantic import ValidationError

from server.capture.drawing import (
    MAX_STROKES,
    Stamp,
    Stroke,
    render_markup,
    stamped_copy,
    stroke_summary,
)
from server.errors import InvalidRequest

GREY = (128, 128, 128)
RED = "#ff0000"
TAKEN = datetime(2026, 12, 3, 15, 4, 5, tzinfo=UTC)


def stamp(**changes: Any) -> Stamp:
    fields: dict[str, Any] = {
        "taken_at": TAKEN,
        "local_tz": "Europe/Berlin",
        "case_id": "c-123",
        "order_id": "4711",
        "tracking_number": "1Z999",
        "unit_id": "U-9",
        "location": (52.52, 13.405),
        "label": "photo · from the camera",
    }
    return Stamp(**{**fields, **changes})


def encoded(image: Image.Image, kind: str = "PNG", **save: Any) -> bytes:
    out = io.BytesIO()
    image.save(out, kind, **save)
    return out.getvalue()


def grey(width: int, height: int, kind: str = "PNG") -> bytes:
    return encoded(Image.new("RGB", (width, height), GREY), kind)


def decoded(data: bytes) -> tuple[str | None, np.ndarray[Any, Any]]:
    with Image.open(io.BytesIO(data)) as image:
        return image.format, np.asarray(image.convert("RGB")).astype(int)


def is_red(pixel: np.ndarray[Any, Any]) -> bool:
    r, g, b = pixel
    return bool(r > 180 and g < 80 and b < 80)


def is_grey(pixel: np.ndarray[Any, Any]) -> bool:
    return bool(np.all(pixel == GREY))


def stroke(tool: str, points: list[tuple[float, float]], **extra: Any) -> Stroke:
    fields = {"id": f"s-{tool}", "tool": tool, "color": RED, "points": points, **extra}
    return Stroke.model_validate(fields)


# -- stamps ---------------------------------------------------------------------------------------


def test_the_stamp_says_when_in_utc_and_local_time_what_and_where() -> None:
    assert stamp().lines() == [
        "2026-12-03 15:04:05 UTC · 16:04:05 CET (Europe/Berlin)",
        "Case c-123 · Order 4711 · Tracking 1Z999 · Unit U-9",
        "Location 52.52000, 13.40500",
        "photo · from the camera",
    ]


def test_missing_references_and_location_are_left_out() -> None:
    lines = stamp(order_id=None, tracking_number="", unit_id=None, location=None).lines()

    assert lines[1:] == ["Case c-123", "photo · from the camera"]


@pytest.mark.parametrize("zone", [None, "UTC", "Not/AZone", "../../etc/passwd", ""])
def test_no_usable_local_zone_prints_utc_alone(zone: str | None) -> None:
    assert stamp(local_tz=zone).lines()[0] == "2026-12-03 15:04:05 UTC"


def test_a_local_time_past_midnight_carries_its_date() -> None:
    late = datetime(2026, 12, 3, 23, 30, tzinfo=UTC)

    assert stamp(taken_at=late, local_tz="Europe/Berlin").lines()[0] == (
        "2026-12-03 23:30:00 UTC · 2026-12-04 00:30:00 CET (Europe/Berlin)"
    )


def test_a_stamp_needs_an_aware_time() -> None:
    with pytest.raises(ValueError, match="time zone"):
        stamp(taken_at=datetime(2026, 12, 3, 15, 4, 5))


def test_a_stamped_copy_is_a_jpeg_darker_along_its_bottom() -> None:
    original = grey(640, 480, "JPEG")

    kind, copy = decoded(stamped_copy(original, stamp()))

    assert kind == "JPEG"
    assert copy.shape == (480, 640, 3)
    _, before = decoded(original)
    assert copy[-8:, :].mean() < before[-8:, :].mean() - 40
    assert abs(copy[:100, :].mean() - before[:100, :].mean()) < 3  # the top is the picture
    band = copy[-120:, :]
    assert (band.min(axis=2) > 200).sum() > 200  # white text on the band


def test_the_stamp_is_upright_on_a_photo_taken_sideways() -> None:
    exif = Image.Exif()
    exif[0x0112] = 6  # stored landscape, shown rotated a quarter turn clockwise
    original = encoded(Image.new("RGB", (640, 480), GREY), "JPEG", exif=exif)

    _, copy = decoded(stamped_copy(original, stamp()))

    assert copy.shape == (640, 480, 3)
    assert copy[-8:, :].mean() < 100  # the band runs along the upright picture's bottom
    assert copy[:8, :].mean() > 110


def test_a_narrow_portrait_photo_wraps_the_stamp_inside_its_width() -> None:
    long = stamp(tracking_number="1Z" + "9" * 40, label="photo · from the gallery, sent unasked")

    _, copy = decoded(stamped_copy(grey(360, 640, "JPEG"), long))

    assert copy.shape == (640, 360, 3)
    bright = copy.min(axis=2) > 200
    rows = np.flatnonzero(bright.any(axis=1))
    assert rows.size and rows.min() > 640 * 0.6  # the stamp covers less than 40% of it
    assert not bright[:, -3:].any()  # no text runs off the right edge


def test_a_tiny_picture_still_gets_its_stamp() -> None:
    _, copy = decoded(stamped_copy(grey(40, 30), stamp()))

    assert copy.shape == (30, 40, 3)


def test_a_transparent_png_is_stamped_on_white() -> None:
    clear = encoded(Image.new("RGBA", (300, 200), (0, 0, 0, 0)))

    _, copy = decoded(stamped_copy(clear, stamp()))

    assert copy[:20, :].min() > 240


def test_a_stamped_copy_of_something_not_an_image_is_refused() -> None:
    with pytest.raises(InvalidRequest):
        stamped_copy(b"not a picture", stamp())


# -- marked-up frames -----------------------------------------------------------------------------


def test_each_tool_lands_where_it_was_placed_and_nothing_else_changes() -> None:
    strokes = [
        stroke("arrow", [(0.1, 0.5), (0.5, 0.5)]),
        stroke("circle", [(0.6, 0.1), (0.9, 0.4)]),
        stroke("freehand", [(0.1, 0.1), (0.2, 0.2), (0.3, 0.1)]),
        stroke("text", [(0.1, 0.8)], text="scratch"),
        stroke("marker", [(0.8, 0.8)], number=7),
    ]

    kind, drawn = decoded(render_markup(grey(800, 600), strokes))

    assert kind == "PNG"
    assert drawn.shape == (600, 800, 3)
    assert is_red(drawn[300, 240])  # the middle of the arrow's shaft
    assert is_red(drawn[150, 480])  # the circle's leftmost point
    assert is_grey(drawn[150, 600])  # ... and its inside
    assert is_red(drawn[90, 120])  # along the freehand line
    text_box = drawn[480:520, 80:250]
    assert sum(is_red(p) for p in text_box.reshape(-1, 3)) > 50
    assert is_red(drawn[480, 640 - 11])  # the marker's disc beside its number
    marker = drawn[470:490, 630:650]
    assert (marker.min(axis=2) > 200).any()  # the white number
    for y, x in [(20, 780), (580, 20), (300, 700), (20, 400)]:
        assert is_grey(drawn[y, x])


def test_an_arrow_has_a_head_wider_than_its_shaft() -> None:
    _, drawn = decoded(render_markup(grey(800, 600), [stroke("arrow", [(0.1, 0.5), (0.5, 0.5)])]))

    # The line is 4 px wide; 12 px short of the tip the head is about 13 px wide.
    assert is_red(drawn[300 - 5, 400 - 12]) and is_red(drawn[300 + 5, 400 - 12])
    assert is_grey(drawn[300 - 5, 200]) and is_grey(drawn[300 + 5, 200])
    assert is_grey(drawn[300, 400 + 3])  # nothing past the tip


def test_strokes_are_drawn_in_order() -> None:
    under = Stroke(id="a", tool="marker", color="#0000ff", points=[(0.5, 0.5)], number=1)
    over = Stroke(id="b", tool="marker", color=RED, points=[(0.5, 0.5)], number=2)

    _, drawn = decoded(render_markup(grey(800, 600), [under, over]))

    assert is_red(drawn[300, 400 - 11])


def test_a_jpeg_frame_is_drawn_on_too() -> None:
    diagonal = stroke("arrow", [(0, 0), (1, 1)])

    kind, drawn = decoded(render_markup(grey(640, 360, "JPEG"), [diagonal]))

    assert kind == "PNG"
    assert is_red(drawn[180, 320])


def test_no_more_than_max_strokes_are_drawn() -> None:
    dots = [stroke("marker", [(0.5, 0.5)], number=1)] * (MAX_STROKES + 1)

    with pytest.raises(InvalidRequest) as raised:
        render_markup(grey(100, 100), dots)

    assert raised.value.fields == ("strokes",)


def test_the_summary_counts_each_tool() -> None:
    strokes = [
        stroke("arrow", [(0, 0), (1, 1)]),
        stroke("arrow", [(0, 1), (1, 0)]),
        stroke("marker", [(0.5, 0.5)], number=4),
    ]

    assert stroke_summary(strokes) == {
        "arrow": 2,
        "circle": 0,
        "freehand": 0,
        "text": 0,
        "marker": 1,
    }


# -- the stroke's wire format ---------------------------------------------------------------------


def test_a_stroke_reads_its_wire_form() -> None:
    parsed = Stroke.model_validate(
        {"id": "s.1:a-b_c", "tool": "text", "color": "#A0b1C2", "points": [[0, 1]], "text": "hi"}
    )

    assert parsed.points == [(0.0, 1.0)]
    assert parsed.by == "agent"
    with pytest.raises(ValidationError):
        parsed.color = "#000000"


@pytest.mark.parametrize(
    ("tool", "points", "extra", "says"),
    [
        ("arrow", [(0.1, 0.1)], {}, "an arrow takes exactly 2 points"),
        ("arrow", [(0.1, 0.1)] * 3, {}, "an arrow takes exactly 2 points"),
        ("circle", [(0.1, 0.1)], {}, "a circle takes exactly 2 points"),
        ("freehand", [(0.1, 0.1)], {}, "a freehand line takes 2 to 2000 points"),
        ("freehand", [(0.1, 0.1)] * 2001, {}, "a freehand line takes 2 to 2000 points"),
        ("text", [(0.1, 0.1)] * 2, {"text": "x"}, "a text takes exactly 1 point"),
        ("text", [(0.1, 0.1)], {}, "a text needs its text"),
        ("text", [(0.1, 0.1)], {"text": "   "}, "a text needs its text"),
        ("marker", [(0.1, 0.1)] * 2, {"number": 1}, "a marker takes exactly 1 point"),
        ("marker", [(0.1, 0.1)], {}, "a marker needs its number"),
    ],
)
def test_each_tool_says_what_it_needs(
    tool: str, points: list[tuple[float, float]], extra: dict[str, Any], says: str
) -> None:
    with pytest.raises(ValidationError, match=says):
        stroke(tool, points, **extra)


@pytest.mark.parametrize(
    "change",
    [
        {"points": [(-0.1, 0.5), (0.5, 0.5)]},
        {"points": [(0.5, 1.1), (0.5, 0.5)]},
        {"points": [(float("nan"), 0.5), (0.5, 0.5)]},
        {"points": [(0.5, 0.5, 0.5), (0.5, 0.5)]},
        {"color": "red"},
        {"color": "#12345"},
        {"color": "#gg0000"},
        {"id": ""},
        {"id": "x" * 65},
        {"id": "has space"},
        {"id": "line\n"},
        {"tool": "laser"},
        {"by": "robot"},
        {"text": "x" * 201},
        {"number": 0},
        {"number": 100},
        {"width": 3},
    ],
)
def test_malformed_strokes_are_refused(change: dict[str, Any]) -> None:
    fields: dict[str, Any] = {"id": "s", "tool": "arrow", "color": RED, "points": [(0, 0), (1, 1)]}

    with pytest.raises(ValidationError):
        Stroke.model_validate({**fields, **change})
