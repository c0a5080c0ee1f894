"""The reason taxonomy's codes, and the return rule table: what is refused (with the path of the
problem) and what matches (table-driven)."""

from __future__ import annotations

from typing import Any

import pytest

from server.returns import (
    FIELDS,
    REASONS,
    ReturnReason,
    RuleError,
    Trigger,
    check,
    evaluate,
    shopify_code,
    x12_code,
)
from web.locales import SUPPORTED_LOCALES, catalogues
from web.pages import RETURN_REASONS

# Shopify Admin GraphQL ReturnReason values, and X12 element 1293 codes (RDR02).
SHOPIFY = {"COLOR", "DEFECTIVE", "NOT_AS_DESCRIBED", "OTHER", "SIZE_TOO_LARGE", "SIZE_TOO_SMALL",
           "STYLE", "UNKNOWN", "UNWANTED", "WRONG_ITEM"}  # fmt: skip
X12 = set(
    "BC CO CV DA DI DM DP DR DT EI EO EW LP MD NA OP PE PF PR PS PW RE SD SM SP SR ST TE WG".split()
)


@pytest.mark.parametrize(
    ("reason", "shopify", "x12"),
    [
        ("color", "COLOR", "CV"),
        ("defective", "DEFECTIVE", "DR"),
        ("not_as_described", "NOT_AS_DESCRIBED", "NA"),
        ("size_too_large", "SIZE_TOO_LARGE", "PF"),
        ("size_too_small", "SIZE_TOO_SMALL", "PF"),
        ("style", "STYLE", "ST"),
        ("unwanted", "UNWANTED", "CO"),
        ("wrong_item", "WRONG_ITEM", "WG"),
        ("damaged_in_transit", "DEFECTIVE", "DT"),
        ("missing_parts", "NOT_AS_DESCRIBED", "NA"),
        ("other", "OTHER", None),
    ],
)
def test_every_reason_maps_to_shopify_and_x12(reason: str, shopify: str, x12: str | None) -> None:
    assert shopify_code(reason) == shopify and x12_code(reason) == x12
    assert shopify in SHOPIFY and (x12 is None or x12 in X12)


def test_the_taxonomy_is_complete() -> None:
    assert set(REASONS) == set(ReturnReason)


def rule(**fields: Any) -> dict[str, Any]:
    return {"id": "r1", "on": ["verified"], "then": [{"action": "hold_refund"}], **fields}


@pytest.mark.parametrize(
    ("body", "path", "problem"),
    [
        ([], "$", "a rule table is an object"),
        ({"rulez": []}, "rulez", "unknown"),
        ({"rules": [rule(id="Bad Id")]}, "rules[0].id", "lower-case"),
        ({"rules": [rule(on=[])]}, "rules[0].on", "non-empty list"),
        ({"rules": [rule(on=["shipped"])]}, "rules[0].on[0]", "not a moment"),
        ({"rules": [rule(when={"colour": "red"})]}, "rules[0].when.colour", "unknown field"),
        ({"rules": [rule(when={"order_value": {"gte": "100"}})]},
         "rules[0].when.order_value.gte", "must be a number"),
        ({"rules": [rule(when={"sku": {"gte": 3}})]}, "rules[0].when.sku.gte", "not a number"),
        ({"rules": [rule(when={"claimed_reason": {"in": ["broken"]}})]},
         "rules[0].when.claimed_reason.in[0]", "not a reason"),
        ({"rules": [rule(when={"grade": "E"})]}, "rules[0].when.grade", "A, B, C or D"),
        ({"rules": [rule(then=[])]}, "rules[0].then", "non-empty list"),
        ({"rules": [rule(then=[{"action": "refund_twice"}])]}, "rules[0].then[0].action",
         "unknown action"),
        ({"rules": [rule(then=[{"action": "route_disposition", "channel": "ebay"}])]},
         "rules[0].then[0].channel", "restock"),
        ({"rules": [rule(then=[{"action": "route_disposition", "channel": "by_grade"}])]},
         "rules[0].then[0].channel", "needs the final grade"),
        ({"rules": [rule(then=[{"action": "offer", "kind": "exchange"}])]},
         "rules[0].then[0].action", "only on intake"),
        ({"rules": [rule(on=["intake"], then=[{"action": "offer", "kind": "keep"}])]},
         "rules[0].then[0].percent", "percentage refunded"),
        ({"rules": [rule(then=[{"action": "hold_refund", "until": "monday"}])]},
         "rules[0].then[0].until", "takes no"),
        ({"rules": [rule(), rule()]}, "rules[1].id", "used twice"),
        ({"alerts": [{"id": "a", "kind": "sku_return_rate", "threshold": 25}]},
         "alerts[0].threshold", "a share between 0 and 1"),
        ({"alerts": [{"id": "a", "kind": "weather"}]}, "alerts[0].kind", "one of"),
    ],
)  # fmt: skip
def test_a_bad_table_is_refused_with_the_path_of_the_problem(
    body: Any, path: str, problem: str
) -> None:
    with pytest.raises(RuleError) as refused:
        check(body)
    assert refused.value.path == path
    assert problem in refused.value.problem, refused.value.problem


TABLE = check(
    {
        "rules": [
            {"id": "hold-big", "on": ["created", "intake"],
             "when": {"order_value": {"gte": 100}}, "then": [{"action": "hold_refund"}]},
            {"id": "transit", "on": ["verified"],
             "when": {"verified_reason": "damaged_in_transit", "carrier": {"any": ["ups"]}},
             "then": [{"action": "request_reshipment"}, {"action": "open_carrier_claim"}]},
            {"id": "mismatch", "on": ["verified"], "when": {"mismatch": True},
             "then": [{"action": "webhook", "event": "erp.mismatch"}]},
            {"id": "keep-cheap", "on": ["intake"],
             "when": {"claimed_reason": {"in": ["unwanted", "style"]}, "order_value": {"lt": 30},
                      "past_returns": {"lte": 2}},
             "then": [{"action": "offer", "kind": "keep", "percent": 30}]},
            {"id": "route", "on": ["decided"], "when": {"grade": {"not_in": ["D"]}},
             "then": [{"action": "route_disposition", "channel": "by_grade"}]},
            {"id": "not-verified", "on": ["decided"], "when": {"verified_reason": None},
             "then": [{"action": "hold_refund"}]},
            {"id": "dented", "on": ["verified"], "when": {"damage": {"any": ["dent", "crack"]}},
             "then": [{"action": "open_carrier_claim"}]},
            {"id": "one-sku", "on": ["created"], "when": {"sku": "sku-9"},
             "then": [{"action": "webhook", "event": "erp.sku9"}]},
            {"id": "footwear", "on": ["created"],
             "when": {"category": {"in": ["shoes", "apparel"]}},
             "then": [{"action": "route_disposition", "channel": "discount"}]},
            {"id": "abroad", "on": ["created"], "when": {"country": {"not_in": ["DE", "AT"]}},
             "then": [{"action": "hold_refund"}]},
            {"id": "late-verify", "on": ["verified"],
             "when": {"stage": {"in": ["decided", "closed"]}},
             "then": [{"action": "webhook", "event": "erp.late"}]},
            {"id": "big-refund", "on": ["decided"], "when": {"refund_amount": {"gt": 200}},
             "then": [{"action": "require_second_approval", "above": 200}]},
            {"id": "rejected", "on": ["decided"], "when": {"decision": "reject"},
             "then": [{"action": "webhook", "event": "erp.rejected"}]},
        ]
    }
)  # fmt: skip


def facts(**values: Any) -> dict[str, Any]:
    base = {"claimed_reason": None, "verified_reason": None, "mismatch": None, "grade": None,
            "damage": [], "sku": "SKU-1", "category": "audio", "order_value": 50.0,
            "refund_amount": None, "country": "DE", "carrier": None, "stage": "created",
            "decision": None, "past_returns": 0}  # fmt: skip
    return {**base, **values}


@pytest.mark.parametrize(
    ("trigger", "values", "matched"),
    [
        (Trigger.CREATED, {"order_value": 150.0}, ["hold-big"]),
        (Trigger.CREATED, {"order_value": 99.99}, []),
        (Trigger.CREATED, {"order_value": None}, []),
        (Trigger.VERIFIED, {"order_value": 150.0}, []),
        (Trigger.VERIFIED, {"verified_reason": "damaged_in_transit", "carrier": "UPS, Amazon"},
         ["transit"]),
        (Trigger.VERIFIED, {"verified_reason": "damaged_in_transit", "carrier": "DHL"}, []),
        (Trigger.VERIFIED, {"verified_reason": "defective", "mismatch": True}, ["mismatch"]),
        (Trigger.VERIFIED, {"verified_reason": "defective", "mismatch": None}, []),
        (Trigger.INTAKE, {"claimed_reason": "style", "order_value": 20.0}, ["keep-cheap"]),
        (Trigger.INTAKE, {"claimed_reason": "style", "order_value": 20.0, "past_returns": 3}, []),
        (Trigger.INTAKE, {"claimed_reason": "defective", "order_value": 20.0}, []),
        (Trigger.DECIDED, {"grade": "B", "verified_reason": "defective"}, ["route"]),
        (Trigger.DECIDED, {"grade": "D", "verified_reason": "defective"}, []),
        (Trigger.DECIDED, {"grade": None}, ["not-verified"]),
        # The damage the model saw: any of the labels, case-insensitively.
        (Trigger.VERIFIED, {"verified_reason": "defective", "damage": ["scratch", "Crack"]},
         ["dented"]),
        (Trigger.VERIFIED, {"verified_reason": "defective", "damage": ["scratch"]}, []),
        (Trigger.VERIFIED, {"verified_reason": "defective", "damage": []}, []),
        # Text fields compare case-insensitively, whole: SKU-90 is not sku-9.
        (Trigger.CREATED, {"sku": "SKU-9"}, ["one-sku"]),
        (Trigger.CREATED, {"sku": "SKU-90"}, []),
        (Trigger.CREATED, {"category": "Shoes"}, ["footwear"]),
        (Trigger.CREATED, {"category": None}, []),
        (Trigger.CREATED, {"country": "FR"}, ["abroad"]),
        (Trigger.CREATED, {"country": "AT"}, []),
        (Trigger.CREATED, {"country": None}, []),  # not_in: an unknown country is not "not in"
        (Trigger.VERIFIED, {"verified_reason": "defective", "stage": "decided"}, ["late-verify"]),
        (Trigger.VERIFIED, {"verified_reason": "defective", "stage": "in_call"}, []),
        (Trigger.DECIDED, {"grade": "D", "verified_reason": "defective", "refund_amount": 250.0},
         ["big-refund"]),
        (Trigger.DECIDED, {"grade": "D", "verified_reason": "defective", "refund_amount": 200},
         []),
        (Trigger.DECIDED, {"grade": "D", "verified_reason": "defective", "refund_amount": None},
         []),
        (Trigger.DECIDED, {"grade": "D", "verified_reason": "defective", "decision": "reject"},
         ["rejected"]),
        (Trigger.DECIDED, {"grade": "D", "verified_reason": "defective", "decision": "refund"},
         []),
        # Every matching rule acts, in table order.
        (Trigger.CREATED, {"order_value": 150.0, "sku": "sku-9", "country": "FR"},
         ["hold-big", "one-sku", "abroad"]),
    ],
)  # fmt: skip
def test_rules_match_the_facts_at_their_moment(
    trigger: Trigger, values: dict[str, Any], matched: list[str]
) -> None:
    assert [m.rule.id for m in evaluate(TABLE, facts(**values), trigger)] == matched


def test_the_table_tests_every_field_a_condition_may_test() -> None:
    tested = {field for rule in TABLE.rules for field in rule.when}
    assert tested == set(FIELDS), set(FIELDS) - tested


def test_a_checked_table_keeps_its_body_and_version() -> None:
    table = check({"rules": [rule()], "alerts": []}, version=4)
    assert table.name == "return-rules/4"
    assert table.body == {"rules": [rule()], "alerts": []}
    assert table.rules[0].then[0].action == "hold_refund"


def test_the_intake_offers_every_reason_in_every_language() -> None:
    assert sorted(RETURN_REASONS) == sorted(reason.value for reason in ReturnReason)
    for code in SUPPORTED_LOCALES:
        for reason in RETURN_REASONS:
            assert catalogues().message(code, f"reason.{reason}")
