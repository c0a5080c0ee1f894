"""Barcodes and QR codes in a frame (zxing-cpp), and matching them to a case's references.

A read code links the session to its order, parcel or unit: an RMA label's Code128, a carrier's
tracking barcode, a per-unit QR or DataMatrix, the product's EAN.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np
import zxingcpp

__all__ = [
    "CODE_FORMATS",
    "CodeMatch",
    "ReadCode",
    "match_codes",
    "normalise_code",
    "read_codes",
]

logger = logging.getLogger(__name__)

#: Formats looked for (restricting the set makes reading faster and avoids false positives
#: from exotic symbologies on textured surfaces).
CODE_FORMATS: tuple[str, ...] = (
    "QRCode",
    "DataMatrix",
    "Code128",
    "Code39",
    "EAN13",
    "EAN8",
    "UPCA",
    "UPCE",
    "ITF",
)
#: Longest side of the first, downscaled pass; the full frame is read only when it finds nothing.
FAST_PASS_SIZE = 960
#: A reference shorter than this (normalised) must equal the code's text; longer ones may also be
#: contained in it (a tracking number inside a carrier's longer barcode payload).
MIN_CONTAINED_LEN = 4


def _formats() -> Any:
    return zxingcpp.barcode_formats_from_str(",".join(CODE_FORMATS))


_FORMATS = _formats()


@dataclass(frozen=True, slots=True)
class ReadCode:
    """One code found in a frame. ``position``: its four corners (x, y) in frame pixels,
    top-left, top-right, bottom-right, bottom-left."""

    format: str
    text: str
    position: tuple[tuple[int, int], ...]
    orientation: int = 0

    def as_dict(self) -> dict[str, Any]:
        return {
            "format": self.format,
            "text": self.text,
            "position": [list(p) for p in self.position],
        }


@dataclass(frozen=True, slots=True)
class CodeMatch:
    """A read code that names one of the case's references (``ref``: e.g. "order_id")."""

    code: ReadCode
    ref: str
    value: str
    exact: bool


def _read(grey: np.ndarray[Any, Any], scale: float) -> list[ReadCode]:
    found = zxingcpp.read_barcodes(grey, formats=_FORMATS)
    codes: list[ReadCode] = []
    for result in found:
        if not result.valid or not result.text:
            continue
        pos = result.position
        corners = (pos.top_left, pos.top_right, pos.bottom_right, pos.bottom_left)
        codes.append(
            ReadCode(
                format=result.format.name,
                text=result.text,
                position=tuple((round(p.x * scale), round(p.y * scale)) for p in corners),
                orientation=int(result.orientation),
            )
        )
    return codes


def read_codes(image: np.ndarray[Any, Any]) -> list[ReadCode]:
    """All codes in an H x W x 3 uint8 RGB (or H x W grey) frame, one entry per distinct
    (format, text).

    First a pass on a copy downscaled to :data:`FAST_PASS_SIZE` (cheap, and enough for any code
    that fills a useful part of the picture); only when that finds nothing, a pass at full
    resolution for small or distant codes.
    """
    grey = image if image.ndim == 2 else cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)
    h, w = grey.shape[:2]
    codes: list[ReadCode] = []
    longest = max(h, w)
    if longest > FAST_PASS_SIZE:
        factor = FAST_PASS_SIZE / longest
        small = cv2.resize(
            grey, (round(w * factor), round(h * factor)), interpolation=cv2.INTER_AREA
        )
        codes = _read(small, 1.0 / factor)
    if not codes:
        codes = _read(np.ascontiguousarray(grey), 1.0)
    unique: dict[tuple[str, str], ReadCode] = {}
    for code in codes:
        unique.setdefault((code.format, code.text), code)
    return list(unique.values())


_IGNORED = re.compile(r"[\s\-]+")


def normalise_code(text: str) -> str:
    """Case-folded, without spaces or hyphens: how codes and references are compared."""
    return _IGNORED.sub("", text).casefold()


def match_codes(codes: Iterable[ReadCode], refs: Mapping[str, str | None]) -> list[CodeMatch]:
    """Codes that name a reference: the code's text equals the reference value, or contains it
    (references of at least :data:`MIN_CONTAINED_LEN` characters), comparing case-insensitively
    and ignoring spaces and hyphens. Empty references are ignored."""
    wanted = [(k, v, normalise_code(v)) for k, v in refs.items() if v and normalise_code(v)]
    matches: list[CodeMatch] = []
    for code in codes:
        text = normalise_code(code.text)
        for ref, value, norm in wanted:
            if text == norm:
                matches.append(CodeMatch(code, ref, value, exact=True))
            elif len(norm) >= MIN_CONTAINED_LEN and norm in text:
                matches.append(CodeMatch(code, ref, value, exact=False))
    return matches
