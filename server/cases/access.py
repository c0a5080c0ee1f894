"""Who may act on one case: object-level access, decided from the case and the caller alone.

A case's call and its evidence belong to the agent holding it: the agent who accepted it
(``agent_id``), from ``in_call`` on. Another agent never acts on it, and nobody acts on a case
that was never accepted as if they held it. An admin may act on any case, but only by an
override that gives a reason; the edge writes the override to the case's timeline before the
action runs. Join links are the exception: they exist to bring a customer who is not in a call
yet, so they are judged by the case's state, not by a holder.

The decision is pure (no store, no request), so the REST edge, and any other front that acts
on cases, asks the same rules.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from server.errors import Forbidden, InvalidState

from .model import Case, CaseState

__all__ = ["CaseAccess", "CaseAction", "Grant", "check_case_access"]


class CaseAction(StrEnum):
    """What a caller wants to do with a case's call or its evidence."""

    DECIDE = "decide"
    CLOSE = "close"
    #: Start a recording, save the last seconds, take a snapshot.
    CAPTURE = "capture"
    STOP_CAPTURE = "stop_capture"
    #: Read the model's live assessment or one of the call's frames.
    VIEW_LIVE = "view_live"
    JOIN_LINK = "join_link"


class Grant(StrEnum):
    """On what ground access was given."""

    #: The caller holds the case.
    HOLDER = "holder"
    #: An admin who does not hold the case: allowed only with a reason, which is logged.
    OVERRIDE = "override"
    #: The action needs no holder (a join link for a case not yet in a call).
    OPEN = "open"


@dataclass(frozen=True, slots=True)
class CaseAccess:
    """The answer of :func:`check_case_access` for one caller, case and action."""

    case: Case
    action: CaseAction
    subject: str
    grant: Grant

    @property
    def needs_reason(self) -> bool:
        return self.grant is Grant.OVERRIDE


#: A case has a holder from ``in_call`` on, and keeps it. Of what a holder does, only new
#: recordings end with the call: once decided, the call's evidence is complete (a recording
#: still running then can be stopped and filed).
_CALL_ONLY = frozenset({CaseAction.CAPTURE})

#: What an admin's override may reach on a case nobody holds. A waiting customer may be decided
#: without a call (from photos, say), but their video is seen by nobody before a call: the join
#: page promises it.
_UNHELD_OVERRIDES = frozenset({CaseAction.DECIDE, CaseAction.CLOSE})

_LINK_STATES = frozenset({CaseState.CREATED, CaseState.WAITING})


def check_case_access(
    case: Case, action: CaseAction, *, subject: str, is_admin: bool
) -> CaseAccess:
    """May ``subject`` (an admin when ``is_admin``) do ``action`` on ``case``?

    Raises :class:`~server.errors.Forbidden` when another agent holds the case, and
    :class:`~server.errors.InvalidState` when the case's state rules the action out (never
    accepted, call over, no customer to link), each naming the rule. An admin who does not
    hold the case gets a :attr:`Grant.OVERRIDE`, valid only with a reason the caller checks.
    """
    if action is CaseAction.JOIN_LINK:
        return _join_link(case, subject)
    if case.agent_id is not None and case.agent_id == subject:
        _holder_state(case, action)
        return CaseAccess(case, action, subject, Grant.HOLDER)
    if case.agent_id is None:
        if not is_admin or action not in _UNHELD_OVERRIDES:
            raise InvalidState(
                f"case {case.id} was never accepted (it is {case.state.value}): "
                f"{_unheld_hint(action)}"
            )
        return CaseAccess(case, action, subject, Grant.OVERRIDE)
    if not is_admin:
        raise Forbidden(
            f"case {case.id} is held by another agent: only the agent holding a case "
            f"may {_verb(action)} it"
        )
    _holder_state(case, action)
    return CaseAccess(case, action, subject, Grant.OVERRIDE)


def _join_link(case: Case, subject: str) -> CaseAccess:
    if case.state not in _LINK_STATES:
        why = (
            "its customer is already in the call"
            if case.state is CaseState.IN_CALL
            else "there is no customer left to bring in"
        )
        raise InvalidState(
            f"a join link is only for a case whose customer is not in a call yet: "
            f"case {case.id} is {case.state.value} ({why})"
        )
    return CaseAccess(case, CaseAction.JOIN_LINK, subject, Grant.OPEN)


def _holder_state(case: Case, action: CaseAction) -> None:
    if action in _CALL_ONLY and case.state is not CaseState.IN_CALL:
        raise InvalidState(
            f"case {case.id} is {case.state.value}: its call is over, and nothing is "
            "recorded after the decision"
        )


def _unheld_hint(action: CaseAction) -> str:
    if action in (CaseAction.CAPTURE, CaseAction.STOP_CAPTURE, CaseAction.VIEW_LIVE):
        return "nobody sees or records a customer's video before an agent takes the call"
    return f"take the call (accept it) before you {_verb(action)} it"


def _verb(action: CaseAction) -> str:
    return {
        CaseAction.DECIDE: "decide",
        CaseAction.CLOSE: "close",
        CaseAction.CAPTURE: "record or snapshot",
        CaseAction.STOP_CAPTURE: "stop a recording of",
        CaseAction.VIEW_LIVE: "see the live video of",
        CaseAction.JOIN_LINK: "link a customer to",
    }[action]
