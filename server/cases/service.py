"""Cases: a return or support call, from creation to decision, with a timeline.

States: ``created`` -> ``waiting`` (customer's page open) -> ``in_call`` (an agent took it) ->
``decided`` -> ``closed``; ``waiting`` -> ``created`` when the customer leaves before a call, and a
decision may also be recorded straight from ``waiting``. Every change is one transaction that
updates the case, appends a timeline event and enqueues the webhooks for it (a transactional
outbox: a crash never loses a notification nor sends one for a change that did not happen).
The service decides; the :class:`~server.storage.cases.CaseStore` writes, in that transaction,
what the service's decision returns.
"""

from __future__ import annotations

import dataclasses
import inspect
import json
import logging
import secrets
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from server.errors import DomainError, DomainErrorCode, InvalidRequest, InvalidState, NotFound
from server.storage.cases import CaseStore
from server.timefmt import iso_time
from signaling import CaseSummary, Identity, SubjectId

from .access import CaseAction, check_case_access
from .model import (
    WEBHOOK_EVENTS,
    Case,
    CaseEvent,
    CaseEventType,
    CaseKind,
    CaseState,
    CaseUpdate,
    NewCase,
    ReturnVerdict,
    Verdict,
)
from .outbox import WebhookEvent

__all__ = [
    "CaseEventSink",
    "CaseListener",
    "CaseService",
]

logger = logging.getLogger(__name__)


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


class CaseEventSink(Protocol):
    """Told after a change committed (its webhook event is in the outbox by then), so the
    outbox can be delivered now rather than at its next wake-up."""

    def notify(self) -> None: ...


CaseListener = Callable[[CaseSummary], Awaitable[None] | None]


@dataclass(frozen=True, slots=True)
class _Change:
    """What a transition decides: the case's new field values (domain values), the timeline
    event and its details. The service adds the times and the webhook event."""

    values: Mapping[str, Any]
    event: CaseEventType
    data: Mapping[str, Any] = field(default_factory=dict)
    #: A webhook event to send besides those of :data:`WEBHOOK_EVENTS` (a rule's action).
    webhook: str | None = None


#: The fields the returns operations (``server.returns``) may set through
#: :meth:`CaseService.apply_returns`.
RETURNS_FIELDS = frozenset(
    {"claimed_reason", "verified_reason", "intake", "refund_state", "disposition", "approval"}
)


_NO_CHANGE = None


class CaseService:
    """Creates, reads and moves cases. Fits ``signaling.CaseDirectory``."""

    def __init__(
        self,
        store: CaseStore,
        *,
        sink: CaseEventSink | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._store = store
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
        return await self._store.get(case_id)

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
        return await self._store.list_cases(state, limit=limit, offset=offset)

    async def events(self, case_id: str) -> list[CaseEvent]:
        """The case's timeline, oldest first."""
        return await self._store.events(case_id)

    async def counts_by_state(self) -> dict[str, int]:
        """The number of cases in every state (0 for a state without cases)."""
        counts = dict.fromkeys((state.value for state in CaseState), 0)
        counts.update(await self._store.counts_by_state())
        return counts

    # -- writes --------------------------------------------------------------------------------

    async def create(self, new: NewCase, *, actor: str) -> Case:
        """A new case in ``created``; enqueues ``case.created``."""
        now = self._clock()
        case = _new_case(secrets.token_hex(8), new, now)
        event = CaseEvent(
            at=now, type=CaseEventType.CREATED.value, actor=actor, data={"kind": new.kind.value}
        )
        webhook = WebhookEvent.of(CaseEventType.CREATED.value, case.id, now, case.to_json())
        case = await self._store.create(case, event=event, webhook=webhook)
        logger.info("case created", extra={"case_id": case.id})
        await self._notify(case)
        return case

    async def _mutate(
        self, case_id: str, actor: str, decide: Callable[[Case], _Change | None]
    ) -> Case:
        """Let ``decide`` pick the change of the case as the store holds it (or none; it may
        raise), and have the store write it with its times, timeline entry and webhook."""
        now = self._clock()

        def update(case: Case) -> CaseUpdate | None:
            change = decide(case)
            if change is None:
                return None
            values = dict(change.values)
            new_state = values.get("state")
            if isinstance(new_state, CaseState) and new_state in _STATE_TIME:
                values[_STATE_TIME[new_state]] = now
            values["updated_at"] = now
            event = CaseEvent(at=now, type=change.event.value, actor=actor, data=change.data)
            webhook = None
            name = change.webhook
            if name is None and change.event in WEBHOOK_EVENTS:
                name = change.event.value
            if name is not None:
                # The receivers get the case as the change leaves it.
                after = dataclasses.replace(case, **values)
                webhook = WebhookEvent.of(name, case.id, now, after.to_json())
            return CaseUpdate(values=values, event=event, webhook=webhook)

        case, changed = await self._store.mutate(case_id, update)
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

        case = await self._mutate(case_id, SubjectId.customer(case_id), decide)
        return case.summary()

    async def customer_left(self, case_id: str) -> CaseSummary:
        def decide(case: Case) -> _Change | None:
            if case.state is not CaseState.WAITING:
                return _NO_CHANGE
            return _state_change(case, CaseState.CREATED)

        case = await self._mutate(case_id, SubjectId.customer(case_id), decide)
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
                    "refund_amount": verdict.refund_amount,
                    "currency": verdict.currency,
                    "facts": verdict.facts.to_json(),
                    "note": verdict.note,
                    "grading": dict(verdict.grading) if verdict.grading else None,
                    "final_grade": (verdict.grading or {}).get("final_grade"),
                }
                data: dict[str, Any] = {
                    "from": case.state.value,
                    "decision": verdict.decision.value,
                    "refund_amount": (
                        str(verdict.refund_amount) if verdict.refund_amount is not None else None
                    ),
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

    async def apply_returns(
        self,
        case_id: str,
        *,
        actor: str,
        event: CaseEventType,
        decide: Callable[[Case], tuple[Mapping[str, Any], Mapping[str, Any], str | None] | None],
    ) -> Case:
        """A change of the returns operations: ``decide(case)`` (in the store's transaction)
        returns the new values of :data:`RETURNS_FIELDS`, the timeline entry's details and a
        webhook event to send (or None), or None to change nothing; it may raise to refuse.
        ``event`` is one of the ``returns.*`` entries."""
        if not event.value.startswith("returns."):
            raise ValueError(f"{event.value} is not a returns event")

        def change(case: Case) -> _Change | None:
            decided = decide(case)
            if decided is None:
                return _NO_CHANGE
            values, data, webhook = decided
            unknown = set(values) - RETURNS_FIELDS
            if unknown:
                raise ValueError(f"not a returns field: {sorted(unknown)}")
            return _Change(values=values, event=event, data=data, webhook=webhook)

        return await self._mutate(case_id, actor, change)

    async def returns_between(self, since: float, until: float, *, limit: int) -> list[Case]:
        """Return cases created in ``since``..``until``, oldest first."""
        return await self._store.list_returns(since=since, until=until, limit=limit)

    async def returns_of(self, contact: str, *, before: float) -> int:
        """How many return cases a customer (by contact) opened before ``before``."""
        return await self._store.count_returns(contact, before=before)

    async def close(self, case_id: str, *, actor: str) -> Case:
        """decided -> closed."""
        return await self.transition(case_id, CaseState.CLOSED, actor=actor)

    async def note_join_link(self, case_id: str, *, actor: str, expires_at: float) -> Case:
        """Record in the timeline that a join link was issued (never the token itself), with
        the case's holder at that moment. Refused unless the case is ``created`` or
        ``waiting``, checked in the same transaction that writes the entry: a case accepted
        meanwhile gets no link."""
        now = self._clock()

        def decide(case: Case) -> CaseEvent:
            check_case_access(case, CaseAction.JOIN_LINK, subject=actor, is_admin=False)
            return CaseEvent(
                at=now,
                type=CaseEventType.JOIN_LINK.value,
                actor=actor,
                data={
                    "expires_at": iso_time(expires_at),
                    "holder": case.agent_id,
                    "state": case.state.value,
                },
            )

        return await self._store.note(case_id, decide)

    async def note_access_override(
        self, case_id: str, *, actor: str, actor_name: str, action: CaseAction, reason: str
    ) -> Case:
        """Record in the timeline that an admin acted on a case they do not hold: who (subject
        and name), what, why, and who held the case then."""
        now = self._clock()

        def decide(case: Case) -> CaseEvent:
            return CaseEvent(
                at=now,
                type=CaseEventType.ACCESS_OVERRIDE.value,
                actor=actor,
                data={
                    "action": action.value,
                    "reason": reason,
                    "actor_name": actor_name,
                    "holder": case.agent_id,
                    "state": case.state.value,
                },
            )

        return await self._store.note(case_id, decide)

    async def record_model_view(self, case_id: str, view: Mapping[str, Any]) -> None:
        """Keep the model's final view of a video stream with the case (evidence for the agent,
        not the verdict) and note it in the timeline."""
        now = self._clock()

        def update(case: Case) -> CaseUpdate:
            grading = dict(case.grading or {})
            grading["model"] = dict(view)
            summary = {
                key: view.get(key) for key in ("grade", "confidence", "status", "model_version")
            }
            damage = view.get("damage")
            if isinstance(damage, list):
                summary["damage"] = [d.get("label") for d in damage if isinstance(d, Mapping)]
            event = CaseEvent(
                at=now, type=CaseEventType.MODEL_VIEW.value, actor="model", data=summary
            )
            return CaseUpdate(values={"grading": grading, "updated_at": now}, event=event)

        # Not a change of the case's state: nobody listening for those needs to hear of it.
        await self._store.mutate(case_id, update)

    async def record_action(
        self, case_id: str, action: str, *, actor: str, data: Mapping[str, Any]
    ) -> None:
        """Keep a tool used in the call (freeze, markup, a photo asked for or received, the
        torch...) in the timeline. ``action`` is one of the ``inspection.*`` event types."""
        kind = CaseEventType(action)
        if not kind.value.startswith("inspection."):
            raise ValueError(f"{action!r} is not an inspection action")
        # A client's values may not all be JSON (they came through a socket): keep them as text.
        payload = json.loads(json.dumps(dict(data), default=str))
        event = CaseEvent(at=self._clock(), type=kind.value, actor=actor, data=payload)
        await self._store.append_once(case_id, event, dedup_key=None)

    async def record_transcript(self, case_id: str, segment: Mapping[str, Any]) -> None:
        """Keep one captioned segment in the timeline (its ``segment_id`` is stored once)."""
        payload = json.loads(json.dumps(dict(segment), default=str))
        started = payload.get("started_at")
        at = float(started) if isinstance(started, int | float) else self._clock()
        actor = str(payload.get("subject") or payload.get("role") or "unknown")
        event = CaseEvent(at=at, type=CaseEventType.TRANSCRIPT.value, actor=actor, data=payload)
        await self._store.append_once(case_id, event, dedup_key=f"t:{payload.get('segment_id')}")

    async def transcript(
        self, case_id: str, *, since: float | None = None, until: float | None = None
    ) -> list[dict[str, Any]]:
        """The case's captioned segments, oldest first; with ``since``/``until``, those that
        overlap that stretch of time (wall-clock seconds)."""
        segments: list[dict[str, Any]] = []
        for event in await self._store.events(case_id):
            if event.type != CaseEventType.TRANSCRIPT.value:
                continue
            data = dict(event.data)
            started = float(data.get("started_at") or event.at)
            ended = float(data.get("ended_at") or started)
            if since is not None and ended < since:
                continue
            if until is not None and started > until:
                continue
            segments.append(data)
        return segments

    async def captions_enabled(self, case_id: str) -> bool:
        """Whether the case's speech is transcribed: on unless someone switched it off (the
        latest ``captions.changed`` entry of the timeline decides)."""
        enabled = True
        for event in await self._store.events(case_id):
            if event.type == CaseEventType.CAPTIONS.value:
                enabled = bool(event.data.get("enabled"))
        return enabled

    async def set_captions(self, case_id: str, enabled: bool, *, actor: str) -> None:
        """Switch the case's captions on or off; the change is in the timeline."""
        await self.require(case_id)
        event = CaseEvent(
            at=self._clock(),
            type=CaseEventType.CAPTIONS.value,
            actor=actor,
            data={"enabled": enabled},
        )
        await self._store.append_once(case_id, event, dedup_key=None)

    async def record_chat(self, case_id: str, message: Mapping[str, Any]) -> None:
        """Keep a chat message in the timeline; a repeat of the same ``seq`` is ignored."""
        seq = message.get("seq")
        ts = message.get("ts")
        at = float(ts) if isinstance(ts, int | float) else self._clock()
        sender = message.get("sender")
        actor = "unknown"
        if isinstance(sender, Mapping):
            # The timeline names a subject where it can; a customer's chosen name never
            # becomes the actor.
            subject = sender.get("subject")
            if isinstance(subject, str) and subject:
                actor = subject
            elif sender.get("role") == "customer":
                actor = SubjectId.customer(case_id)
            else:
                actor = str(sender.get("participant_id") or sender.get("role") or "unknown")
        # A client's message may carry values JSON cannot hold: keep them as text.
        data = json.loads(json.dumps(dict(message), default=str))
        dedup = f"chat:{seq}" if seq is not None else None
        event = CaseEvent(at=at, type=CaseEventType.CHAT.value, actor=actor, data=data)
        await self._store.append_once(case_id, event, dedup_key=dedup)


def _new_case(case_id: str, new: NewCase, at: float) -> Case:
    return Case(
        id=case_id,
        kind=new.kind,
        state=CaseState.CREATED,
        customer_name=new.customer_name,
        customer_contact=new.customer_contact,
        order_id=new.order_id,
        sku=new.sku,
        reason=new.reason,
        tracking_number=new.tracking_number,
        unit_id=new.unit_id,
        carrier=new.carrier,
        shipped_at=new.shipped_at,
        delivered_at=new.delivered_at,
        customer_locale=new.customer_locale,
        customer_time_zone=new.customer_time_zone,
        claimed_reason=new.claimed_reason,
        category=new.category,
        order_value=new.order_value,
        order_currency=new.order_currency,
        country=new.country,
        agent_id=None,
        decision=None,
        refund_amount=None,
        currency=None,
        facts=None,
        note=None,
        outcome=None,
        resolution_note=None,
        grading=None,
        created_at=at,
        waiting_at=None,
        in_call_at=None,
        decided_at=None,
        closed_at=None,
        updated_at=at,
    )


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
