"""Measure a grader model (ONNX Runtime + numpy only; no torch): ``inspectd eval [MODEL] [DIR]``.

On a held-out generated set by default (seed :data:`EVAL_SEED`, never used for training), or on
a folder of labelled photos (``DIR/A/*.jpg`` ... ``DIR/D/*.jpg``, optional ``DIR/damages.csv``),
letterboxed to the model's input size the way the server fits live frames. Reports grade
accuracy, the confusion matrix (rows: true A-D, columns: predicted), per-damage AUROC and the
expected calibration error (10 bins) of the grade head.
"""

from __future__ import annotations

import argparse
import csv
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import onnxruntime as ort

from inference.training import generator

__all__ = [
    "DEFAULT_MODEL",
    "EVAL_SEED",
    "Report",
    "auroc",
    "expected_calibration_error",
    "evaluate",
    "load_folder",
    "main",
    "model_info",
    "predict",
]

DEFAULT_MODEL = Path(__file__).resolve().parents[1] / "models" / "grader-v1.onnx"
#: Seed of the default held-out synthetic set (training uses a different one).
EVAL_SEED = 90210
IMAGE_EXTENSIONS = {".jpg", ".jpeg", ".png", ".bmp", ".webp"}

Array = np.ndarray[Any, Any]


@dataclass(frozen=True, slots=True)
class Report:
    """What :func:`evaluate` measured."""

    model: str
    source: str
    count: int
    grade_accuracy: float
    confusion: tuple[tuple[int, ...], ...]
    damage_auroc: dict[str, float | None] = field(default_factory=dict)
    ece: float = 0.0
    seconds: float = 0.0
    grade_labels: tuple[str, ...] = generator.GRADES

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready form (for the training report)."""
        out = asdict(self)
        out["confusion"] = [list(r) for r in self.confusion]
        out["grade_labels"] = list(self.grade_labels)
        return out

    def format(self) -> str:
        """Human-readable summary."""
        labels = self.grade_labels
        lines = [
            f"model: {self.model}",
            f"data: {self.source} ({self.count} images, {self.seconds:.1f} s)",
            f"grade accuracy: {self.grade_accuracy:.3f}",
            f"grade ECE (10 bins): {self.ece:.3f}",
            "confusion (rows true, columns predicted):",
            "      " + " ".join(f"{g:>5}" for g in labels),
        ]
        for g, row in zip(labels, self.confusion, strict=True):
            lines.append(f"  {g:>3} " + " ".join(f"{v:>5d}" for v in row))
        lines.append("damage AUROC:")
        for name, value in self.damage_auroc.items():
            lines.append(f"  {name:<15} " + ("n/a" if value is None else f"{value:.3f}"))
        return "\n".join(lines)


def auroc(scores: Array, labels: Array) -> float | None:
    """Area under the ROC curve (Mann-Whitney U with tied ranks); None if one class is absent."""
    scores = np.asarray(scores, np.float64)
    labels = np.asarray(labels).astype(bool)
    pos, neg = int(labels.sum()), int((~labels).sum())
    if pos == 0 or neg == 0:
        return None
    order = np.argsort(scores, kind="mergesort")
    sorted_scores = scores[order]
    ranks = np.empty(len(scores), np.float64)
    i = 0
    while i < len(scores):
        j = i
        while j + 1 < len(scores) and sorted_scores[j + 1] == sorted_scores[i]:
            j += 1
        ranks[order[i : j + 1]] = (i + j) / 2 + 1
        i = j + 1
    return float((ranks[labels].sum() - pos * (pos + 1) / 2) / (pos * neg))


def expected_calibration_error(probs: Array, labels: Array, bins: int = 10) -> float:
    """ECE of the top-1 prediction over ``bins`` equal-width confidence bins."""
    conf = probs.max(1)
    correct = probs.argmax(1) == labels
    edges = np.linspace(0, 1, bins + 1)
    ece = 0.0
    for lo, hi in zip(edges[:-1], edges[1:], strict=True):
        sel = (conf > lo) & (conf <= hi)
        if sel.any():
            ece += sel.mean() * abs(correct[sel].mean() - conf[sel].mean())
    return float(ece)


def model_info(session: ort.InferenceSession) -> tuple[tuple[int, int], list[str], list[str]]:
    """(input size, grade labels, damage labels) from the model's metadata."""
    meta = session.get_modelmeta().custom_metadata_map
    h, w = (int(v) for v in meta["inspect.input_size"].lower().split("x"))
    return (h, w), meta["inspect.grade_labels"].split(","), meta["inspect.damage_labels"].split(",")


def open_session(path: Path, threads: int = 2) -> ort.InferenceSession:
    """A CPU ONNX Runtime session with explicit thread counts."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def predict(session: ort.InferenceSession, images: Array, batch: int = 64) -> tuple[Array, Array]:
    """Run uint8 ``[N,H,W,3]`` RGB images (already at the input size) -> (grade, damage) probs."""
    grades, damages = [], []
    for start in range(0, len(images), batch):
        x = np.ascontiguousarray(images[start : start + batch].transpose(0, 3, 1, 2), np.float32)
        g, d = session.run(["grade_probs", "damage_probs"], {"images": x})
        grades.append(g)
        damages.append(d)
    return np.concatenate(grades), np.concatenate(damages)


def _read_rgb(path: Path, size: tuple[int, int]) -> Array:
    bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if bgr is None:
        raise ValueError(f"cannot read image {path}")
    return generator.letterbox(np.ascontiguousarray(bgr[..., ::-1]), size)


def load_folder(
    data_dir: Path, size: tuple[int, int]
) -> tuple[Array, Array, Array | None, list[Path]]:
    """Images from ``DIR/{A,B,C,D}/*`` (letterboxed to ``size``), grades, optional damages.

    ``DIR/damages.csv`` (optional) has rows ``filename,labels``: ``labels`` lists damage names
    separated by ``;`` or spaces (empty for none); ``filename`` is relative to ``DIR``
    (``A/img1.jpg``) or a bare file name.
    """
    paths: list[Path] = []
    grades: list[int] = []
    for gi, grade in enumerate(generator.GRADES):
        folder = data_dir / grade
        if not folder.is_dir():
            continue
        for p in sorted(folder.iterdir()):
            if p.suffix.lower() in IMAGE_EXTENSIONS:
                paths.append(p)
                grades.append(gi)
    if not paths:
        raise ValueError(f"{data_dir}: no images under A/ B/ C/ D/")
    images = np.stack([_read_rgb(p, size) for p in paths])
    damages = None
    table = data_dir / "damages.csv"
    if table.is_file():
        labels: dict[str, set[str]] = {}
        with table.open(newline="") as f:
            for row in csv.reader(f):
                if not row or row[0].strip().lower() in ("filename", "file", ""):
                    continue
                names = set(" ".join(row[1:]).replace(";", " ").replace(",", " ").split())
                unknown = names - set(generator.DAMAGES)
                if unknown:
                    raise ValueError(f"{table}: unknown damage labels {sorted(unknown)}")
                labels[row[0].strip()] = names
        damages = np.zeros((len(paths), len(generator.DAMAGES)), np.float32)
        for i, p in enumerate(paths):
            rel = p.relative_to(data_dir).as_posix()
            found = labels.get(rel, labels.get(p.name))
            if found is None:
                raise ValueError(f"{table}: no row for {rel}")
            damages[i] = [d in found for d in generator.DAMAGES]
    return images, np.array(grades, np.int64), damages, paths


def score(
    grade_probs: Array,
    damage_probs: Array,
    grades: Array,
    damages: Array | None,
    damage_labels: Sequence[str] = generator.DAMAGES,
) -> tuple[float, tuple[tuple[int, ...], ...], dict[str, float | None], float]:
    """(accuracy, confusion, per-damage AUROC, ECE) of predictions against labels."""
    pred = grade_probs.argmax(1)
    k = grade_probs.shape[1]
    confusion = np.zeros((k, k), np.int64)
    np.add.at(confusion, (grades, pred), 1)
    aurocs: dict[str, float | None] = {}
    for j, name in enumerate(damage_labels):
        aurocs[name] = None if damages is None else auroc(damage_probs[:, j], damages[:, j])
    return (
        float((pred == grades).mean()),
        tuple(tuple(int(v) for v in row) for row in confusion),
        aurocs,
        expected_calibration_error(grade_probs, grades),
    )


def evaluate(
    model_path: Path = DEFAULT_MODEL,
    data: Path | None = None,
    seed: int = EVAL_SEED,
    count: int = 1000,
) -> Report:
    """Evaluate ``model_path`` on a labelled photo folder ``data`` or a generated held-out set."""
    started = time.monotonic()
    session = open_session(Path(model_path))
    size, grade_labels, damage_labels = model_info(session)
    if list(grade_labels) != list(generator.GRADES):
        raise ValueError(f"{model_path}: grade labels {grade_labels} are not A,B,C,D")
    if data is None:
        images, grades, damages_opt = generator.make_set(seed, count, size)
        damages: Array | None = damages_opt
        source = f"generated held-out set (seed {seed})"
    else:
        images, grades, damages, _ = load_folder(Path(data), size)
        source = str(data)
    g, d = predict(session, images)
    if damages is not None and list(damage_labels) != list(generator.DAMAGES):
        damages = None  # another label set: AUROC cannot be matched to our labels
    acc, confusion, aurocs, ece = score(g, d, grades, damages, damage_labels)
    return Report(
        model=str(model_path),
        source=source,
        count=len(images),
        grade_accuracy=acc,
        confusion=confusion,
        damage_auroc=aurocs,
        ece=ece,
        seconds=time.monotonic() - started,
        grade_labels=tuple(grade_labels),
    )


def main(argv: Sequence[str] | None = None) -> int:
    """``inspectd eval [MODEL] [DIR] [--count N] [--seed S]``; prints the report."""
    parser = argparse.ArgumentParser(prog="inspectd eval", description=evaluate.__doc__)
    parser.add_argument("model", nargs="?", type=Path, default=DEFAULT_MODEL)
    parser.add_argument("data", nargs="?", type=Path, default=None)
    parser.add_argument("--count", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=EVAL_SEED)
    args = parser.parse_args(argv)
    print(evaluate(args.model, args.data, args.seed, args.count).format())
    return 0
