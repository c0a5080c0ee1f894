"""Text on labels: serial numbers, IMEIs and model numbers read off a frame or a photo, and
matched to what the case says the unit is.

Reading is PP-OCR (text detection, then recognition of each line) through RapidOCR, whose wheel
ships the ONNX models (Apache-2.0); nothing is downloaded. It costs about a second a picture on
two cores (``bench/labels.py``), so callers run it off the event loop and not on every frame.

What is read becomes fields by the words printed before them (``S/N``, ``Serial``, ``IMEI``,
``Model``...). An IMEI is 15 digits whose last one is the Luhn check digit of the others
(3GPP TS 23.003): a misread digit fails the check and the value is dropped, never "matched".
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .codes import normalise_code

__all__ = [
    "LabelFields",
    "LabelMatch",
    "LabelReader",
    "TextLine",
    "imei_valid",
    "label_fields",
    "match_label",
]

logger = logging.getLogger(__name__)

#: Longest side the detector looks at (larger pictures are scaled down for detection only).
DETECT_SIDE = 960
#: Lines read with less confidence than this are left out.
MIN_SCORE = 0.6

_SERIAL_WORDS = r"(?:S\s*/\s*N|SN|SERIAL(?:\s*(?:NO|NUMBER|#))?)"
_IMEI_WORDS = r"IMEI\s*\d?"
_MODEL_WORDS = r"(?:MODEL(?:\s*(?:NO|NUMBER|#))?|MOD|P\s*/\s*N|PART\s*(?:NO|NUMBER))"
_SEPARATOR = r"\s*[:.#]?\s*"
_SERIAL = re.compile(rf"\b{_SERIAL_WORDS}{_SEPARATOR}([A-Z0-9][A-Z0-9\-]{{3,31}})", re.I)
_IMEI = re.compile(rf"\b{_IMEI_WORDS}{_SEPARATOR}((?:\d[\s\-]?){{14}}\d)\b", re.I)
_MODEL = re.compile(rf"\b{_MODEL_WORDS}{_SEPARATOR}([A-Z0-9][A-Z0-9\-./]{{1,31}})", re.I)
#: 15 digits standing alone on a label are an IMEI only when the check digit says so.
_BARE_IMEI = re.compile(r"(?<!\d)(\d{15})(?!\d)")


@dataclass(frozen=True, slots=True)
class TextLine:
    """One line of text found in a picture: its words, the recogniser's confidence (0..1) and
    its four corners (x, y) in picture pixels, clockwise from the top left."""

    text: str
    score: float
    box: tuple[tuple[int, int], ...]

    def as_dict(self) -> dict[str, Any]:
        return {
            "text": self.text,
            "score": round(self.score, 3),
            "box": [list(p) for p in self.box],
        }


@dataclass(frozen=True, slots=True)
class LabelFields:
    """What the lines of one picture say: the values found after their printed names."""

    serials: tuple[str, ...] = ()
    imeis: tuple[str, ...] = ()
    models: tuple[str, ...] = ()
    lines: tuple[TextLine, ...] = field(default=())

    def __bool__(self) -> bool:
        return bool(self.serials or self.imeis or self.models)

    def as_dict(self) -> dict[str, Any]:
        return {
            "serials": list(self.serials),
            "imeis": list(self.imeis),
            "models": list(self.models),
            "lines": [line.as_dict() for line in self.lines],
        }


@dataclass(frozen=True, slots=True)
class LabelMatch:
    """A value read off a label that equals one of the case's references (``ref``: e.g.
    ``"unit_id"``), compared as codes are (case, spaces and hyphens ignored)."""

    kind: str  # "serial" | "imei" | "model"
    value: str
    ref: str

    def as_dict(self) -> dict[str, str]:
        return {"kind": self.kind, "value": self.value, "ref": self.ref}


def imei_valid(digits: str) -> bool:
    """Whether ``digits`` is 15 digits whose last is the Luhn check digit of the first 14."""
    if len(digits) != 15 or not digits.isdigit():
        return False
    total = 0
    for index, char in enumerate(reversed(digits)):
        value = int(char)
        if index % 2 == 1:
            value *= 2
            if value > 9:
                value -= 9
        total += value
    return total % 10 == 0


def _unique(values: Iterable[str]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(values))


def label_fields(lines: Sequence[TextLine]) -> LabelFields:
    """The serials, IMEIs and model numbers ``lines`` name. A value must follow its printed
    name on the same line, except an IMEI, which may stand alone when its check digit holds."""
    serials: list[str] = []
    imeis: list[str] = []
    models: list[str] = []
    for line in lines:
        text = line.text.strip()
        for found in _IMEI.finditer(text):
            digits = re.sub(r"\D", "", found[1])
            if imei_valid(digits):
                imeis.append(digits)
        if not _IMEI.search(text):
            imeis.extend(d for d in _BARE_IMEI.findall(text) if imei_valid(d))
        serials.extend(found[1].upper() for found in _SERIAL.finditer(text))
        models.extend(found[1].upper() for found in _MODEL.finditer(text))
    return LabelFields(_unique(serials), _unique(imeis), _unique(models), tuple(lines))


def match_label(fields: LabelFields, refs: Mapping[str, str | None]) -> list[LabelMatch]:
    """The values of ``fields`` that equal a reference of the case (order, tracking number,
    unit, serial...). Only whole values match: a serial that differs in one character is a
    different unit."""
    wanted = {name: normalise_code(value) for name, value in refs.items() if value}
    matches: list[LabelMatch] = []
    for kind, values in (
        ("serial", fields.serials),
        ("imei", fields.imeis),
        ("model", fields.models),
    ):
        for value in values:
            for name, ref in wanted.items():
                if normalise_code(value) == ref:
                    matches.append(LabelMatch(kind, value, name))
    return matches


class LabelReader:
    """Reads the lines of text in a picture. The models are loaded on first use (a second or
    so); :meth:`read` may be called from any thread, one picture at a time per reader.
    ``threads``: ONNX Runtime's intra-op threads (the CPU cores one reading may use)."""

    def __init__(self, *, threads: int = 2, min_score: float = MIN_SCORE) -> None:
        self._threads = max(1, threads)
        self._min_score = min_score
        self._engine: Any = None
        self._lock = threading.Lock()

    def _load(self) -> Any:
        import rapidocr
        from rapidocr import RapidOCR  # imported here: a second of start-up for every process

        models = Path(rapidocr.__file__).parent / "models"
        params = {
            # "error": at "warning" it logs every picture without text (most video frames).
            "Global.log_level": "error",
            "EngineConfig.onnxruntime.intra_op_num_threads": self._threads,
            "EngineConfig.onnxruntime.inter_op_num_threads": 1,
            # The wheel's own models, named: never a download.
            "Det.model_path": str(models / "PP-OCRv6_det_small.onnx"),
            "Rec.model_path": str(models / "PP-OCRv6_rec_small.onnx"),
            "Cls.model_path": str(models / "ch_ppocr_mobile_v2.0_cls_mobile.onnx"),
            "Det.limit_type": "max",
            "Det.limit_side_len": DETECT_SIDE,
        }
        for name in ("Det", "Rec", "Cls"):
            path = Path(params[f"{name}.model_path"])  # type: ignore[arg-type]
            if not path.is_file():
                raise FileNotFoundError(f"the OCR wheel lacks its {name} model: {path}")
        return RapidOCR(params=params)

    def read(self, image: np.ndarray[Any, Any]) -> list[TextLine]:
        """The lines of text in an H x W x 3 uint8 RGB picture, top to bottom."""
        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            raise ValueError(
                f"expected an H x W x 3 uint8 picture, got {image.shape} {image.dtype}"
            )
        with self._lock:
            if self._engine is None:
                self._engine = self._load()
            # RapidOCR takes OpenCV's channel order.
            result = self._engine(np.ascontiguousarray(image[:, :, ::-1]))
        boxes = getattr(result, "boxes", None)
        texts = getattr(result, "txts", None) or ()
        scores = getattr(result, "scores", None) or ()
        if boxes is None:
            return []
        lines = [
            TextLine(
                text=str(text),
                score=float(score),
                box=tuple((round(float(x)), round(float(y))) for x, y in box),
            )
            for box, text, score in zip(boxes, texts, scores, strict=False)
            if float(score) >= self._min_score and str(text).strip()
        ]
        lines.sort(key=lambda line: (min(y for _, y in line.box), min(x for x, _ in line.box)))
        return lines

    def fields(self, image: np.ndarray[Any, Any]) -> LabelFields:
        """:func:`label_fields` of what :meth:`read` finds."""
        return label_fields(self.read(image))
