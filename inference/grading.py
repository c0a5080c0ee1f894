"""Grades A-D from stored facts, by a versioned rule table; resale channel by grade.

The agent records facts (cosmetic condition, functional result, packaging state, accessories);
the grade is *derived* from them so it can be recomputed and explained later. Changing any rule
means a new :data:`RULES_VERSION`: grades stored with the old version keep their meaning.

Grades (DESIGN.md): **A** packaging damaged only, product as new; **B** light signs of use;
**C** cosmetic flaws, works; **D** functional problem (repair or parts).

Edge cases decided here (grade-rules/1), in table order, first match wins:

1. ``does_not_work`` -> D, whatever else.
2. cosmetic ``damaged`` with function ``untested`` -> D: visible damage and no proof it works is
   sold as parts until someone tests it.
3. cosmetic ``damaged`` (and works) -> C: a damaged product is at least C, never A/B.
4. ``cosmetic_flaws`` -> C (works or untested: flaws already put it in the C channel).
5. ``light_wear`` -> B (works or untested).
6. ``as_new`` but ``untested`` -> B: "as new" is a promise that it works.
7. ``as_new`` with accessories incomplete -> B: cannot be sold as new without its contents.
8. ``as_new`` with packaging ``missing`` -> B: the own store's "as new" listing ships in the
   original packaging; damaged packaging is fine (that is exactly grade A).
9. ``as_new``, works, accessories complete, packaging intact or damaged -> A.

Missing accessories on a B/C/D item do not lower the grade further (those channels sell
incomplete items and the listing says so); the explanation still mentions them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

__all__ = [
    "RULES",
    "RULES_VERSION",
    "Accessories",
    "Cosmetic",
    "Functional",
    "Grade",
    "GradeFacts",
    "GradeResult",
    "GradeRule",
    "Packaging",
    "ResaleChannel",
    "derive_grade",
    "resale_channel",
]

RULES_VERSION = "grade-rules/1"


class Grade(StrEnum):
    A = "A"
    B = "B"
    C = "C"
    D = "D"


class Cosmetic(StrEnum):
    AS_NEW = "as_new"
    LIGHT_WEAR = "light_wear"
    COSMETIC_FLAWS = "cosmetic_flaws"
    DAMAGED = "damaged"


class Functional(StrEnum):
    WORKS = "works"
    DOES_NOT_WORK = "does_not_work"
    UNTESTED = "untested"


class Packaging(StrEnum):
    INTACT = "intact"
    DAMAGED = "damaged"
    MISSING = "missing"


class Accessories(StrEnum):
    COMPLETE = "complete"
    INCOMPLETE = "incomplete"


@dataclass(frozen=True, slots=True)
class GradeFacts:
    """What the agent established about the item."""

    cosmetic: Cosmetic
    functional: Functional
    packaging: Packaging
    accessories_complete: bool

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any]) -> GradeFacts:
        """From stored JSON (``{"cosmetic": "as_new", ..., "accessories_complete": true}``);
        raises ValueError naming the field and the accepted values."""
        fields: dict[str, Any] = {}
        for name, enum in (
            ("cosmetic", Cosmetic),
            ("functional", Functional),
            ("packaging", Packaging),
        ):
            value = data.get(name)
            try:
                fields[name] = enum(str(value))
            except ValueError:
                allowed = ", ".join(e.value for e in enum)
                raise ValueError(f"facts.{name}={value!r}: expected one of {allowed}") from None
        complete = data.get("accessories_complete")
        if not isinstance(complete, bool):
            raise ValueError(f"facts.accessories_complete={complete!r}: expected true or false")
        return cls(accessories_complete=complete, **fields)

    def as_dict(self) -> dict[str, Any]:
        return {
            "cosmetic": self.cosmetic.value,
            "functional": self.functional.value,
            "packaging": self.packaging.value,
            "accessories_complete": self.accessories_complete,
        }

    def _values(self) -> dict[str, str]:
        accessories = Accessories.COMPLETE if self.accessories_complete else Accessories.INCOMPLETE
        return {
            "cosmetic": self.cosmetic.value,
            "functional": self.functional.value,
            "packaging": self.packaging.value,
            "accessories": accessories.value,
        }


@dataclass(frozen=True, slots=True)
class GradeRule:
    """One row: when every listed fact has one of the listed values, the item gets ``grade``.
    A fact not listed matches anything."""

    id: str
    grade: Grade
    when: Mapping[str, frozenset[str]]
    explanation: str

    def matches(self, values: Mapping[str, str]) -> bool:
        return all(values[fact] in allowed for fact, allowed in self.when.items())

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "grade": self.grade.value,
            "when": {k: sorted(v) for k, v in self.when.items()},
            "explanation": self.explanation,
        }


def _rule(rule_id: str, grade: Grade, explanation: str, **when: str | tuple[str, ...]) -> GradeRule:
    conditions = {k: frozenset((v,) if isinstance(v, str) else v) for k, v in when.items()}
    return GradeRule(rule_id, grade, conditions, explanation)


#: The rule table of :data:`RULES_VERSION`, evaluated in order; the first match wins and the
#: last row matches every remaining combination, so every set of facts gets a grade.
RULES: tuple[GradeRule, ...] = (
    _rule(
        "does_not_work",
        Grade.D,
        "functional problem: repair or parts",
        functional="does_not_work",
    ),
    _rule(
        "damaged_untested",
        Grade.D,
        "visibly damaged and not tested: treated as parts until tested",
        cosmetic="damaged",
        functional="untested",
    ),
    _rule("damaged_works", Grade.C, "damaged but works: at least C", cosmetic="damaged"),
    _rule("cosmetic_flaws", Grade.C, "cosmetic flaws, works", cosmetic="cosmetic_flaws"),
    _rule("light_wear", Grade.B, "light signs of use", cosmetic="light_wear"),
    _rule(
        "as_new_untested",
        Grade.B,
        "looks as new but not tested: cannot be sold as new",
        cosmetic="as_new",
        functional="untested",
    ),
    _rule(
        "as_new_incomplete",
        Grade.B,
        "as new but accessories incomplete: downgraded from A",
        cosmetic="as_new",
        accessories="incomplete",
    ),
    _rule(
        "as_new_no_packaging",
        Grade.B,
        "as new but original packaging missing: downgraded from A",
        cosmetic="as_new",
        packaging="missing",
    ),
    _rule(
        "as_new",
        Grade.A,
        "product as new, works, complete (packaging at most damaged)",
        cosmetic="as_new",
        functional="works",
        accessories="complete",
        packaging=("intact", "damaged"),
    ),
)


@dataclass(frozen=True, slots=True)
class ResaleChannel:
    """Where an item of a grade is resold and for what share of its new price."""

    name: str
    description: str
    #: (low, high) share of the new price; None for parts or recycling.
    price_range: tuple[float, float] | None

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "description": self.description,
            "price_range": list(self.price_range) if self.price_range else None,
        }


_CHANNELS: Mapping[Grade, ResaleChannel] = {
    Grade.A: ResaleChannel("own_store_as_new", 'own store, listed "as new"', (0.85, 0.95)),
    Grade.B: ResaleChannel("discount", "discount channel", (0.70, 0.85)),
    Grade.C: ResaleChannel("live_social", "live / social commerce", (0.50, 0.70)),
    Grade.D: ResaleChannel("parts_recycling", "parts or recycling", None),
}


def resale_channel(grade: Grade | str) -> ResaleChannel:
    """The resale channel of a grade ("A".."D")."""
    return _CHANNELS[Grade(grade)]


@dataclass(frozen=True, slots=True)
class GradeResult:
    """A derived grade with the rule that produced it."""

    grade: Grade
    rules_version: str
    rule: str
    explanation: str
    channel: ResaleChannel
    facts: GradeFacts

    def as_dict(self) -> dict[str, Any]:
        return {
            "grade": self.grade.value,
            "rules_version": self.rules_version,
            "rule": self.rule,
            "explanation": self.explanation,
            "channel": self.channel.as_dict(),
            "facts": self.facts.as_dict(),
        }


def derive_grade(facts: GradeFacts | Mapping[str, Any]) -> GradeResult:
    """Apply :data:`RULES` to ``facts`` (a :class:`GradeFacts` or its JSON mapping)."""
    if not isinstance(facts, GradeFacts):
        facts = GradeFacts.from_mapping(facts)
    values = facts._values()
    for rule in RULES:
        if rule.matches(values):
            explanation = rule.explanation
            if not facts.accessories_complete and rule.id != "as_new_incomplete":
                explanation += "; accessories incomplete"
            if facts.packaging is not Packaging.INTACT and rule.id != "as_new_no_packaging":
                explanation += f"; packaging {facts.packaging.value}"
            return GradeResult(
                rule.grade, RULES_VERSION, rule.id, explanation, resale_channel(rule.grade), facts
            )
    raise AssertionError(f"rule table {RULES_VERSION} does not cover {values}")  # pragma: no cover
