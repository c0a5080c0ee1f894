"""Faces found in pictures and hidden in copies: the detector finds the generated faces and
nothing in the product scenes or noise, and a redacted copy shows it no face."""

from __future__ import annotations

import threading
from typing import Any

import cv2
import numpy as np
import pytest

from inference import FaceDetector, Region, TextDetector, redact_image
from inference.training.generator import random_spec, render_scene
from tests.fakes.faces import FacePicture, face_grid, face_picture, noise_picture
from tests.fakes.labels import draw_label
from tests.fakes.scene import scene_frames

Image = np.ndarray[Any, Any]


@pytest.fixture(scope="module")
def detector() -> FaceDetector:
    found = FaceDetector()
    found.load()
    return found


@pytest.fixture(scope="module")
def grid(detector: FaceDetector) -> list[tuple[FacePicture, list[Region]]]:
    return [(picture, detector.detect(picture.image)) for picture in face_grid()]


def truth(picture: FacePicture) -> Region:
    return Region(*picture.box)


def test_the_generated_faces_are_found(grid: list[tuple[FacePicture, list[Region]]]) -> None:
    hits = [any(f.iou(truth(p)) > 0.3 for f in found) for p, found in grid]
    assert len(hits) == 60
    assert sum(hits) >= 57, f"found {sum(hits)} of 60 faces"
    # One face each: no second box beside the face.
    assert all(len(found) <= 1 for _, found in grid)


def test_a_found_face_is_boxed_with_a_margin_around_it(
    grid: list[tuple[FacePicture, list[Region]]],
) -> None:
    for picture, found in grid:
        if not found:
            continue
        box, face = found[0], truth(picture)
        covered = face.clipped(320, 320)
        assert covered is not None
        ix = min(box.x + box.w, covered.x + covered.w) - max(box.x, covered.x)
        iy = min(box.y + box.h, covered.y + covered.h) - max(box.y, covered.y)
        # Most of the drawn face oval's box lies inside the redaction box: chin and brow too.
        assert max(0, ix) * max(0, iy) / covered.area >= 0.9, (picture.seed, box, face)
        assert 0.9 < box.score <= 1.0 and box.kind == "face"


def test_nothing_is_found_in_product_scenes_or_noise(detector: FaceDetector) -> None:
    pictures: list[Image] = []
    for seed in range(12):
        rng = np.random.default_rng(seed)
        pictures.append(render_scene(random_spec(rng), rng, (480, 640), nuisance=True))
    pictures.extend(scene_frames(random_spec(np.random.default_rng(99)), code="RMA-1", count=4))
    pictures.extend(noise_picture(seed) for seed in range(6))
    found = {i: detector.detect(np.ascontiguousarray(p)) for i, p in enumerate(pictures)}
    assert {i: f for i, f in found.items() if f} == {}


@pytest.mark.parametrize("method", ["blur", "pixelate"])
def test_a_redacted_copy_shows_the_detector_no_face(
    detector: FaceDetector, grid: list[tuple[FacePicture, list[Region]]], method: str
) -> None:
    # Every size and background, two seeds each.
    chosen = [(p, found) for p, found in grid if p.seed % 1000 < 2 and found]
    assert len(chosen) >= 22
    still_found = {}
    for picture, found in chosen:
        copy = redact_image(picture.image, found, method)  # type: ignore[arg-type]
        again = detector.detect(copy)
        if again:
            still_found[picture.seed] = again
    assert still_found == {}


def detail(image: Image) -> float:
    """Variance of the Laplacian of the grey picture: high where edges and texture are."""
    grey = cv2.cvtColor(np.ascontiguousarray(image), cv2.COLOR_RGB2GRAY)
    return float(cv2.Laplacian(grey, cv2.CV_64F).var())


def test_redaction_changes_only_the_boxes_and_never_the_original() -> None:
    picture = face_picture(5, size=(240, 320), face_width=80, background="noise")
    before = picture.image.copy()
    box = Region(100, 60, 90, 110)
    outside = np.ones(before.shape[:2], bool)
    outside[60:170, 100:190] = False
    copies = {m: redact_image(picture.image, [box], m) for m in ("blur", "pixelate")}
    assert np.array_equal(picture.image, before)
    for copy in copies.values():
        assert np.array_equal(copy[outside], before[outside])
    # Blurred: the box's detail is gone.
    assert detail(copies["blur"][60:170, 100:190]) < 0.02 * detail(before[60:170, 100:190])
    # Pixelated: flat blocks, 6 x 6 of them at most.
    colours = np.unique(copies["pixelate"][60:170, 100:190].reshape(-1, 3), axis=0)
    assert len(colours) <= 36


def test_boxes_outside_the_picture_are_cut_to_it_and_bad_input_is_refused() -> None:
    image = noise_picture(1, (100, 120))
    copy = redact_image(image, [Region(-40, -40, 60, 60), Region(500, 500, 10, 10)])
    assert not np.array_equal(copy[:20, :20], image[:20, :20])
    assert np.array_equal(copy[30:, 30:], image[30:, 30:])
    with pytest.raises(ValueError, match="one of"):
        redact_image(image, [], "smudge")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="H x W x 3 uint8"):
        redact_image(image.astype(np.float32), [])
    with pytest.raises(ValueError, match="H x W x 3 uint8"):
        FaceDetector().detect(image[:, :, 0])


def test_one_detector_serves_several_threads(detector: FaceDetector) -> None:
    pictures = [face_picture(seed, face_width=100).image for seed in range(6)]
    expected = [detector.detect(p) for p in pictures]
    results: dict[int, list[Region]] = {}
    errors: list[BaseException] = []

    def run(index: int) -> None:
        try:
            results[index] = detector.detect(pictures[index])
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(pictures))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert errors == []
    assert [results[i] for i in range(len(pictures))] == expected


def test_text_lines_are_found_and_hidden() -> None:
    label = draw_label(3).image
    text = TextDetector(threads=2)
    lines = text.detect(label)
    assert len(lines) >= 3 and all(line.kind == "text" for line in lines)
    copy = redact_image(label, lines)
    assert text.detect(copy) == []
    assert text.name.startswith("rapidocr ")
