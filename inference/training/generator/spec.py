"""What one training picture shows and the labels that follow from it.

The labels are never drawn at random next to the picture: :func:`make_spec` derives the grade
(:func:`grade_for`, the labelling rule in the package docstring) and the damage set from the
facts that are drawn, so a label cannot disagree with the pixels.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

GRADES = ("A", "B", "C", "D")
DAMAGES = ("scratch", "dent", "crack", "stain", "torn_packaging")
MATERIALS = ("plastic", "metal", "fabric", "glossy")
SHAPES = ("slab", "round", "block", "bottle")


@dataclass(frozen=True, slots=True)
class SampleSpec:
    """What one picture shows; the labels are derived from it.

    ``scratch`` is ``"none" | "light" | "heavy"`` and ``stain`` is ``"none" | "small" |
    "large"``; ``damages`` is the multi-label set of :data:`DAMAGES` names that are drawn.
    """

    grade: str
    damages: frozenset[str]
    accessories_complete: bool
    material: str = "plastic"
    shape: str = "slab"
    scratch: str = "none"
    stain: str = "none"
    dent: bool = False
    crack: bool = False
    has_box: bool = False
    torn_packaging: bool = False

    @property
    def damage_vector(self) -> np.ndarray[Any, Any]:
        """Damage labels as float32 ``[5]`` in :data:`DAMAGES` order."""
        return np.array([d in self.damages for d in DAMAGES], dtype=np.float32)


def grade_for(scratch: str, stain: str, dent: bool, crack: bool) -> str:
    """The labelling rule: product defects -> grade (packaging never lowers the grade)."""
    if crack:
        return "D"
    if dent or scratch == "heavy" or stain == "large":
        return "C"
    if scratch == "light" or stain == "small":
        return "B"
    return "A"


def make_spec(
    *,
    scratch: str = "none",
    stain: str = "none",
    dent: bool = False,
    crack: bool = False,
    torn_packaging: bool = False,
    has_box: bool | None = None,
    accessories_complete: bool = True,
    material: str = "plastic",
    shape: str = "slab",
) -> SampleSpec:
    """Build a consistent spec from the drawn facts (grade and labels derived)."""
    damages = {
        name
        for name, on in (
            ("scratch", scratch != "none"),
            ("stain", stain != "none"),
            ("dent", dent),
            ("crack", crack),
            ("torn_packaging", torn_packaging),
        )
        if on
    }
    return SampleSpec(
        grade=grade_for(scratch, stain, dent, crack),
        damages=frozenset(damages),
        accessories_complete=accessories_complete,
        material=material,
        shape=shape,
        scratch=scratch,
        stain=stain,
        dent=dent,
        crack=crack,
        has_box=torn_packaging or bool(has_box),
        torn_packaging=torn_packaging,
    )


def random_spec(rng: np.random.Generator, grade: str | None = None) -> SampleSpec:
    """A random spec, uniform over the grades (or for the given ``grade``)."""
    g = grade if grade is not None else GRADES[int(rng.integers(4))]
    scratch, stain, dent, crack = "none", "none", False, False
    if g == "B":
        kind = rng.random()
        scratch = "light" if kind < 0.65 else "none"
        stain = "small" if kind >= 0.45 else "none"
    elif g == "C":
        while not (dent or scratch == "heavy" or stain == "large"):
            dent = rng.random() < 0.45
            scratch = "heavy" if rng.random() < 0.45 else "none"
            stain = "large" if rng.random() < 0.4 else "none"
        if scratch == "none" and rng.random() < 0.2:
            scratch = "light"
        if stain == "none" and rng.random() < 0.15:
            stain = "small"
    elif g == "D":
        crack = True
        dent = rng.random() < 0.2
        scratch = str(rng.choice(["none", "light", "heavy"], p=[0.65, 0.2, 0.15]))
        stain = str(rng.choice(["none", "small", "large"], p=[0.75, 0.15, 0.1]))
    has_box = rng.random() < 0.6
    torn = has_box and rng.random() < 0.6
    return make_spec(
        scratch=scratch,
        stain=stain,
        dent=dent,
        crack=crack,
        torn_packaging=torn,
        has_box=has_box,
        accessories_complete=bool(rng.random() < 0.6),
        material=MATERIALS[int(rng.integers(len(MATERIALS)))],
        shape=SHAPES[int(rng.integers(len(SHAPES)))],
    )
