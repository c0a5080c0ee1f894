from __future__ import annotations

import itertools
import json

import pytest

from inference import (
    RULES,
    RULES_VERSION,
    Cosmetic,
    Functional,
    Grade,
    GradeFacts,
    Packaging,
    derive_grade,
    resale_channel,
)


def facts(cosmetic: str, functional: str, packaging: str, complete: bool = True) -> GradeFacts:
    return GradeFacts(Cosmetic(cosmetic), Functional(functional), Packaging(packaging), complete)


@pytest.mark.parametrize(
    ("cosmetic", "functional", "packaging", "complete", "grade", "rule"),
    [
        ("as_new", "works", "damaged", True, "A", "as_new"),
        ("as_new", "works", "intact", True, "A", "as_new"),
        ("as_new", "works", "intact", False, "B", "as_new_incomplete"),
        ("as_new", "works", "missing", True, "B", "as_new_no_packaging"),
        ("as_new", "untested", "intact", True, "B", "as_new_untested"),
        ("light_wear", "works", "intact", True, "B", "light_wear"),
        ("light_wear", "works", "intact", False, "B", "light_wear"),
        ("cosmetic_flaws", "works", "damaged", True, "C", "cosmetic_flaws"),
        ("damaged", "works", "intact", True, "C", "damaged_works"),
        ("damaged", "untested", "intact", True, "D", "damaged_untested"),
        ("as_new", "does_not_work", "intact", True, "D", "does_not_work"),
        ("light_wear", "does_not_work", "missing", False, "D", "does_not_work"),
    ],
)
def test_rule_table(
    cosmetic: str, functional: str, packaging: str, complete: bool, grade: str, rule: str
) -> None:
    result = derive_grade(facts(cosmetic, functional, packaging, complete))
    assert (result.grade, result.rule) == (grade, rule)
    assert result.rules_version == RULES_VERSION == "grade-rules/1"
    assert result.channel == resale_channel(grade)


def test_every_combination_gets_a_grade_and_invariants_hold() -> None:
    for c, f, p, a in itertools.product(Cosmetic, Functional, Packaging, (True, False)):
        result = derive_grade(GradeFacts(c, f, p, a))
        if f is Functional.DOES_NOT_WORK:
            assert result.grade is Grade.D
        if c is Cosmetic.DAMAGED:
            assert result.grade in (Grade.C, Grade.D)
        if result.grade is Grade.A:
            assert (c, f, a) == (Cosmetic.AS_NEW, Functional.WORKS, True)
            assert p is not Packaging.MISSING


def test_explanation_mentions_what_lowered_value() -> None:
    result = derive_grade(facts("light_wear", "works", "damaged", complete=False))
    assert result.explanation == "light signs of use; accessories incomplete; packaging damaged"


def test_resale_channels() -> None:
    assert resale_channel("A").price_range == (0.85, 0.95)
    assert resale_channel(Grade.B).price_range == (0.70, 0.85)
    assert resale_channel("C").price_range == (0.50, 0.70)
    assert resale_channel("D").price_range is None
    assert resale_channel("D").name == "parts_recycling"


def test_from_stored_json_and_back() -> None:
    stored = {
        "cosmetic": "as_new",
        "functional": "works",
        "packaging": "damaged",
        "accessories_complete": True,
    }
    result = derive_grade(stored)
    assert result.grade == "A"
    document = json.loads(json.dumps(result.as_dict()))
    assert document["facts"] == stored
    assert document["channel"]["price_range"] == [0.85, 0.95]
    assert json.dumps([r.as_dict() for r in RULES])  # the table itself is data
    with pytest.raises(ValueError, match="facts.cosmetic='mint': expected one of as_new"):
        derive_grade({**stored, "cosmetic": "mint"})
    with pytest.raises(ValueError, match="accessories_complete"):
        derive_grade({**stored, "accessories_complete": "yes"})
