"""REST routes of live grading: the model's view of a case, its best frames as JPEG, and the
grade the rule table derives from a set of facts (the console shows it before the decision)."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from inference import derive_grade
from server.errors import NotFound
from server.http._request import STAFF, case_id_of, read_body, require
from server.http.keys import CASES_KEY, GRADING_VIEW_KEY
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
    await require(request, STAFF)
    case = await request.app[CASES_KEY].require(case_id_of(request))
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
    await require(request, STAFF)
    case_id = case_id_of(request)
    wanted = request.match_info["frame"]
    for frame in request.app[GRADING_VIEW_KEY].frames(case_id):
        if _frame_id(frame.ts) == wanted:
            return web.Response(
                body=frame.jpeg,
                content_type="image/jpeg",
                headers={"Cache-Control": "private, max-age=3600"},
            )
    raise NotFound(f"no frame {wanted!r} for case {case_id!r}")


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
            "The model's view of a case (live grade, damage, codes) and its best frames",
            "staff",
            response=AssessmentResponse,
            errors=(401, 404),
            tag="grading",
        ),
        ApiRoute(
            "GET",
            "/api/cases/{id}/frames/{frame}",
            get_frame,
            "One of the sharpest frames of the case's video, as JPEG",
            "staff",
            errors=(401, 404),
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
