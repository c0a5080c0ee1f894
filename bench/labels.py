"""Text-on-labels benchmark: how long the OCR models take per picture on N cores, and how often
they read a drawn label's serial, IMEI and model number exactly, per kind of picture.

    python bench/labels.py [--seeds 10] [--threads 2] [--json]

Baseline, measured in the same run on the same pictures: the barcode reader (zxing-cpp) that
the live pipeline runs every other frame. Prints figures, not pass/fail.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

if not __package__:
    # Run by path (python bench/labels.py): import from the repository root.
    sys.path[0] = str(Path(__file__).resolve().parent.parent)

from bench._stats import percentile  # noqa: E402
from inference import read_codes  # noqa: E402
from inference.labels import LabelReader  # noqa: E402
from tests.fakes.labels import VARIANTS, draw_label  # noqa: E402


def run(seeds: int, threads: int) -> dict[str, Any]:
    reader = LabelReader(threads=threads)
    started = time.perf_counter()
    reader.read(draw_label(0).image)  # loads the models
    load_ms = (time.perf_counter() - started) * 1000
    ocr_ms: list[float] = []
    code_ms: list[float] = []
    table: dict[str, dict[str, int]] = {}
    for variant in VARIANTS:
        row = table.setdefault(variant, {"pictures": 0, "serial": 0, "imei": 0, "model": 0})
        for seed in range(1, seeds + 1):
            label = draw_label(seed, variant)
            started = time.perf_counter()
            fields = reader.fields(label.image)
            ocr_ms.append((time.perf_counter() - started) * 1000)
            started = time.perf_counter()
            read_codes(label.image)
            code_ms.append((time.perf_counter() - started) * 1000)
            row["pictures"] += 1
            row["serial"] += label.serial in fields.serials
            row["imei"] += label.imei in fields.imeis
            row["model"] += label.model in fields.models
    total = {
        key: sum(row[key] for row in table.values())
        for key in ("pictures", "serial", "imei", "model")
    }
    return {
        "threads": threads,
        "load_ms": round(load_ms),
        "ocr_ms_p50": round(percentile(ocr_ms, 50)),
        "ocr_ms_p95": round(percentile(ocr_ms, 95)),
        "codes_ms_p50": round(percentile(code_ms, 50), 1),
        "ratio_ocr_to_codes": round(percentile(ocr_ms, 50) / max(percentile(code_ms, 50), 1e-3)),
        "accuracy": {**table, "all": total},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, default=10, help="labels per kind of picture")
    parser.add_argument("--threads", type=int, default=2, help="ONNX Runtime intra-op threads")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    os.environ.setdefault("OMP_NUM_THREADS", str(args.threads))
    result = run(args.seeds, args.threads)
    if args.json:
        print(json.dumps(result, indent=2))
        return
    print(f"OCR on {args.threads} threads: models load in {result['load_ms']} ms")
    print(
        f"per picture (900x560): p50 {result['ocr_ms_p50']} ms, p95 {result['ocr_ms_p95']} ms;"
        f" barcode reading of the same picture p50 {result['codes_ms_p50']} ms"
        f" (OCR {result['ratio_ocr_to_codes']}x)"
    )
    print("exact reads (serial / IMEI / model) of pictures:")
    for variant, row in result["accuracy"].items():
        n = row["pictures"]
        print(f"  {variant:<10} {row['serial']}/{n}  {row['imei']}/{n}  {row['model']}/{n}")


if __name__ == "__main__":
    main()
