"""The procedural training-image generator: determinism, labels, coverage."""

from __future__ import annotations

import numpy as np
import pytest

from inference.training import generator as gen
from inference.training.generator import DAMAGES, GRADES


def test_same_seed_gives_the_same_pixels_whatever_the_worker_count() -> None:
    a = gen.make_set(123, 64, (64, 64), workers=1)
    b = gen.make_set(123, 64, (64, 64), workers=2)
    for x, y in zip(a, b, strict=True):
        np.testing.assert_array_equal(x, y)
    c = gen.make_set(124, 8, (64, 64), workers=1)
    assert not np.array_equal(a[0][:8], c[0])


def test_render_is_deterministic_for_a_seeded_rng() -> None:
    spec = gen.make_spec(crack=True, scratch="light", torn_packaging=True)
    one = gen.render(spec, np.random.default_rng(5))
    two = gen.render(spec, np.random.default_rng(5))
    np.testing.assert_array_equal(one, two)
    assert one.shape == (224, 224, 3) and one.dtype == np.uint8
    frame = gen.render_scene(spec, np.random.default_rng(5))
    assert frame.shape == (480, 640, 3) and frame.dtype == np.uint8


@pytest.mark.parametrize(
    ("facts", "grade"),
    [
        ({}, "A"),
        ({"torn_packaging": True}, "A"),
        ({"scratch": "light"}, "B"),
        ({"stain": "small", "torn_packaging": True}, "B"),
        ({"scratch": "heavy"}, "C"),
        ({"stain": "large"}, "C"),
        ({"dent": True, "scratch": "light"}, "C"),
        ({"crack": True}, "D"),
        ({"crack": True, "dent": True, "stain": "large"}, "D"),
    ],
)
def test_labelling_rule(facts: dict[str, object], grade: str) -> None:
    spec = gen.make_spec(**facts)  # type: ignore[arg-type]
    assert spec.grade == grade
    assert ("torn_packaging" in spec.damages) == bool(facts.get("torn_packaging"))
    assert ("crack" in spec.damages) == bool(facts.get("crack"))


def test_random_specs_are_balanced_and_consistent() -> None:
    rng = np.random.default_rng(0)
    specs = [gen.random_spec(rng) for _ in range(2000)]
    counts = {g: sum(s.grade == g for s in specs) for g in GRADES}
    assert all(400 <= n <= 600 for n in counts.values()), counts
    for s in specs:
        assert s.grade == gen.grade_for(s.scratch, s.stain, s.dent, s.crack)
        assert ("scratch" in s.damages) == (s.scratch != "none")
        assert ("stain" in s.damages) == (s.stain != "none")
        assert ("dent" in s.damages) == s.dent
        assert ("crack" in s.damages) == s.crack
        assert ("torn_packaging" in s.damages) == s.torn_packaging
        assert s.has_box or not s.torn_packaging
        if s.grade == "A":
            assert s.damages <= {"torn_packaging"}
    for name in DAMAGES:
        share = sum(name in s.damages for s in specs) / len(specs)
        assert 0.1 < share < 0.6, (name, share)


def test_make_set_labels_match_the_specs_and_cover_every_class() -> None:
    images, grades, damages = gen.make_set(7, 48, (96, 96), workers=1)
    assert images.shape == (48, 96, 96, 3) and images.dtype == np.uint8
    assert damages.shape == (48, len(DAMAGES)) and damages.dtype == np.float32
    assert list(grades[:8]) == [0, 1, 2, 3, 0, 1, 2, 3]
    assert set(grades.tolist()) == {0, 1, 2, 3}
    assert damages.max(0).tolist() == [1.0] * len(DAMAGES)
    # a crack is exactly what makes a D; A never has damage on the product
    crack = DAMAGES.index("crack")
    assert np.array_equal(damages[:, crack] == 1, grades == 3)
    assert damages[grades == 0][:, :4].sum() == 0


def test_defects_change_the_product_pixels() -> None:
    clean = gen.render_scene(gen.make_spec(), np.random.default_rng(3), nuisance=False)
    cracked = gen.render_scene(gen.make_spec(crack=True), np.random.default_rng(3), nuisance=False)
    diff = np.abs(clean.astype(int) - cracked.astype(int)).max(2) > 40
    h, w = diff.shape
    centre = diff[h // 4 : 3 * h // 4, w // 4 : 3 * w // 4]
    assert centre.sum() > 100


def test_letterbox_keeps_the_aspect_ratio_with_grey_borders() -> None:
    frame = np.zeros((480, 640, 3), np.uint8)
    out = gen.letterbox(frame, (224, 224))
    assert out.shape == (224, 224, 3)
    assert (out[:20] == gen.LETTERBOX_FILL).all() and (out[-20:] == gen.LETTERBOX_FILL).all()
    assert (out[112] == 0).all()
