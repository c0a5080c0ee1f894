"""Cases: a return or support call, from creation to decision, with a timeline.

States: ``created`` -> ``waiting`` (customer's page open) -> ``in_call`` (an agent took it) ->
``decided`` -> ``closed``; ``waiting`` -> ``created`` when the customer leaves before a call, and a
decision may also be recorded straight from ``waiting``. Every change is one transaction that
updates the case, appends a timeline event and enqueues the webhooks for it (a transactional
outbox: a crash never loses a notification nor sends one for a change that did not happen).
"""

from __future__ import annotations

import inspect
import json
import logging
import secrets
import sqlite3
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from enum import StrEnum
from typing import Any, Protocol

# The facts an agent records are the rule table's inputs: one definition, in inference.
from inference.grading import Cosmetic, Functional, Packaging
from server.errors import DomainError, DomainErrorCode, InvalidRequest, InvalidState, NotFound
from server.storage.sqlite import Database
from server.timefmt import iso_time
from signaling.ports import CaseSummary, Identity

__all__ = [
    "Case",
    "CaseEvent",
    "CaseEventSink",
    "CaseEventType",
    "CaseKind",
    "CaseListener",
    "CaseService",
    "CaseState",
    "Cosmetic",
    "Functional",
    "NewCase",
    "Packaging",
    "ReturnDecision",
    "ReturnFacts",
    "ReturnVerdict",
    "SupportOutcome",
    "SupportVerdict",
    "Verdict",
]

logger = logging.getLogger(__name__)


class CaseKind(StrEnum):
    RETURN = "return"
    SUPPORT = "support"


class CaseState(StrEnum):
    CREATED = "created"
    WAITING = "waiting"
    IN_CALL = "in_call"
    DECIDED = "decided"
    CLOSED = "closed"


class ReturnDecision(StrEnum):
    REFUND = "refund"
    PARTIAL_REFUND = "partial_refund"
    REJECT = "reject"
    RETURN_TO_WAREHOUSE = "return_to_warehouse"


class SupportOutcome(StrEnum):
    RESOLVED = "resolved"
    UNRESOLVED = "unresolved"
    ESCALATED = "escalated"
    FOLLOW_UP = "follow_up"


class CaseEventType(StrEnum):
    """Timeline entries. The first four are also the webhook events."""

    CREATED = "case.created"
    STATE_CHANGED = "case.state_changed"
    DECIDED = "case.decided"
    CLOSED = "case.closed"
    JOIN_LINK = "case.join_link"
    CHAT = "chat.message"
    MODEL_VIEW = "grading.model_view"


WEBHOOK_EVENTS = frozenset(
    {
        CaseEventType.CREATED,
        CaseEventType.STATE_CHANGED,
        CaseEventType.DECIDED,
        CaseEventType.CLOSED,
    }
)

#: Which state may follow which. A decision is taken in a call or, for a customer who is
#: waiting but cannot be called (e.g. decided from photos), straight from ``waiting``.
_NEXT: dict[CaseState, frozenset[CaseState]] = {
    CaseState.CREATED: frozenset({CaseState.WAITING}),
    CaseState.WAITING: frozenset({CaseState.CREATED, CaseState.IN_CALL, CaseState.DECIDED}),
    CaseState.IN_CALL: frozenset({CaseState.DECIDED}),
    CaseState.DECIDED: frozenset({CaseState.CLOSED}),
    CaseState.CLOSED: frozenset(),
}

_STATE_TIME = {
    CaseState.WAITING: "waiting_at",
    CaseState.IN_CALL: "in_call_at",
    CaseState.DECIDED: "decided_at",
    CaseState.CLOSED: "closed_at",
}


@dataclass(frozen=True, slots=True)
class NewCase:
    kind: CaseKind
    customer_name: str
    customer_contact: str | None = None
    order_id: str | None = None
    sku: str | None = None
    reason: str | None = None
    tracking_number: str | None = None
    unit_id: str | None = None
    #: Carriers and marketplaces involved ("UPS, Amazon"): their claim deadlines show on the case.
    carrier: str | None = None
    shipped_at: float | None = None
    delivered_at: float | None = None


@dataclass(frozen=True, slots=True)
class ReturnFacts:
    """What the agent saw, kept apart from the decision so a grade can be derived later."""

    cosmetic: Cosmetic
    functional: Functional
    packaging: Packaging
    accessories_complete: bool

    def to_json(self) -> dict[str, Any]:
        return {
            "cosmetic": self.cosmetic.value,
            "functional": self.functional.value,
            "packaging": self.packaging.value,
            "accessories_complete": self.accessories_complete,
        }


@dataclass(frozen=True, slots=True)
class ReturnVerdict:
    decision: ReturnDecision
    facts: ReturnFacts
    refund_amount: Decimal | None = None
    currency: str | None = None
    note: str | None = None
    #: The grading record (model view, derived and final grade): ``server.cases.grading_record``.
    grading: Mapping[str, Any] | None = None

    def __post_init__(self) -> None:
        if self.decision is ReturnDecision.PARTIAL_REFUND:
            if self.refund_amount is None or self.refund_amount <= 0:
                raise InvalidRequest(
                    "refund_amount: a partial_refund needs a refund_amount greater than 0",
                    fields=("refund_amount",),
                )
        elif self.refund_amount is not None and self.refund_amount <= 0:
            raise InvalidRequest("refund_amount: must be greater than 0", fields=("refund_amount",))


@dataclass(frozen=True, slots=True)
class SupportVerdict:
    outcome: SupportOutcome
    resolution_note: str


Verdict = ReturnVerdict | SupportVerdict


@dataclass(frozen=True, slots=True)
class Case:
    id: str
    kind: CaseKind
    state: CaseState
    customer_name: str
    customer_contact: str | None
    order_id: str | None
    sku: str | None
    reason: str | None
    tracking_number: str | None
    unit_id: str | None
    carrier: str | None
    shipped_at: float | None
    delivered_at: float | None
    agent_id: str | None
    decision: str | None
    refund_amount: Decimal | None
    currency: str | None
    facts: Mapping[str, Any] | None
    note: str | None
    outcome: str | None
    resolution_note: str | None
    #: The model's view during the call, the grade derived from the agent's facts, any override
    #: and the final grade with its resale channel (see ``inference.grading``).
    grading: Mapping[str, Any] | None
    created_at: float
    waiting_at: float | None
    in_call_at: float | None
    decided_at: float | None
    closed_at: float | None
    updated_at: float

    @classmethod
    def from_row(cls, row: sqlite3.Row) -> Case:
        return cls(
            id=row["id"],
            kind=CaseKind(row["kind"]),
            state=CaseState(row["state"]),
            customer_name=row["customer_name"],
            customer_contact=row["customer_contact"],
            order_id=row["order_id"],
            sku=row["sku"],
            reason=row["reason"],
            tracking_number=row["tracking_number"],
            unit_id=row["unit_id"],
            carrier=row["carrier"],
            shipped_at=row["shipped_at"],
            delivered_at=row["delivered_at"],
            agent_id=row["agent_id"],
            decision=row["decision"],
            refund_amount=Decimal(row["refund_amount"]) if row["refund_amount"] else None,
            currency=row["currency"],
            facts=json.loads(row["facts"]) if row["facts"] else None,
            note=row["note"],
            outcome=row["outcome"],
            resolution_note=row["resolution_note"],
            grading=json.loads(row["grading"]) if row["grading"] else None,
            created_at=row["created_at"],
            waiting_at=row["waiting_at"],
            in_call_at=row["in_call_at"],
            decided_at=row["decided_at"],
            closed_at=row["closed_at"],
            updated_at=row["updated_at"],
        )

    def to_json(self) -> dict[str, Any]:
        """The case as the API and webhooks show it (times ISO 8601 UTC)."""
        return {
            "id": self.id,
            "kind": self.kind.value,
            "state": self.state.value,
            "customer_name": self.customer_name,
            "customer_contact": self.customer_contact,
            "order_id": self.order_id,
            "sku": self.sku,
            "reason": self.reason,
            "tracking_number": self.tracking_number,
            "unit_id": self.unit_id,
            "carrier": self.carrier,
            "shipped_at": iso_time(self.shipped_at),
            "delivered_at": iso_time(self.delivered_at),
            "agent_id": self.agent_id,
            "decision": self.decision,
            "refund_amount": float(self.refund_amount) if self.refund_amount is not None else None,
            "currency": self.currency,
            "facts": dict(self.facts) if self.facts is not None else None,
            "note": self.note,
            "outcome": self.outcome,
            "resolution_note": self.resolution_note,
            "grading": dict(self.grading) if self.grading is not None else None,
            "created_at": iso_time(self.created_at),
            "waiting_at": iso_time(self.waiting_at),
            "in_call_at": iso_time(self.in_call_at),
            "decided_at": iso_time(self.decided_at),
            "closed_at": iso_time(self.closed_at),
        }

    def summary(self) -> CaseSummary:
        """The case as signaling shows it (queue, ``joined``, ``case`` events)."""
        return CaseSummary(
            case_id=self.id,
            kind=self.kind.value,
            state=self.state.value,
            customer_name=self.customer_name,
            order_id=self.order_id,
            sku=self.sku,
            reason=self.reason,
            agent_id=self.agent_id,
            waiting_since=self.waiting_at,
            extra={"tracking_number": self.tracking_number, "unit_id": self.unit_id},
        )


@dataclass(frozen=True, slots=True)
class CaseEvent:
    at: float
    type: str
    actor: str
    data: Mapping[str, Any]

    def to_json(self) -> dict[str, Any]:
        return {"at": iso_time(self.at), "type": self.type, "actor": self.actor, "data": self.data}


class CaseEventSink(Protocol):
    """Takes case events inside the case's transaction (the webhook outbox)."""

    def enqueue(
        self,
        conn: sqlite3.Connection,
        *,
        event: str,
        case_id: str,
        at: float,
        case: Mapping[str, Any],
    ) -> None: ...

    def notify(self) -> None:
        """Called after the transaction committed: new work may be due."""
        ...


CaseListener = Callable[[CaseSummary], Awaitable[None] | None]


@dataclass(frozen=True, slots=True)
class _Change:
    values: Mapping[str, Any]
    event: CaseEventType
    data: Mapping[str, Any] = field(default_factory=dict)


_NO_CHANGE = None


class CaseService:
    """Creates, reads and moves cases. Fits ``signaling.CaseDirectory``."""

    def __init__(
        self,
        db: Database,
        *,
        sink: CaseEventSink | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._db = db
        self._sink = sink
        self._clock = clock
        self._listeners: list[CaseListener] = []

    # -- subscriptions -------------------------------------------------------------------------

    def add_listener(self, listener: CaseListener) -> None:
        """Call ``listener(summary)`` after every committed change of a case (sync or async)."""
        self._listeners.append(listener)

    def remove_listener(self, listener: CaseListener) -> None:
        self._listeners.remove(listener)

    async def _notify(self, case: Case) -> None:
        if self._sink is not None:
            self._sink.notify()
        summary = case.summary()
        for listener in list(self._listeners):
            try:
                result = listener(summary)
                if inspect.isawaitable(result):
                    await result
            except Exception:
                logger.exception("case listener failed", extra={"case_id": case.id})

    # -- reads ---------------------------------------------------------------------------------

    async def get_case(self, case_id: str) -> Case | None:
        row = await self._db.fetchone("SELECT * FROM cases WHERE id = ?", (case_id,))
        return Case.from_row(row) if row is not None else None

    async def require(self, case_id: str) -> Case:
        case = await self.get_case(case_id)
        if case is None:
            raise NotFound(f"no case {case_id!r}")
        return case

    async def get(self, case_id: str) -> CaseSummary | None:
        case = await self.get_case(case_id)
        return case.summary() if case is not None else None

    async def list_cases(
        self, state: CaseState | None = None, *, limit: int = 100, offset: int = 0
    ) -> list[Case]:
        """Cases, newest first."""
        if state is None:
            rows = await self._db.fetchall(
                "SELECT * FROM cases ORDER BY created_at DESC, rowid DESC LIMIT ? OFFSET ?",
                (limit, offset),
            )
        else:
            rows = await self._db.fetchall(
                "SELECT * FROM cases WHERE state = ? ORDER BY created_at DESC, rowid DESC"
                " LIMIT ? OFFSET ?",
                (state.value, limit, offset),
            )
        return [Case.from_row(row) for row in rows]

    async def events(self, case_id: str) -> list[CaseEvent]:
        """The case's timeline, oldest first."""
        rows = await self._db.fetchall(
            "SELECT at, type, actor, data FROM case_events WHERE case_id = ? ORDER BY id",
            (case_id,),
        )
        return [
            CaseEvent(
                at=row["at"], type=row["type"], actor=row["actor"], data=json.loads(row["data"])
            )
            for row in rows
        ]

    async def counts_by_state(self) -> dict[str, int]:
        rows = await self._db.fetchall("SELECT state, COUNT(*) AS n FROM cases GROUP BY state")
        counts = dict.fromkeys((state.value for state in CaseState), 0)
        counts.update({row["state"]: row["n"] for row in rows})
        return counts

    # -- writes --------------------------------------------------------------------------------

    def _append(
        self,
        conn: sqlite3.Connection,
        case: Case,
        event: CaseEventType,
        actor: str,
        data: Mapping[str, Any],
        at: float,
    ) -> None:
        conn.execute(
            "INSERT INTO case_events (case_id, at, type, actor, data) VALUES (?, ?, ?, ?, ?)",
            (case.id, at, event.value, actor, json.dumps(dict(data))),
        )
        if self._sink is not None and event in WEBHOOK_EVENTS:
            self._sink.enqueue(conn, event=event.value, case_id=case.id, at=at, case=case.to_json())

    async def create(self, new: NewCase, *, actor: str) -> Case:
        """A new case in ``created``; enqueues ``case.created``."""
        now = self._clock()
        case_id = secrets.token_hex(8)

        def work(conn: sqlite3.Connection) -> Case:
            conn.execute(
                "INSERT INTO cases (id, kind, state, customer_name, customer_contact, order_id,"
                " sku, reason, tracking_number, unit_id, carrier, shipped_at, delivered_at,"
                " created_at, updated_at)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    case_id,
                    new.kind.value,
                    CaseState.CREATED.value,
                    new.customer_name,
                    new.customer_contact,
                    new.order_id,
                    new.sku,
                    new.reason,
                    new.tracking_number,
                    new.unit_id,
                    new.carrier,
                    new.shipped_at,
                    new.delivered_at,
                    now,
                    now,
                ),
            )
            case = _load(conn, case_id)
            self._append(conn, case, CaseEventType.CREATED, actor, {"kind": new.kind.value}, now)
            return case

        case = await self._db.transaction(work)
        logger.info("case created", extra={"case_id": case_id})
        await self._notify(case)
        return case

    async def _mutate(
        self, case_id: str, actor: str, decide: Callable[[Case], _Change | None]
    ) -> Case:
        """Load the case, let ``decide`` pick the change (or none; it may raise), apply it."""
        now = self._clock()

        def work(conn: sqlite3.Connection) -> tuple[Case, bool]:
            case = _load(conn, case_id)
            change = decide(case)
            if change is None:
                return case, False
            values = dict(change.values)
            new_state = values.get("state")
            if isinstance(new_state, CaseState) and new_state in _STATE_TIME:
                values[_STATE_TIME[new_state]] = now
            values["updated_at"] = now
            columns = ", ".join(f"{name} = ?" for name in values)
            params = [v.value if isinstance(v, StrEnum) else v for v in values.values()]
            conn.execute(f"UPDATE cases SET {columns} WHERE id = ?", (*params, case_id))
            updated = _load(conn, case_id)
            self._append(conn, updated, change.event, actor, change.data, now)
            return updated, True

        case, changed = await self._db.transaction(work)
        if changed:
            await self._notify(case)
        return case

    async def transition(self, case_id: str, to: CaseState, *, actor: str) -> Case:
        """Move a case to ``to``; :class:`InvalidState` if its current state does not allow it."""
        return await self._mutate(case_id, actor, lambda case: _state_change(case, to))

    async def customer_arrived(self, case_id: str) -> CaseSummary:
        def decide(case: Case) -> _Change | None:
            if case.state is not CaseState.CREATED:
                return _NO_CHANGE
            return _state_change(case, CaseState.WAITING)

        case = await self._mutate(case_id, f"customer:{case_id}", decide)
        return case.summary()

    async def customer_left(self, case_id: str) -> CaseSummary:
        def decide(case: Case) -> _Change | None:
            if case.state is not CaseState.WAITING:
                return _NO_CHANGE
            return _state_change(case, CaseState.CREATED)

        case = await self._mutate(case_id, f"customer:{case_id}", decide)
        return case.summary()

    async def call_started(self, case_id: str, agent: Identity) -> CaseSummary:
        def decide(case: Case) -> _Change | None:
            if case.state is not CaseState.WAITING:
                return _NO_CHANGE
            return _state_change(case, CaseState.IN_CALL, agent_id=agent.subject)

        case = await self._mutate(case_id, agent.subject, decide)
        return case.summary()

    async def accept(self, case_id: str, agent: Identity) -> Case:
        """Strict ``call_started``: raises ``already_accepted`` (another agent holds the call) or
        ``not_waiting`` (the case is not in the queue) instead of leaving the case alone."""

        def decide(case: Case) -> _Change | None:
            if case.state is CaseState.IN_CALL:
                if case.agent_id == agent.subject:
                    return _NO_CHANGE
                raise DomainError(
                    "another agent already took this case", code=DomainErrorCode.ALREADY_ACCEPTED
                )
            if case.state is not CaseState.WAITING:
                raise DomainError(
                    f"the case is {case.state.value}, not waiting",
                    code=DomainErrorCode.NOT_WAITING,
                )
            return _state_change(case, CaseState.IN_CALL, agent_id=agent.subject)

        return await self._mutate(case_id, agent.subject, decide)

    async def decide(self, case_id: str, verdict: Verdict, *, actor: str) -> Case:
        """Record a decision (from ``waiting`` or ``in_call``); the case becomes ``decided``."""

        def decide(case: Case) -> _Change | None:
            if case.state not in (CaseState.WAITING, CaseState.IN_CALL):
                raise InvalidState(f"a {case.state.value} case cannot be decided")
            if isinstance(verdict, ReturnVerdict):
                if case.kind is not CaseKind.RETURN:
                    raise InvalidRequest("a support case takes an outcome, not a return decision")
                values: dict[str, Any] = {
                    "state": CaseState.DECIDED,
                    "decision": verdict.decision.value,
                    "refund_amount": (
                        str(verdict.refund_amount) if verdict.refund_amount is not None else None
                    ),
                    "currency": verdict.currency,
                    "facts": json.dumps(verdict.facts.to_json()),
                    "note": verdict.note,
                    "grading": json.dumps(dict(verdict.grading)) if verdict.grading else None,
                }
                data: dict[str, Any] = {
                    "from": case.state.value,
                    "decision": verdict.decision.value,
                    "refund_amount": values["refund_amount"],
                    "currency": verdict.currency,
                    "facts": verdict.facts.to_json(),
                }
                if verdict.grading:
                    data["final_grade"] = verdict.grading.get("final_grade")
                    data["grade_source"] = verdict.grading.get("source")
            else:
                if case.kind is not CaseKind.SUPPORT:
                    raise InvalidRequest("a return case takes a decision, not a support outcome")
                values = {
                    "state": CaseState.DECIDED,
                    "outcome": verdict.outcome.value,
                    "resolution_note": verdict.resolution_note,
                }
                data = {"from": case.state.value, "outcome": verdict.outcome.value}
            return _Change(values=values, event=CaseEventType.DECIDED, data=data)

        return await self._mutate(case_id, actor, decide)

    async def close(self, case_id: str, *, actor: str) -> Case:
        """decided -> closed."""
        return await self.transition(case_id, CaseState.CLOSED, actor=actor)

    async def note_join_link(self, case_id: str, *, actor: str, expires_at: float) -> Case:
        """Record in the timeline that a join link was issued (never the token itself)."""
        now = self._clock()

        def work(conn: sqlite3.Connection) -> Case:
            case = _load(conn, case_id)
            if case.state in (CaseState.DECIDED, CaseState.CLOSED):
                raise InvalidState(f"the case is {case.state.value}: no customer link")
            self._append(
                conn,
                case,
                CaseEventType.JOIN_LINK,
                actor,
                {"expires_at": iso_time(expires_at)},
                now,
            )
            return case

        return await self._db.transaction(work)

    async def record_model_view(self, case_id: str, view: Mapping[str, Any]) -> None:
        """Keep the model's final view of a video stream with the case (evidence for the agent,
        not the verdict) and note it in the timeline."""
        now = self._clock()

        def work(conn: sqlite3.Connection) -> None:
            case = _load(conn, case_id)
            grading = dict(case.grading or {})
            grading["model"] = dict(view)
            conn.execute(
                "UPDATE cases SET grading = ?, updated_at = ? WHERE id = ?",
                (json.dumps(grading), now, case_id),
            )
            summary = {
                key: view.get(key) for key in ("grade", "confidence", "status", "model_version")
            }
            damage = view.get("damage")
            if isinstance(damage, list):
                summary["damage"] = [d.get("label") for d in damage if isinstance(d, Mapping)]
            self._append(conn, case, CaseEventType.MODEL_VIEW, "model", summary, now)

        await self._db.transaction(work)

    async def record_chat(self, case_id: str, message: Mapping[str, Any]) -> None:
        """Keep a chat message in the timeline; a repeat of the same ``seq`` is ignored."""
        seq = message.get("seq")
        ts = message.get("ts")
        at = float(ts) if isinstance(ts, int | float) else self._clock()
        sender = message.get("sender")
        actor = "unknown"
        if isinstance(sender, Mapping):
            actor = str(sender.get("participant_id") or sender.get("role") or "unknown")
        data = json.dumps(dict(message), default=str)
        dedup = f"chat:{seq}" if seq is not None else None
        await self._db.execute(
            "INSERT OR IGNORE INTO case_events (case_id, at, type, actor, data, dedup_key)"
            " SELECT ?, ?, ?, ?, ?, ? WHERE EXISTS (SELECT 1 FROM cases WHERE id = ?)",
            (case_id, at, CaseEventType.CHAT.value, actor, data, dedup, case_id),
        )


def _load(conn: sqlite3.Connection, case_id: str) -> Case:
    row = conn.execute("SELECT * FROM cases WHERE id = ?", (case_id,)).fetchone()
    if row is None:
        raise NotFound(f"no case {case_id!r}")
    return Case.from_row(row)


def _state_change(case: Case, to: CaseState, **values: Any) -> _Change:
    if to not in _NEXT[case.state]:
        raise InvalidState(f"a {case.state.value} case cannot become {to.value}")
    event = {
        CaseState.DECIDED: CaseEventType.DECIDED,
        CaseState.CLOSED: CaseEventType.CLOSED,
    }.get(to, CaseEventType.STATE_CHANGED)
    return _Change(
        values={"state": to, **values},
        event=event,
        data={"from": case.state.value, "to": to.value},
    )
