"""What a return decision stores about the grade (the grading record of a case)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import inference
from inference import derive_grade

__all__ = ["build_grading_record"]


def build_grading_record(
    facts: Mapping[str, Any],
    *,
    model_view: Mapping[str, Any] | None,
    override: Mapping[str, Any] | None,
) -> dict[str, Any]:
    """What a return decision stores about the grade: the model's view (evidence, not the
    verdict), the grade the rule table derives from the agent's facts, the agent's override if
    any, and the final grade with its resale channel."""
    derived = derive_grade(facts)
    final = str(override["grade"]) if override else derived.grade.value
    channel = derived.channel if not override else inference.resale_channel(final)
    return {
        "model": dict(model_view) if model_view is not None else None,
        "derived": derived.as_dict(),
        "override": dict(override) if override else None,
        "final_grade": final,
        "source": "override" if override else "rules",
        "rules_version": derived.rules_version,
        "resale_channel": channel.as_dict(),
    }
