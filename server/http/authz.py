"""Object-level authorisation of the case routes, in one place.

Every route that acts on one case's call or its evidence (decision, close, the case's
captures and snapshots, the live assessment and frames, join links) has
:func:`require_case_holder` decide, after the role check and after the case was found (a
missing case is a 404 before anything else). The rules are the domain's
(:func:`server.cases.check_case_access`): an agent acts only on a case it holds, never on one
another agent holds, never on one nobody accepted; a join link only for a case whose customer
is not in a call yet.

An admin (or an admin API token) may act on a case they do not hold, but must say why, in the
``X-Inspect-Reason`` header (:data:`REASON_HEADER`, 3 to 500 characters). A header rather than a
body or query field: the GET routes have no body, a query string ends up in logs and links, and
a page on another site cannot make a browser send a custom header without a CORS preflight,
which this service never grants, so nobody else can file an override in an admin's name. The
override is written to the case's timeline (who by subject and name, what, why, who held the
case) *before* the action runs: if that entry cannot be written, nothing happens.
"""

from __future__ import annotations

from dataclasses import dataclass

from aiohttp import web

from server.cases import Case, CaseAccess, CaseAction, Grant, check_case_access
from server.errors import Forbidden, InvalidRequest
from server.http.keys import CASES_KEY
from signaling import Identity, Role

__all__ = ["HOLDER_REASON", "REASON_HEADER", "CaseGrant", "reason_of", "require_case_holder"]

REASON_HEADER = "X-Inspect-Reason"
#: The reason a custody entry gives when the holder of the call looks at it, and said no more.
HOLDER_REASON = "holds the call"
_REASON_MIN, _REASON_MAX = 3, 500


@dataclass(frozen=True, slots=True)
class CaseGrant:
    """Access given to one caller for one action on one case, and why."""

    case: Case
    identity: Identity
    access: CaseAccess
    #: Why the caller acts: an admin's stated reason, or the holder's (``HOLDER_REASON`` unless
    #: they sent one). Custody entries of what the action shows carry it.
    reason: str

    @property
    def is_override(self) -> bool:
        return self.access.grant is Grant.OVERRIDE


def reason_of(request: web.Request) -> str | None:
    """The reason the request gives in :data:`REASON_HEADER`, or ``None`` without one.
    :class:`InvalidRequest` for a reason that is too short, too long or has control
    characters (it is written to the timeline and the evidence log as given)."""
    raw = request.headers.get(REASON_HEADER)
    if raw is None:
        return None
    reason = raw.strip()
    if not _REASON_MIN <= len(reason) <= _REASON_MAX or not reason.isprintable():
        raise InvalidRequest(
            f"{REASON_HEADER}: say why in {_REASON_MIN} to {_REASON_MAX} printable characters",
            fields=(REASON_HEADER,),
        )
    return reason


async def require_case_holder(
    request: web.Request, identity: Identity, case: Case, action: CaseAction
) -> CaseGrant:
    """Allow ``identity`` to do ``action`` on ``case``, or raise the domain error of the rule
    that refuses it (:class:`Forbidden`: another agent holds the case, or an admin gave no
    reason; :class:`~server.errors.InvalidState`: the case's state rules it out). An admin's
    override is in the case's timeline when this returns."""
    access = check_case_access(
        case, action, subject=identity.subject, is_admin=identity.role is Role.ADMIN
    )
    reason = reason_of(request)
    if access.grant is not Grant.OVERRIDE:
        return CaseGrant(case, identity, access, reason or HOLDER_REASON)
    if reason is None:
        holder = "another agent" if case.agent_id is not None else "nobody (never accepted)"
        raise Forbidden(
            f"case {case.id} is held by {holder}, not by you: an admin acting on it must say "
            f"why in the {REASON_HEADER} header (it is written to the case's timeline)"
        )
    await request.app[CASES_KEY].note_access_override(
        case.id, actor=identity.subject, actor_name=identity.name, action=action, reason=reason
    )
    return CaseGrant(case, identity, access, reason)
