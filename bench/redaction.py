"""Redacted copies benchmark: seconds per megapixel of photo and per second of clip, through
``RedactionService`` into a real archive, on N cores.

    python bench/redaction.py [--cores 2] [--seconds 4] [--json]

Baseline, measured in the same run on the same files: the same service with a detector that
finds nothing, i.e. decode, re-encode and filing without detection. Clips are VP8 in WebM and
H.264 in Matroska, as the recorder files them, with a face moving across. Prints figures, not
pass/fail.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

if not __package__:
    # Run by path (python bench/redaction.py): import from the repository root.
    sys.path[0] = str(Path(__file__).resolve().parent.parent)

import cv2  # noqa: E402
import numpy as np  # noqa: E402

from evidence import EvidenceArchive, EvidenceRecord, ItemKind, Use  # noqa: E402
from inference import FaceDetector, Region  # noqa: E402
from server.capture.redaction import RedactionService  # noqa: E402
from tests.fakes.faces import face_picture, write_face_clip  # noqa: E402

PHOTOS = ((1080, 1920), (3000, 4000))
CLIPS: tuple[tuple[str, tuple[int, int], int], ...] = (
    ("480p15", (480, 640), 15),
    ("720p30", (720, 1280), 30),
)


class NoFaces:
    """The baseline's detector: looks at nothing, finds nothing."""

    name = "none"
    min_confidence = 1.0

    def detect(self, image: np.ndarray[Any, Any]) -> Sequence[Region]:
        return []


def record(kind: ItemKind) -> EvidenceRecord:
    now = datetime.now(UTC)
    return EvidenceRecord(
        case_id="bench", use=Use.RETURN, operator="bench", started_at=now, ended_at=now, kind=kind
    )


async def timed(service: RedactionService, item_id: str) -> tuple[float, dict[str, Any]]:
    started = time.perf_counter()
    copy = await service.redact(item_id, actor="bench", reason="bench")
    return time.perf_counter() - started, dict((copy.record.details or {})["redaction"])


async def run(seconds: float, threads: int) -> dict[str, Any]:
    root = Path(tempfile.mkdtemp(prefix="bench-redaction-"))
    archive = await EvidenceArchive.open(root / "data")
    detector = FaceDetector()
    started = time.perf_counter()
    detector.load()
    load_ms = (time.perf_counter() - started) * 1000
    redacting = RedactionService(
        archive, detector, max_clip_s=600, max_seconds=600, threads=threads
    )
    baseline = RedactionService(
        archive, NoFaces(), max_clip_s=600, max_seconds=600, threads=threads
    )
    result: dict[str, Any] = {
        "threads": threads,
        "load_ms": round(load_ms),
        "photos": [],
        "clips": [],
    }
    try:
        for height, width in PHOTOS:
            picture = face_picture(
                1, size=(height, width), face_width=width // 5, background="noise"
            )
            path = root / f"photo-{width}.jpg"
            path.write_bytes(cv2.imencode(".jpg", picture.image[:, :, ::-1])[1].tobytes())
            item = await archive.add_item([("photo.jpg", path)], record(ItemKind.PHOTO), actor="b")
            megapixels = width * height / 1e6
            with_faces, details = await timed(redacting, item.item_id)
            without, _ = await timed(baseline, item.item_id)
            result["photos"].append(
                {
                    "size": f"{width}x{height}",
                    "s_per_mp": round(with_faces / megapixels, 3),
                    "baseline_s_per_mp": round(without / megapixels, 3),
                    "faces": details["faces"],
                }
            )
        for label, size, fps in CLIPS:
            codec: Literal["vp8", "h264"]
            for codec, name in (("vp8", "video-1.webm"), ("h264", "video-1.mkv")):
                path = root / f"{label}-{name}"
                write_face_clip(
                    path, seconds=seconds, fps=fps, size=size, face_width=size[0] // 4, codec=codec
                )
                item = await archive.add_item([(name, path)], record(ItemKind.CLIP), actor="b")
                with_faces, details = await timed(redacting, item.item_id)
                without, _ = await timed(baseline, item.item_id)
                result["clips"].append(
                    {
                        "clip": f"{label} {codec}",
                        "s_per_clip_s": round(with_faces / seconds, 2),
                        "baseline_s_per_clip_s": round(without / seconds, 2),
                        "frames_checked": details["frames_checked"],
                        "encoder": details["files"][0]["codec"],
                    }
                )
    finally:
        await redacting.aclose()
        await baseline.aclose()
        await archive.aclose()
        shutil.rmtree(root, ignore_errors=True)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cores", type=int, default=2, help="CPU cores the process may use")
    parser.add_argument("--seconds", type=float, default=4.0, help="length of each clip")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    if hasattr(os, "sched_setaffinity"):
        available = sorted(os.sched_getaffinity(0))
        os.sched_setaffinity(0, set(available[: max(1, args.cores)]))
    cv2.setNumThreads(args.cores)
    result = asyncio.run(run(args.seconds, args.cores))
    if args.json:
        print(json.dumps(result, indent=2))
        return
    print(f"redaction on {args.cores} cores; MTCNN nets load in {result['load_ms']} ms")
    print("photos (JPEG, one face):  redacted s/MP   baseline s/MP (decode + encode)")
    for row in result["photos"]:
        figures = f"{row['s_per_mp']:>6}          {row['baseline_s_per_mp']:>6}"
        print(f"  {row['size']:<12}            {figures}")
    print("clips (face moving):      s per clip s    baseline        looks   encoder")
    for row in result["clips"]:
        figures = f"{row['s_per_clip_s']:>6}          {row['baseline_s_per_clip_s']:>6}"
        print(
            f"  {row['clip']:<24}{figures}          {row['frames_checked']:>4}   {row['encoder']}"
        )


if __name__ == "__main__":
    main()
