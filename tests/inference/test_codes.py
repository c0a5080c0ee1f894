from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import zxingcpp

from inference import ReadCode, match_codes, read_codes

CASES = [
    ("QRCode", "https://ret.example/u/UNIT-0042", 4),
    ("DataMatrix", "UNIT-0042", 6),
    ("Code128", "1Z999AA10123456784", 3),
    ("EAN13", "5901234123457", 3),
    ("Code39", "RMA-7788", 3),
]


def render(fmt: str, text: str, scale: int) -> np.ndarray[Any, Any]:
    barcode = zxingcpp.create_barcode(text, getattr(zxingcpp.BarcodeFormat, fmt))
    grey = np.asarray(barcode.to_image(scale=scale))
    return np.repeat(grey[..., None], 3, axis=2)


def paste(code: np.ndarray[Any, Any], h: int = 720, w: int = 1280) -> np.ndarray[Any, Any]:
    rng = np.random.default_rng(7)
    canvas = rng.integers(40, 220, (h, w, 3), dtype=np.uint8)
    ch, cw = code.shape[:2]
    y, x = (h - ch) // 3, (w - cw) // 4
    canvas[y : y + ch, x : x + cw] = code
    return canvas


@pytest.mark.parametrize(("fmt", "text", "scale"), CASES)
def test_generated_codes_read_back(fmt: str, text: str, scale: int) -> None:
    codes = read_codes(render(fmt, text, scale))
    assert [(c.format, c.text) for c in codes] == [(fmt, text)]


@pytest.mark.parametrize(("fmt", "text", "scale"), CASES)
def test_codes_read_inside_a_larger_noisy_frame(fmt: str, text: str, scale: int) -> None:
    frame = paste(render(fmt, text, scale))
    codes = read_codes(frame)
    assert [(c.format, c.text) for c in codes] == [(fmt, text)]
    xs = [p[0] for p in codes[0].position]
    assert min(xs) >= (1280 - render(fmt, text, scale).shape[1]) // 4  # full-frame coordinates


def test_small_code_found_by_the_full_resolution_pass() -> None:
    frame = paste(render("QRCode", "ORD-991", 2), 1080, 1920)
    assert [c.text for c in read_codes(frame)] == ["ORD-991"]


def test_nothing_in_a_plain_frame() -> None:
    assert read_codes(np.full((480, 640, 3), 128, np.uint8)) == []


def code(text: str) -> ReadCode:
    return ReadCode("Code128", text, ((0, 0), (1, 0), (1, 1), (0, 1)))


def test_matching_ignores_case_spaces_and_hyphens() -> None:
    refs = {"order_id": "ord 12345", "tracking_number": "1Z999AA1-0123456784", "unit_id": ""}
    matches = match_codes([code("ORD-12345"), code("1z999aa10123456784"), code("X")], refs)
    assert [(m.ref, m.exact) for m in matches] == [("order_id", True), ("tracking_number", True)]


def test_matching_by_containment_needs_a_real_reference() -> None:
    refs = {"tracking_number": "JD014600006281", "unit_id": "42"}
    matches = match_codes([code("(00)JD014600006281XX"), code("A42B")], refs)
    assert [(m.ref, m.value, m.exact) for m in matches] == [
        ("tracking_number", "JD014600006281", False)
    ]
    assert match_codes([code("42")], refs)[0].ref == "unit_id"  # short refs still match exactly
