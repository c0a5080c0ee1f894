"""Procedural training images for the default condition grader (numpy + OpenCV only).

Every picture is drawn from a :class:`SampleSpec`: a product-like body (plastic, brushed metal,
woven fabric or a glossy screen-like finish, with printed text, logos, buttons), optionally a
cardboard box behind it (tape, shipping label, and when the packaging is damaged: tears, a
crushed corner, wet stains), accessories (cables, chargers, earbuds) present or missing, a table
or cloth background with clutter (papers, pens, hand-like blobs holding the item), and camera
nuisances (perspective, blur, exposure, white balance, noise, JPEG).

Labelling rule (the grade follows from what is drawn *on the product*; see :func:`grade_for`):

* **D** (functional problem): a **crack** in the housing or screen. A cracked body or screen is
  treated as a functional defect (it lets in dust and moisture, a screen stops responding).
* **C** (cosmetic flaws, works): a **dent**, **heavy scratches** (many, long, deep, high contrast)
  or a **large stain**; no crack.
* **B** (light signs of use): only **light scratches** (a few short fine lines) and/or a
  **small stain**.
* **A** (packaging damaged only, product as new): nothing on the product. The box may be torn,
  crushed or wet (``torn_packaging``), which does not lower the grade.

Damage labels are multi-label: ``scratch`` (light or heavy), ``dent``, ``crack``, ``stain``
(small or large) on the product and ``torn_packaging`` for any damage drawn on the box.
Whether accessories are complete is drawn (cables and small parts present or missing) but is a
separate fact for the agent, not part of the visual grade.

Every sample is drawn from its own generator seeded with ``(seed, index)``, so
:func:`make_set` returns the same pixels whatever the number of worker processes.

The package is split by concept: :mod:`.spec` (the sample spec, its labels and the labelling
rule), :mod:`._draw` (small drawing helpers), :mod:`._scene_parts` (background, clutter, hands,
accessories, the box and its damage), :mod:`._product` (the product, its features and
defects) and :mod:`.compose` (scene composition, camera nuisances, letterbox and the render
entry points). Every public name is importable from this package.
"""

from __future__ import annotations

from inference.training.generator.compose import (
    LETTERBOX_FILL,
    letterbox,
    make_set,
    render,
    render_scene,
)

# ``train`` feeds its own worker pool with the per-sample renderer behind ``make_set``; the
# explicit alias keeps it an attribute of the package without making it public.
from inference.training.generator.compose import _render_one as _render_one
from inference.training.generator.spec import (
    DAMAGES,
    GRADES,
    MATERIALS,
    SHAPES,
    SampleSpec,
    grade_for,
    make_spec,
    random_spec,
)

__all__ = [
    "DAMAGES",
    "GRADES",
    "LETTERBOX_FILL",
    "MATERIALS",
    "SHAPES",
    "SampleSpec",
    "grade_for",
    "letterbox",
    "make_set",
    "make_spec",
    "random_spec",
    "render",
    "render_scene",
]
