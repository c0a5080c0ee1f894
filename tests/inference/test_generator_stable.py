"""The generator's pixels are pinned: a fixed handful of seeds must render exactly the bytes
recorded in ``generator_digests.json``.

The shipped model was trained on these pictures and the evaluation sets are drawn from the same
code, so a refactor that changes a single pixel (a reordered random draw, a changed default)
silently changes both. Comparing against digests computed in the same run could never fail;
the file holds digests written once from a known-good generator.

When a change to the pictures is intended (a new nuisance, a fixed drawing bug, an OpenCV
upgrade that alters anti-aliasing), regenerate the file deliberately and commit it with the
change::

    .venv/bin/python -m tests.inference.test_generator_stable --write
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from inference.training.generator import make_set, random_spec, render, render_scene

DIGESTS = Path(__file__).with_name("generator_digests.json")


def _digest(array: np.ndarray[Any, Any]) -> str:
    data = np.ascontiguousarray(array)
    shape = "x".join(str(n) for n in data.shape)
    return f"{data.dtype}[{shape}]:{hashlib.sha256(data.tobytes()).hexdigest()}"


def current_digests() -> dict[str, str]:
    """Digests of a small fixed set: both render paths (straight and letterboxed frames, which
    ``render`` picks per seed), two sizes, camera-like scenes with and without nuisances, and a
    balanced ``make_set`` with its labels."""
    out: dict[str, str] = {}
    for size in ((224, 224), (120, 200)):
        for seed in range(6):
            spec = random_spec(np.random.default_rng(seed))
            image = render(spec, np.random.default_rng(seed), size)
            out[f"render/{size[0]}x{size[1]}/seed{seed}"] = _digest(image)
    for seed, nuisance in ((0, True), (1, True), (2, False)):
        spec = random_spec(np.random.default_rng(seed))
        frame = render_scene(spec, np.random.default_rng(seed), (240, 320), nuisance=nuisance)
        out[f"render_scene/240x320/seed{seed}/nuisance={nuisance}"] = _digest(frame)
    images, grades, damages = make_set(2025, 8, (64, 64), workers=1)
    for i, image in enumerate(images):
        out[f"make_set/2025/64x64/{i}"] = _digest(image)
    out["make_set/2025/64x64/grades"] = _digest(grades)
    out["make_set/2025/64x64/damages"] = _digest(damages)
    return out


def test_the_generator_renders_the_recorded_pixels() -> None:
    recorded = json.loads(DIGESTS.read_text(encoding="utf-8"))
    current = current_digests()
    changed = sorted(k for k in recorded["digests"] if current.get(k) != recorded["digests"][k])
    versions = f"recorded with OpenCV {recorded['opencv']}, numpy {recorded['numpy']}; "
    versions += f"running OpenCV {cv2.__version__}, numpy {np.__version__}"
    assert set(current) == set(recorded["digests"]), "the pinned cases changed: regenerate"
    assert not changed, (
        f"{len(changed)} of {len(current)} pictures differ ({versions}): {changed[:5]}. "
        "If the change is intended, regenerate generator_digests.json (see this module's doc)."
    )


def _write() -> None:
    payload = {
        "about": (
            "SHA-256 of generator outputs pinned by tests/inference/test_generator_stable.py. "
            "Regenerate only for an intended change to the pictures: "
            ".venv/bin/python -m tests.inference.test_generator_stable --write"
        ),
        "opencv": cv2.__version__,
        "numpy": np.__version__,
        "digests": current_digests(),
    }
    DIGESTS.write_text(json.dumps(payload, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    print(f"wrote {len(payload['digests'])} digests to {DIGESTS}")


if __name__ == "__main__":
    if sys.argv[1:] != ["--write"]:
        raise SystemExit("usage: python -m tests.inference.test_generator_stable --write")
    _write()
