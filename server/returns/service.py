"""Returns operations around the call: the customer's intake, the verified reason, the rule table
(saved as versions, tried on past cases) and the actions its rules take on a case.

Rules run at the moments of :class:`~server.returns.rules.Trigger`: the API's case creation, the
intake, the verification and the decision and close (heard from the case service as they
commit). Each action is one case change with its own timeline entry (``returns.rule_action``:
the rule's id, the table's version, the moment, the action and what it did) and, where it tells
the merchant's systems, its webhook in the same transaction. An action that fails is logged and
noted (``returns.rule_failed``) and leaves the case as it was.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, Final

from evidence import claim_deadlines
from server.cases import Case, CaseEventType, CaseService, CaseState
from server.errors import Conflict, Forbidden, InvalidRequest, InvalidState
from server.storage.returns import RulesStore, RuleVersion
from signaling import CaseSummary, SubjectId

from .reasons import ReturnReason
from .rules import (
    CHANNEL_OF_GRADE,
    Action,
    Match,
    RuleError,
    RuleTable,
    Trigger,
    check,
    evaluate,
)

__all__ = ["DryRun", "Intake", "Offer", "ReturnsService", "facts_of"]

logger = logging.getLogger(__name__)

#: The case state each trigger follows from, for the listener.
_STATE_TRIGGERS: Final = {CaseState.DECIDED.value: Trigger.DECIDED,
                          CaseState.CLOSED.value: Trigger.CLOSED}  # fmt: skip
_EMPTY: Final = RuleTable(0, (), (), {"rules": [], "alerts": []})
MAX_DRY_RUN_CASES: Final = 100_000


def _number(value: Decimal | float | None) -> float | None:
    return float(value) if value is not None else None


def facts_of(case: Case, *, past_returns: int) -> dict[str, Any]:
    """What the rules' conditions read of ``case`` (see ``rules.FIELDS``)."""
    model = (case.grading or {}).get("model") or {}
    damage = model.get("damage") if isinstance(model, Mapping) else None
    labels = [d.get("label") for d in damage or [] if isinstance(d, Mapping) and d.get("label")]
    refund = case.refund_amount
    if refund is None and case.decision == "refund":
        refund = case.order_value
    return {
        "claimed_reason": case.claimed_reason,
        "verified_reason": case.verified_reason,
        "mismatch": case.mismatched,
        "grade": case.final_grade or (model.get("grade") if isinstance(model, Mapping) else None),
        "damage": labels,
        "sku": case.sku,
        "category": case.category,
        "order_value": _number(case.order_value),
        "refund_amount": _number(refund),
        "country": case.country,
        "carrier": case.carrier,
        "stage": case.state.value,
        "decision": case.decision,
        "past_returns": past_returns,
    }


@dataclass(frozen=True, slots=True)
class Offer:
    """What the customer may take instead of a return: ``exchange``, or ``keep`` the item with
    ``percent`` of the order value refunded (``amount`` in ``currency`` when the value is
    known)."""

    rule: str
    kind: str
    percent: float | None = None
    amount: float | None = None
    currency: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "rule": self.rule,
            "kind": self.kind,
            "percent": self.percent,
            "amount": self.amount,
            "currency": self.currency,
        }


@dataclass(frozen=True, slots=True)
class Intake:
    """The customer's answers before the call."""

    reason: ReturnReason
    description: str | None
    photos: tuple[str, ...]
    #: The offer taken (its rule and kind), or None: the customer wants the return.
    offer: Mapping[str, Any] | None


@dataclass(frozen=True, slots=True)
class DryRun:
    version: str
    since: float
    until: float
    cases: int
    #: Per rule: how many cases it would have matched, at which moments, and a few of them.
    rules: Sequence[Mapping[str, Any]]


class ReturnsService:
    """Intake, verification, the rule table and its actions. Listens to the case service."""

    def __init__(
        self,
        cases: CaseService,
        store: RulesStore,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._cases = cases
        self._store = store
        self._clock = clock
        self._table: RuleTable | None = None

    # -- the rule table ------------------------------------------------------------------------

    async def table(self) -> RuleTable:
        """The rule table in force (the newest version; the empty table before any)."""
        if self._table is None:
            latest = await self._store.latest()
            self._table = _EMPTY if latest is None else check(latest.body, version=latest.version)
        return self._table

    async def versions(self) -> list[RuleVersion]:
        return await self._store.versions()

    async def version(self, version: int) -> RuleVersion | None:
        return await self._store.get(version)

    async def save(self, body: Any, *, actor: str, note: str | None) -> RuleTable:
        """Check ``body`` and keep it as the next version (who and why with it): the change is
        audited by the version history, which is never rewritten."""
        checked = _checked(body)
        saved = await self._store.add(checked.body, author=actor, note=note, at=self._clock())
        self._table = check(saved.body, version=saved.version)
        logger.info("return rules saved", extra={"version": saved.version, "actor": actor})
        return self._table

    def forget(self) -> None:
        """Read the table again on next use (another node saved one)."""
        self._table = None

    async def dry_run(self, body: Any, *, since: float, until: float) -> DryRun:
        """What ``body`` would have done to the return cases created in ``since``..``until``:
        each rule evaluated at every moment each case reached (intake, verification,
        decision, close), its actions counted, nothing written."""
        checked = _checked(body)
        if until <= since:
            raise InvalidRequest("until must be after since", fields=("until",))
        cases = await self._cases.returns_between(since, until, limit=MAX_DRY_RUN_CASES)
        matched: dict[str, dict[str, Any]] = {
            rule.id: {"id": rule.id, "name": rule.name, "cases": 0, "moments": {}, "examples": []}
            for rule in checked.rules
        }
        for case in cases:
            past = (
                await self._cases.returns_of(case.customer_contact, before=case.created_at)
                if (case.customer_contact)
                else 0
            )
            facts = facts_of(case, past_returns=past)
            hit: set[str] = set()
            for trigger in _reached(case):
                for match in evaluate(checked, {**facts, "stage": _stage_at(case, trigger)},
                                      trigger):  # fmt: skip
                    entry = matched[match.rule.id]
                    entry["moments"][trigger.value] = entry["moments"].get(trigger.value, 0) + 1
                    hit.add(match.rule.id)
            for rule_id in hit:
                entry = matched[rule_id]
                entry["cases"] += 1
                if len(entry["examples"]) < 5:
                    entry["examples"].append(case.id)
        return DryRun(checked.name, since, until, len(cases), list(matched.values()))

    # -- the customer's intake and the agent's verification -----------------------------------

    async def offers(self, case: Case, reason: ReturnReason) -> list[Offer]:
        """The offers the rules make a customer with ``case`` who gives ``reason``."""
        table = await self.table()
        past = await self._past(case)
        facts = {**facts_of(case, past_returns=past), "claimed_reason": reason.value}
        offers: list[Offer] = []
        for match in evaluate(table, facts, Trigger.INTAKE):
            for action in match.actions:
                if action.action != "offer":
                    continue
                percent = action.params.get("percent")
                amount = None
                if percent is not None and case.order_value is not None:
                    amount = round(float(case.order_value) * float(percent) / 100, 2)
                offers.append(
                    Offer(
                        match.rule.id,
                        str(action.params["kind"]),
                        percent,
                        amount,
                        case.order_currency,
                    )  # fmt: skip
                )
        return offers

    async def submit_intake(self, case_id: str, intake: Intake) -> Case:
        """Keep the customer's answers on the case (once: a second intake is refused), the
        reason as the claimed one unless the merchant gave one, and run the intake rules."""
        now = self._clock()
        current = await self._cases.require(case_id)
        valid_offers = {(o.rule, o.kind) for o in await self.offers(current, intake.reason)}
        if intake.offer is not None:
            wanted = (str(intake.offer.get("rule")), str(intake.offer.get("kind")))
            if wanted not in valid_offers:
                raise InvalidRequest("offer: not one this case was offered", fields=("offer",))

        def decide(case: Case) -> tuple[Mapping[str, Any], Mapping[str, Any], str | None]:
            if case.intake is not None:
                raise Conflict("the answers were already sent")
            if case.state not in (CaseState.CREATED, CaseState.WAITING):
                raise InvalidState(f"a {case.state.value} case takes no intake")
            answers = {
                "reason": intake.reason.value,
                "description": intake.description,
                "photos": list(intake.photos),
                "offer": dict(intake.offer) if intake.offer is not None else None,
                "submitted_at": now,
            }
            values: dict[str, Any] = {"intake": answers}
            if case.claimed_reason is None:
                values["claimed_reason"] = intake.reason.value
            return (
                values,
                {**answers, "claimed_reason": values.get("claimed_reason", case.claimed_reason)},
                None,
            )

        case = await self._cases.apply_returns(
            case_id, actor=SubjectId.customer(case_id), event=CaseEventType.INTAKE, decide=decide
        )
        if await self.run(case, Trigger.INTAKE):
            case = await self._cases.require(case_id)
        return case

    async def verify(
        self, case_id: str, reason: ReturnReason, *, actor: str, note: str | None
    ) -> Case:
        """The reason the agent found in the call, with the claimed one and whether they
        differ; runs the verification rules."""

        def decide(case: Case) -> tuple[Mapping[str, Any], Mapping[str, Any], str | None]:
            if case.state is CaseState.CLOSED:
                raise InvalidState("a closed case keeps its reasons")
            mismatch = None if case.claimed_reason is None else case.claimed_reason != reason.value
            data = {
                "verified_reason": reason.value,
                "claimed_reason": case.claimed_reason,
                "mismatch": mismatch,
                "note": note,
            }
            return {"verified_reason": reason.value}, data, None

        case = await self._cases.apply_returns(
            case_id, actor=actor, event=CaseEventType.REASON_VERIFIED, decide=decide
        )
        if await self.run(case, Trigger.VERIFIED):
            case = await self._cases.require(case_id)  # as the rules left it
        return case

    async def approve(self, case_id: str, *, actor: str, note: str | None) -> Case:
        """A second person approves the refund a rule held for approval; the refund is
        released. The one who decided the case cannot approve it."""
        now = self._clock()

        def decide(case: Case) -> tuple[Mapping[str, Any], Mapping[str, Any], str | None]:
            approval = dict(case.approval or {})
            if approval.get("state") != "pending":
                raise InvalidState("no refund of this case waits for approval")
            if actor == case.agent_id or actor == approval.get("decided_by"):
                raise Forbidden("a second person approves: not the one who decided")
            approval.update(state="approved", approved_by=actor, approved_at=now, note=note)
            data = {"approval": approval, "refund_state": "released"}
            return (
                {"approval": approval, "refund_state": "released"},
                data,
                ("returns.refund_released"),
            )

        return await self._cases.apply_returns(
            case_id, actor=actor, event=CaseEventType.APPROVED, decide=decide
        )

    # -- rules at work -------------------------------------------------------------------------

    async def case_changed(self, summary: CaseSummary) -> None:
        """The case service's listener: a decision or a close runs those moments' rules."""
        trigger = _STATE_TRIGGERS.get(summary.state)
        if trigger is None or summary.kind != "return":
            return
        case = await self._cases.get_case(summary.case_id)
        if case is None or case.state.value != summary.state:
            return
        events = await self._cases.events(case.id)
        if any(e.type == CaseEventType.RULE_ACTION.value and e.data.get("trigger") ==
               trigger.value for e in events):  # fmt: skip
            return  # already ran for this moment (a listener heard the same change twice)
        await self.run(case, trigger)

    async def run(self, case: Case, trigger: Trigger) -> list[dict[str, Any]]:
        """Evaluate the table on ``case`` at ``trigger`` and take every matching action; what
        each did, in order (an action that failed says so)."""
        if case.kind.value != "return":
            return []
        table = await self.table()
        if not table.rules:
            return []
        facts = facts_of(case, past_returns=await self._past(case))
        done: list[dict[str, Any]] = []
        for match in evaluate(table, facts, trigger):
            for action in match.actions:
                if action.action == "offer":
                    continue  # shown at intake (``offers``), nothing to do to the case
                done.append(await self._act(case.id, table, match, action, trigger))
        return done

    async def _past(self, case: Case) -> int:
        if not case.customer_contact:
            return 0
        return await self._cases.returns_of(case.customer_contact, before=case.created_at)

    async def _act(
        self, case_id: str, table: RuleTable, match: Match, action: Action, trigger: Trigger
    ) -> dict[str, Any]:
        base = {
            "rule": match.rule.id,
            "rule_name": match.rule.name,
            "version": table.name,
            "trigger": trigger.value,
            "action": action.action,
            "params": dict(action.params),
        }
        now = self._clock()

        def decide(case: Case) -> tuple[Mapping[str, Any], Mapping[str, Any], str | None]:
            values, result, webhook = _effect(case, action, now)
            return values, {**base, "result": result}, webhook

        try:
            await self._cases.apply_returns(
                case_id, actor=f"rule:{match.rule.id}", event=CaseEventType.RULE_ACTION,
                decide=decide,
            )  # fmt: skip
        except Exception as exc:
            logger.exception(
                "return rule failed", extra={"case_id": case_id, "rule": match.rule.id}
            )
            failed = {**base, "error": str(exc) or type(exc).__name__}
            await self._cases.apply_returns(
                case_id, actor=f"rule:{match.rule.id}", event=CaseEventType.RULE_FAILED,
                decide=lambda case: ({}, failed, None),
            )  # fmt: skip
            return {**failed, "ok": False}
        return {**base, "ok": True}


def _checked(body: Any) -> RuleTable:
    try:
        return check(body)
    except RuleError as exc:
        raise InvalidRequest(str(exc), fields=(exc.path,)) from None


def _reached(case: Case) -> list[Trigger]:
    moments = [Trigger.CREATED]
    if case.intake is not None:
        moments.append(Trigger.INTAKE)
    if case.verified_reason is not None:
        moments.append(Trigger.VERIFIED)
    if case.decided_at is not None:
        moments.append(Trigger.DECIDED)
    if case.closed_at is not None:
        moments.append(Trigger.CLOSED)
    return moments


def _stage_at(case: Case, trigger: Trigger) -> str:
    if trigger is Trigger.DECIDED:
        return CaseState.DECIDED.value
    if trigger is Trigger.CLOSED:
        return CaseState.CLOSED.value
    if trigger is Trigger.CREATED:
        return CaseState.CREATED.value
    return case.state.value


def _iso(ts: float | None) -> datetime | None:
    return datetime.fromtimestamp(ts, UTC) if ts is not None else None


def _effect(
    case: Case, action: Action, now: float
) -> tuple[dict[str, Any], dict[str, Any], str | None]:
    """What ``action`` does to ``case``: (the new values, what to record, the webhook event).
    Raises when it cannot apply to this case (the caller records the failure)."""
    name = action.action
    if name == "hold_refund":
        if case.refund_state == "released":
            raise Conflict("the refund was already released")
        return {"refund_state": "held"}, {"refund_state": "held"}, "returns.refund_held"
    if name == "release_refund":
        if case.approval and case.approval.get("state") == "pending":
            raise Conflict("the refund waits for a second approval")
        return (
            {"refund_state": "released"},
            {"refund_state": "released"},
            ("returns.refund_released"),
        )
    if name == "route_disposition":
        channel = str(action.params["channel"])
        if channel == "by_grade":
            if case.final_grade is None:
                raise Conflict("the case has no final grade to route by")
            channel = CHANNEL_OF_GRADE[case.final_grade]
        return {"disposition": channel}, {"disposition": channel}, "returns.disposition"
    if name == "request_reshipment":
        return {}, {"reshipment": "requested"}, "returns.reshipment_requested"
    if name == "open_carrier_claim":
        if not case.carrier:
            raise Conflict("the case names no carrier to claim against")
        deadlines = claim_deadlines(
            delivered_at=_iso(case.delivered_at),
            shipped_at=_iso(case.shipped_at),
            carriers=[part.strip() for part in case.carrier.split(",") if part.strip()],
            now=datetime.fromtimestamp(now, UTC),
        )
        claims = [d.to_json() for d in deadlines]
        return {}, {"carrier": case.carrier, "deadlines": claims}, "returns.carrier_claim"
    if name == "require_second_approval":
        above = float(action.params["above"])
        amount = (
            case.refund_amount
            if case.refund_amount is not None
            else (case.order_value if case.decision == "refund" else None)
        )
        if amount is None or float(amount) <= above:
            return {}, {"required": False, "amount": _number(amount), "above": above}, None
        approval = {
            "state": "pending",
            "above": above,
            "amount": float(amount),
            "currency": case.currency or case.order_currency,
            "decided_by": case.agent_id,
            "asked_at": now,
        }
        return (
            {"approval": approval, "refund_state": "held"},
            {"required": True, **approval},
            ("returns.approval_required"),
        )
    if name == "webhook":
        event = f"returns.{action.params['event']}"
        return {}, {"webhook": event}, event
    raise Conflict(f"{name} does not act on a case")
