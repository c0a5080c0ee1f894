from __future__ import annotations

from typing import Any

import cv2
import numpy as np

from inference import BestFrames, assess_quality


def scene(seed: int = 0, h: int = 480, w: int = 640) -> np.ndarray[Any, Any]:
    """A returned item on a table: edges, text and a little sensor noise."""
    rng = np.random.default_rng(seed)
    image = np.full((h, w, 3), (170, 160, 150), np.uint8)
    cv2.rectangle(image, (150, 100), (490, 380), (220, 40, 40), -1)
    cv2.line(image, (200, 150), (420, 330), (40, 30, 20), 3)
    cv2.putText(image, "RMA 12345", (180, 250), cv2.FONT_HERSHEY_SIMPLEX, 1.2, (10, 10, 10), 2)
    noisy = image.astype(np.int16) + rng.normal(0, 4, image.shape).astype(np.int16)
    return np.clip(noisy, 0, 255).astype(np.uint8)


def test_sharp_frame_is_usable() -> None:
    quality = assess_quality(scene())
    assert quality.usable and quality.reason is None
    assert quality.weight > 0.5


def test_blurred_dark_and_washed_out_frames_are_flagged() -> None:
    sharp = scene()
    blurred = assess_quality(cv2.GaussianBlur(sharp, (0, 0), 6))
    assert (blurred.usable, blurred.reason) == (False, "blurry")
    assert blurred.sharpness < assess_quality(sharp).sharpness / 10
    dark = assess_quality((sharp * 0.12).astype(np.uint8))
    assert (dark.usable, dark.reason) == (False, "too_dark")
    bright = assess_quality(np.clip(sharp.astype(np.int16) + 120, 0, 255).astype(np.uint8))
    assert (bright.usable, bright.reason) == (False, "overexposed")
    assert blurred.weight == 0.0


def test_best_frames_keeps_the_sharpest_spaced_in_time() -> None:
    best = BestFrames(k=2, min_gap_s=1.0)
    sharp, soft = scene(), cv2.GaussianBlur(scene(), (0, 0), 0.8)
    q_sharp, q_soft = assess_quality(sharp), assess_quality(soft)
    assert q_soft.usable and q_soft.sharpness < q_sharp.sharpness
    assert best.offer(soft, 0.0, q_soft)
    assert best.offer(sharp, 0.5, q_sharp)  # same moment, sharper: replaces it
    assert [c.ts for c in best.candidates()] == [0.5]
    assert not best.offer(soft, 0.9, q_soft)  # same moment, not sharper
    assert best.offer(soft, 2.0, q_soft)
    assert best.offer(sharp, 4.0, q_sharp)  # full: evicts the softest
    assert [c.ts for c in best.candidates()] == [0.5, 4.0]
    blurred = cv2.GaussianBlur(sharp, (0, 0), 6)
    assert not best.offer(blurred, 8.0, assess_quality(blurred))  # unusable never kept
    top = best.best()
    assert top is not None and top.width == 640 and top.height == 480


def test_snapshot_jpeg_keeps_colours() -> None:
    best = BestFrames(k=1)
    image = scene()
    best.offer(image, 1.0, assess_quality(image))
    jpeg = best.candidates()[0].jpeg
    assert jpeg[:2] == b"\xff\xd8"
    decoded = cv2.cvtColor(
        cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB
    )
    red_box = decoded[300:360, 420:480].reshape(-1, 3).mean(axis=0)
    assert red_box[0] > 180 and red_box[2] < 80  # the item is still red, not blue
