"""REST routes of live grading: the model's view of a case, its best frames as JPEG, and the
grade the rule table derives from a set of facts (the console shows it before the decision).

The view and the frames are the customer's live video, seen by the agent holding the call
(and an admin who says why): :func:`server.http.authz.require_case_holder`. Every frame served
is a custody entry in the evidence log ("live.viewed": who, which case, which frame, why), as
every read of stored evidence is."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from inference import derive_grade
from server.cases import CaseAction
from server.errors import DomainError, DomainErrorCode, NotFound
from server.http._request import CALL_TAKERS, STAFF, case_id_of, read_body, require
from server.http.authz import REASON_HEADER, require_case_holder
from server.http.keys import CASES_KEY, EVIDENCE_KEY, GRADING_VIEW_KEY
from server.http.openapi import ApiRoute
from server.http.replies import JsonReply, Out, reply
from server.http.wire import ReturnFactsBody

__all__ = ["routes"]


class FrameOut(Out):
    id: str
    ts: float
    sharpness: float
    width: int
    height: int
    url: str


class AssessmentResponse(Out):
    #: The model's live view (or the final one kept with the case); null before any frame.
    assessment: dict[str, Any] | None
    live: bool
    frames: list[FrameOut]


class DerivedGradeResponse(Out):
    derived: dict[str, Any]


def _frame_id(ts: float) -> str:
    return str(int(ts * 1000))


async def get_assessment(request: web.Request) -> JsonReply[AssessmentResponse]:
    identity = await require(request, CALL_TAKERS)
    case = await request.app[CASES_KEY].require(case_id_of(request))
    await require_case_holder(request, identity, case, CaseAction.VIEW_LIVE)
    grading = request.app[GRADING_VIEW_KEY]
    live = grading.latest(case.id)
    stored = (case.grading or {}).get("model")
    frames = [
        {
            "id": _frame_id(frame.ts),
            "ts": frame.ts,
            "sharpness": round(frame.sharpness, 1),
            "width": frame.width,
            "height": frame.height,
            "url": f"/api/cases/{case.id}/frames/{_frame_id(frame.ts)}",
        }
        for frame in grading.frames(case.id)
    ]
    return reply(
        AssessmentResponse,
        {
            "assessment": live if live is not None else stored,
            "live": live is not None,
            "frames": frames,
        },
    )


async def get_frame(request: web.Request) -> web.Response:
    identity = await require(request, CALL_TAKERS)
    # A case first: the grading view also holds camera rooms, which no case id reaches.
    case = await request.app[CASES_KEY].require(case_id_of(request))
    grant = await require_case_holder(request, identity, case, CaseAction.VIEW_LIVE)
    wanted = request.match_info["frame"]
    frame = next(
        (f for f in request.app[GRADING_VIEW_KEY].frames(case.id) if _frame_id(f.ts) == wanted),
        None,
    )
    if frame is None:
        raise NotFound(f"no frame {wanted!r} for case {case.id!r}")
    archive = request.app.get(EVIDENCE_KEY)
    if archive is None:
        # No log to write the view to: then nobody sees the frame.
        raise DomainError(
            "live frames are served only where their views are logged (no evidence archive)",
            code=DomainErrorCode.UNAVAILABLE,
        )
    # Logged before it is served: a view that could not be logged is not served.
    await archive.log_view(
        actor=identity.subject,
        reason=grant.reason,
        subject=f"case:{case.id}",
        what=f"frame:{wanted}",
        fields={
            "actor_name": identity.name,
            "case_id": case.id,
            "frame_id": wanted,
            "grant": grant.access.grant.value,
        },
    )
    return web.Response(
        body=frame.jpeg,
        content_type="image/jpeg",
        # Kept by the viewer's browser only: a cached copy is never served to anyone else.
        headers={"Cache-Control": "private, max-age=3600"},
    )


async def derive(request: web.Request) -> JsonReply[DerivedGradeResponse]:
    await require(request, STAFF)
    facts = await read_body(request, ReturnFactsBody)
    return reply(DerivedGradeResponse, {"derived": derive_grade(facts.model_dump()).as_dict()})


def routes() -> list[ApiRoute]:
    """The grading endpoints, registered and documented with the rest of the API."""
    return [
        ApiRoute(
            "GET",
            "/api/cases/{id}/assessment",
            get_assessment,
            "The model's view of a case (live grade, damage, codes) and its best frames; the "
            f"case's holder only, or an admin with an {REASON_HEADER} header (logged)",
            "agent holding the case, admin",
            response=AssessmentResponse,
            errors=(400, 401, 403, 404, 409),
            tag="grading",
        ),
        ApiRoute(
            "GET",
            "/api/cases/{id}/frames/{frame}",
            get_frame,
            "One of the sharpest frames of the case's video, as JPEG; the case's holder only, "
            f"or an admin with an {REASON_HEADER} header; every read is in the evidence log",
            "agent holding the case, admin",
            errors=(400, 401, 403, 404, 409, 503),
            content_type="image/jpeg",
            tag="grading",
        ),
        ApiRoute(
            "POST",
            "/api/grading/derive",
            derive,
            "The grade, rule and resale channel the rule table gives for a set of facts",
            "staff",
            body=(ReturnFactsBody,),
            response=DerivedGradeResponse,
            errors=(400, 401, 413, 415),
            tag="grading",
        ),
    ]
