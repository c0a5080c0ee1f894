"""The return rules: a versioned table of *when* conditions and *then* actions, checked when it is
saved and evaluated, purely, against the facts of one case at one moment of its life.

A table is JSON::

    {"rules": [{"id": "hold-defective", "name": "Hold refunds of defects until seen",
                "on": ["intake", "created"],
                "when": {"claimed_reason": {"in": ["defective"]}, "order_value": {"gte": 50}},
                "then": [{"action": "hold_refund"}]}],
     "alerts": [{"id": "sku-rate", "kind": "sku_return_rate", "threshold": 0.25}]}

Every saved table is a new version (``return-rules/<n>``); a rule's action is recorded in the
case's timeline with the rule's id and the table's version.

``on`` names the moments a rule is evaluated at (:class:`Trigger`): a case ``created`` through
the API, the customer's ``intake`` sent, the reason ``verified`` by the agent, the case
``decided`` or ``closed``. ``when`` holds every condition that must be true (none: always):
a field name and a test (``eq``, ``ne``, ``in``, ``not_in``, ``gt``, ``gte``, ``lt``,
``lte``, ``any`` for lists, or a bare value meaning ``eq``). A field the case does not have yet
(no verified reason before the call) fails every test but ``eq: null``. All matching rules
act, in table order.

:func:`check` refuses a table with the JSON path of the first problem
(``rules[2].when.order_value.gte: must be a number``); :func:`evaluate` never raises on a
valid table.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Final, TypeGuard

from .reasons import ReturnReason

__all__ = [
    "ACTIONS",
    "ALERT_KINDS",
    "FIELDS",
    "Action",
    "Match",
    "Rule",
    "RuleError",
    "RuleTable",
    "Trigger",
    "check",
    "evaluate",
    "version_name",
]


class Trigger(StrEnum):
    CREATED = "created"
    INTAKE = "intake"
    VERIFIED = "verified"
    DECIDED = "decided"
    CLOSED = "closed"


class RuleError(ValueError):
    """A table that cannot be saved: ``path`` is where (``rules[0].then[1].channel``)."""

    def __init__(self, path: str, problem: str) -> None:
        self.path = path
        self.problem = problem
        super().__init__(f"{path}: {problem}")


_REASONS: Final = frozenset(reason.value for reason in ReturnReason)
_GRADES: Final = frozenset({"A", "B", "C", "D"})
_STATES: Final = frozenset({"created", "waiting", "in_call", "decided", "closed"})
_DECISIONS: Final = frozenset({"refund", "partial_refund", "reject", "return_to_warehouse"})
#: Where an item may be routed: the resale channel of each grade (``inference.grading``).
CHANNELS: Final = ("restock", "discount", "live_social", "parts_recycling")
CHANNEL_OF_GRADE: Final = {"A": "restock", "B": "discount", "C": "live_social",
                           "D": "parts_recycling"}  # fmt: skip

#: Each field a condition may test: its type (``reason``, ``grade``, ``text``, ``number``,
#: ``bool``, ``labels``, ``state``, ``decision``) and what it is.
FIELDS: Final[dict[str, tuple[str, str]]] = {
    "claimed_reason": ("reason", "the reason given by the merchant or in the customer's intake"),
    "verified_reason": ("reason", "the reason the agent recorded from the call"),
    "mismatch": ("bool", "the verified reason differs from the claimed one"),
    "grade": ("grade", "the final grade, else the grade the model saw in the call"),
    "damage": ("labels", "the damage the model saw in the call (labels)"),
    "sku": ("text", "the SKU"),
    "category": ("text", "the product category"),
    "order_value": ("number", "what the order line was worth"),
    "refund_amount": ("number", "the refund decided (the order value for a full refund)"),
    "country": ("text", "the customer's country (ISO 3166-1 alpha-2)"),
    "carrier": ("labels", "the carriers and marketplaces of the shipment"),
    "stage": ("state", "the case's state"),
    "decision": ("decision", "the decision taken"),
    "past_returns": ("number", "the customer's earlier return cases (same contact)"),
}
_OPS: Final = frozenset({"eq", "ne", "in", "not_in", "gt", "gte", "lt", "lte", "any"})
_NUMBER_OPS: Final = frozenset({"gt", "gte", "lt", "lte"})

#: Each action: its parameters (name -> kind) and the moments it may run at (None: any).
ACTIONS: Final[dict[str, tuple[dict[str, str], frozenset[Trigger] | None, str]]] = {
    "hold_refund": ({}, None, "hold the refund until the reason is verified or approved"),
    "release_refund": ({}, None, "release a held refund"),
    "route_disposition": (
        {"channel": "channel"},
        None,
        "send the item to a resale channel (restock, discount, live_social, parts_recycling; "
        "by_grade: the final grade's channel, once decided)",
    ),
    "request_reshipment": ({}, None, "ask the merchant's system to ship a replacement"),
    "open_carrier_claim": (
        {},
        None,
        "open a claim against the carrier, with its deadline from the case's dates",
    ),
    "require_second_approval": (
        {"above": "number"},
        frozenset({Trigger.DECIDED}),
        "hold a refund above an amount until a second person approves it",
    ),
    "webhook": ({"event": "event"}, None, "send the case to the merchant's systems"),
    "offer": (
        {"kind": "offer", "percent": "percent?"},
        frozenset({Trigger.INTAKE}),
        "offer the customer an exchange, or a partial refund to keep the item, at intake",
    ),
}
ALERT_KINDS: Final[dict[str, dict[str, str]]] = {
    "sku_return_rate": {"threshold": "share", "min_units": "count?", "window_days": "days?"},
    "sku_rate_jump": {"percent": "percent", "min_units": "count?", "window_days": "days?"},
    "carrier_damage_share": {"threshold": "share", "min_returns": "count?",
                             "window_days": "days?"},
}  # fmt: skip
_ID: Final = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")
_EVENT: Final = re.compile(r"^[a-z][a-z0-9_.]{0,62}$")
MAX_RULES: Final = 200


@dataclass(frozen=True, slots=True)
class Action:
    action: str
    params: Mapping[str, Any]

    def to_json(self) -> dict[str, Any]:
        return {"action": self.action, **self.params}


@dataclass(frozen=True, slots=True)
class Rule:
    id: str
    name: str
    on: frozenset[Trigger]
    when: Mapping[str, Any]
    then: tuple[Action, ...]


@dataclass(frozen=True, slots=True)
class RuleTable:
    """A checked table; ``version`` 0 is the empty table a service starts with."""

    version: int
    rules: tuple[Rule, ...]
    alerts: tuple[Mapping[str, Any], ...]
    body: Mapping[str, Any]

    @property
    def name(self) -> str:
        return version_name(self.version)


def version_name(version: int) -> str:
    return f"return-rules/{version}"


@dataclass(frozen=True, slots=True)
class Match:
    rule: Rule
    actions: tuple[Action, ...]


# -- checking ------------------------------------------------------------------------------------


def _number(value: Any) -> TypeGuard[int | float]:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _check_value(path: str, kind: str, value: Any) -> None:
    if value is None:
        return  # "not known yet" is a value every field may be compared with
    if kind == "reason":
        if value not in _REASONS:
            raise RuleError(path, f"not a reason: one of {', '.join(sorted(_REASONS))}")
    elif kind == "grade":
        if value not in _GRADES:
            raise RuleError(path, "a grade is A, B, C or D")
    elif kind == "state":
        if value not in _STATES:
            raise RuleError(path, f"not a case state: one of {', '.join(sorted(_STATES))}")
    elif kind == "decision":
        if value not in _DECISIONS:
            raise RuleError(path, f"not a decision: one of {', '.join(sorted(_DECISIONS))}")
    elif kind == "number":
        if not _number(value):
            raise RuleError(path, "must be a number")
    elif kind == "bool":
        if not isinstance(value, bool):
            raise RuleError(path, "must be true or false")
    elif not isinstance(value, str) or not value.strip():
        raise RuleError(path, "must be a non-empty string")


def _check_test(path: str, field: str, test: Any) -> None:
    kind = FIELDS[field][0]
    if not isinstance(test, Mapping):
        # A bare value: equality.
        _check_value(path, "text" if kind == "labels" else kind, test)
        return
    if not test:
        raise RuleError(path, "an empty test: give one of " + ", ".join(sorted(_OPS)))
    for op, value in test.items():
        where = f"{path}.{op}"
        if op not in _OPS:
            raise RuleError(where, f"unknown test: one of {', '.join(sorted(_OPS))}")
        if op in _NUMBER_OPS:
            if kind != "number":
                raise RuleError(where, f"{field} is not a number: use eq, ne, in or not_in")
            _check_value(where, "number", value)
        elif op in ("in", "not_in", "any"):
            if op == "any" and kind != "labels":
                raise RuleError(where, f"{field} is not a list: use in")
            if not isinstance(value, list) or not value:
                raise RuleError(where, "must be a non-empty list")
            element = "text" if kind == "labels" else kind
            for index, item in enumerate(value):
                _check_value(f"{where}[{index}]", element, item)
        else:
            _check_value(where, "text" if kind == "labels" else kind, value)


def _check_param(path: str, kind: str, value: Any) -> Any:
    optional = kind.endswith("?")
    kind = kind.rstrip("?")
    if value is None:
        if optional:
            return None
        raise RuleError(path, "required")
    if kind == "channel":
        if value != "by_grade" and value not in CHANNELS:
            raise RuleError(path, f"one of {', '.join(CHANNELS)} or by_grade")
    elif kind == "offer":
        if value not in ("exchange", "keep"):
            raise RuleError(path, "an offer is exchange or keep")
    elif kind == "event":
        if not isinstance(value, str) or not _EVENT.match(value):
            raise RuleError(path, "an event name: lower-case words with dots (erp.restock)")
    elif kind == "percent":
        if not _number(value) or not 0 < value < 100:
            raise RuleError(path, "a percentage between 0 and 100")
    elif kind == "share":
        if not _number(value) or not 0 < value < 1:
            raise RuleError(path, "a share between 0 and 1 (0.25 is 25 %)")
    elif kind in ("count", "days"):
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise RuleError(path, "a whole number, at least 1")
    elif kind == "number":
        if not _number(value) or value < 0:
            raise RuleError(path, "must be a number, 0 or more")
    return value


def _check_action(path: str, raw: Any, on: frozenset[Trigger]) -> Action:
    if not isinstance(raw, Mapping):
        raise RuleError(path, 'an action is an object: {"action": "hold_refund", ...}')
    name = raw.get("action")
    if name not in ACTIONS:
        raise RuleError(f"{path}.action", f"unknown action: one of {', '.join(sorted(ACTIONS))}")
    params, when, _ = ACTIONS[name]
    for key in raw:
        if key != "action" and key not in params:
            raise RuleError(f"{path}.{key}", f"{name} takes no {key!r}")
    if when is not None and not on <= when:
        allowed = ", ".join(sorted(t.value for t in when))
        raise RuleError(f"{path}.action", f"{name} cannot apply on {_names(on - when)}: only on "
                        f"{allowed}")  # fmt: skip
    values = {
        key: _check_param(f"{path}.{key}", kind, raw.get(key)) for key, kind in params.items()
    }
    if name == "offer" and values["kind"] == "keep" and values.get("percent") is None:
        raise RuleError(f"{path}.percent", "a keep offer needs the percentage refunded")
    if name == "route_disposition" and values["channel"] == "by_grade":
        graded = frozenset({Trigger.DECIDED, Trigger.CLOSED})
        if not on <= graded:
            raise RuleError(
                f"{path}.channel",
                f"by_grade needs the final grade: only on decided or closed, not on "
                f"{_names(on - graded)}",
            )
    return Action(name, {key: value for key, value in values.items() if value is not None})


def _names(triggers: Iterable[Trigger]) -> str:
    return ", ".join(sorted(t.value for t in triggers))


def _check_rule(path: str, raw: Any) -> Rule:
    if not isinstance(raw, Mapping):
        raise RuleError(path, "a rule is an object with id, on, when and then")
    for key in raw:
        if key not in ("id", "name", "on", "when", "then"):
            raise RuleError(f"{path}.{key}", "unknown: a rule has id, name, on, when and then")
    rule_id = raw.get("id")
    if not isinstance(rule_id, str) or not _ID.match(rule_id):
        raise RuleError(f"{path}.id", "lower-case letters, digits, - and _ (at most 63)")
    name = raw.get("name", rule_id)
    if not isinstance(name, str) or not 0 < len(name) <= 200:
        raise RuleError(f"{path}.name", "a text of 1 to 200 characters")
    on_raw = raw.get("on")
    if not isinstance(on_raw, list) or not on_raw:
        raise RuleError(f"{path}.on", f"a non-empty list of moments: {_names(Trigger)}")
    triggers = []
    for index, item in enumerate(on_raw):
        if item not in {t.value for t in Trigger}:
            raise RuleError(f"{path}.on[{index}]", f"not a moment: one of {_names(Trigger)}")
        triggers.append(Trigger(item))
    on = frozenset(triggers)
    when = raw.get("when", {})
    if not isinstance(when, Mapping):
        raise RuleError(f"{path}.when", "an object of field: test")
    for field, test in when.items():
        if field not in FIELDS:
            raise RuleError(
                f"{path}.when.{field}", f"unknown field: one of {', '.join(sorted(FIELDS))}"
            )
        _check_test(f"{path}.when.{field}", field, test)
    then = raw.get("then")
    if not isinstance(then, list) or not then:
        raise RuleError(f"{path}.then", "a non-empty list of actions")
    actions = tuple(_check_action(f"{path}.then[{i}]", a, on) for i, a in enumerate(then))
    return Rule(rule_id, name, on, dict(when), actions)


def _check_alert(path: str, raw: Any) -> Mapping[str, Any]:
    if not isinstance(raw, Mapping):
        raise RuleError(path, "an alert is an object with id and kind")
    alert_id = raw.get("id")
    if not isinstance(alert_id, str) or not _ID.match(alert_id):
        raise RuleError(f"{path}.id", "lower-case letters, digits, - and _ (at most 63)")
    kind = raw.get("kind")
    if kind not in ALERT_KINDS:
        raise RuleError(f"{path}.kind", f"one of {', '.join(sorted(ALERT_KINDS))}")
    params = ALERT_KINDS[kind]
    for key in raw:
        if key not in ("id", "kind") and key not in params:
            raise RuleError(f"{path}.{key}", f"{kind} takes no {key!r}")
    for key, param in params.items():
        _check_param(f"{path}.{key}", param, raw.get(key))
    return dict(raw)


def check(body: Any, *, version: int = 0) -> RuleTable:
    """``body`` as a checked :class:`RuleTable`; :class:`RuleError` at the first problem."""
    if not isinstance(body, Mapping):
        raise RuleError("$", 'a rule table is an object: {"rules": [...], "alerts": [...]}')
    for key in body:
        if key not in ("rules", "alerts"):
            raise RuleError(key, "unknown: a rule table has rules and alerts")
    rules_raw = body.get("rules", [])
    if not isinstance(rules_raw, list):
        raise RuleError("rules", "a list of rules")
    if len(rules_raw) > MAX_RULES:
        raise RuleError("rules", f"at most {MAX_RULES} rules")
    rules = tuple(_check_rule(f"rules[{i}]", raw) for i, raw in enumerate(rules_raw))
    seen: set[str] = set()
    for index, rule in enumerate(rules):
        if rule.id in seen:
            raise RuleError(f"rules[{index}].id", f"{rule.id!r} is used twice")
        seen.add(rule.id)
    alerts_raw = body.get("alerts", [])
    if not isinstance(alerts_raw, list):
        raise RuleError("alerts", "a list of alert rules")
    alerts = tuple(_check_alert(f"alerts[{i}]", raw) for i, raw in enumerate(alerts_raw))
    ids = [alert["id"] for alert in alerts]
    for index, alert_id in enumerate(ids):
        if alert_id in ids[:index]:
            raise RuleError(f"alerts[{index}].id", f"{alert_id!r} is used twice")
    return RuleTable(version, rules, alerts, {"rules": rules_raw, "alerts": alerts_raw})


# -- evaluating ----------------------------------------------------------------------------------


def _labels(value: Any) -> list[str]:
    if value is None:
        return []
    items = value if isinstance(value, list | tuple) else str(value).split(",")
    return [str(item).strip().lower() for item in items if str(item).strip()]


def _same(kind: str, actual: Any, expected: Any) -> bool:
    if kind in ("text", "labels") and isinstance(expected, str):
        if kind == "labels":
            return expected.strip().lower() in _labels(actual)
        return isinstance(actual, str) and actual.strip().lower() == expected.strip().lower()
    if kind == "number" and _number(actual) and _number(expected):
        return float(actual) == float(expected)
    return bool(actual == expected)


def _passes(field: str, test: Any, facts: Mapping[str, Any]) -> bool:
    kind = FIELDS[field][0]
    actual = facts.get(field)
    if not isinstance(test, Mapping):
        test = {"eq": test}
    for op, expected in test.items():
        if op == "eq":
            ok = actual is None if expected is None else _same(kind, actual, expected)
        elif op == "ne":
            ok = actual is not None if expected is None else not _same(kind, actual, expected)
        elif op in ("in", "any"):
            ok = any(_same(kind, actual, item) for item in expected)
        elif op == "not_in":
            ok = actual is not None and not any(_same(kind, actual, item) for item in expected)
        else:
            if not _number(actual) or not _number(expected):
                return False
            number, bound = float(actual), float(expected)
            ok = {"gt": number > bound, "gte": number >= bound, "lt": number < bound,
                  "lte": number <= bound}[op]  # fmt: skip
        if not ok:
            return False
    return True


def evaluate(table: RuleTable, facts: Mapping[str, Any], trigger: Trigger) -> list[Match]:
    """The rules of ``table`` that run on ``trigger`` and whose conditions all hold for
    ``facts`` (see :data:`FIELDS`), in table order."""
    return [
        Match(rule, rule.then)
        for rule in table.rules
        if trigger in rule.on and all(_passes(f, t, facts) for f, t in rule.when.items())
    ]


def describe(table: RuleTable) -> Sequence[Mapping[str, Any]]:
    """What each rule does, for people: its id, name, moments, conditions and actions."""
    return [
        {
            "id": rule.id,
            "name": rule.name,
            "on": sorted(t.value for t in rule.on),
            "when": dict(rule.when),
            "then": [action.to_json() for action in rule.then],
        }
        for rule in table.rules
    ]
