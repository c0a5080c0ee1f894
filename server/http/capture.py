"""One capture-route factory for every kind of capture target: a case's call
(``/api/cases/{id}/...``) and a site camera (``/api/cameras/{id}/...``).

Each kind says how a request names its target (:class:`CaptureKind`); the four routes (start,
stop, save the last N seconds, snapshot) are written once, here. A case's call is recorded only
by the agent holding it, while it is in the call (or an admin who says why):
:func:`server.http.authz.require_case_holder`, asked when the target is resolved.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Annotated, Any

from aiohttp import web
from pydantic import Field, StringConstraints

from evidence import EvidenceItem, Use
from server.capture import CaptureTarget
from server.cases import Case, CaseAction
from server.errors import Conflict, InvalidRequest
from server.http._request import CALL_TAKERS, case_id_of, read_body, require
from server.http.authz import REASON_HEADER, require_case_holder
from server.http.keys import CAPTURES_KEY, CASES_KEY, PRESENCE_KEY, SETTINGS_KEY, SITES_KEY
from server.http.openapi import ApiRoute
from server.http.replies import JsonReply, Out, reply
from server.http.wire import Body, ItemResponse, Note, Ref, Stage, item_json
from signaling import Identity, RoomId, camera_room

__all__ = ["CAMERA_CAPTURES", "CASE_CAPTURES", "CaptureKind", "capture_routes"]


class CaptureBody(Body):
    stage: Stage | None = None
    note: Note = ""


class SaveLastBody(CaptureBody):
    seconds: Annotated[float, Field(gt=0, le=120)] = 30.0


class SnapshotBody(CaptureBody):
    frame_id: Annotated[str, StringConstraints(pattern=r"^\d{1,20}$")] | None = None


class CameraCaptureBody(CaptureBody):
    """What a capture from a camera is filed under: a case (its order, tracking number and unit
    come with it) or, without one, the site; references may be given directly."""

    case_id: Ref | None = None
    order_id: Ref | None = None
    tracking_number: Ref | None = None
    unit_id: Ref | None = None
    sku: Ref | None = None


class CameraSaveLastBody(CameraCaptureBody):
    #: A camera is usually saved right after the moment it showed: a shorter default.
    seconds: Annotated[float, Field(gt=0, le=120)] = 10.0


class CaptureOut(Out):
    id: str
    case_id: str
    started_at: str
    preroll_s: float
    stage: str | None
    site_id: str | None = None
    camera_id: str | None = None


class CaptureResponse(Out):
    capture: CaptureOut


#: What a kind resolves a request to: the target and the case whose data the record carries.
Resolved = tuple[CaptureTarget, Case | None]


@dataclass(frozen=True, slots=True)
class CaptureKind:
    """How the requests of one kind of target name what they capture."""

    #: Prefix of the handler names (the OpenAPI operation ids) and the tag.
    name: str
    #: The resource the routes hang under, e.g. ``/api/cases/{id}``.
    base: str
    tag: str
    body: type[CaptureBody]
    save_last_body: type[SaveLastBody | CameraSaveLastBody]
    snapshot_body: type[CaptureBody]
    #: The target of a new capture, save-last or snapshot, once ``identity`` may capture it.
    resolve: Callable[[web.Request, Identity, CaptureBody], Awaitable[Resolved]]
    #: The target a running capture is stopped on (it must be the one it was started on).
    resolve_stop: Callable[[web.Request, Identity], Awaitable[Resolved]]
    #: Fields the kind adds to an item it files (which camera and site).
    describe: Callable[[dict[str, Any], CaptureTarget], dict[str, Any]]
    #: Added to the routes' summaries: who may capture this kind of target.
    who_note: str = ""


def capture_routes(kind: CaptureKind) -> list[ApiRoute]:
    """The four capture routes of ``kind``."""

    async def start_capture(request: web.Request) -> JsonReply[CaptureResponse]:
        identity = await require(request, CALL_TAKERS)
        body = await read_body(request, kind.body)
        target, case = await kind.resolve(request, identity, body)
        info = await request.app[CAPTURES_KEY].start_target(
            target, identity, stage=body.stage, note=body.note, case=case
        )
        return reply(CaptureResponse, {"capture": info.to_json()}, status=201)

    async def stop_capture(request: web.Request) -> JsonReply[ItemResponse]:
        identity = await require(request, CALL_TAKERS)
        target, case = await kind.resolve_stop(request, identity)
        item = await request.app[CAPTURES_KEY].stop_target(
            target, request.match_info["capture"], identity, case
        )
        return _filed(kind, item, target)

    async def save_last(request: web.Request) -> JsonReply[ItemResponse]:
        identity = await require(request, CALL_TAKERS)
        body = await read_body(request, kind.save_last_body)
        seconds = body.seconds
        preroll = request.app[SETTINGS_KEY].preroll_s
        if seconds > preroll:
            raise InvalidRequest(
                f"seconds: at most {preroll:g} (the pre-roll kept in memory)", fields=("seconds",)
            )
        target, case = await kind.resolve(request, identity, body)
        item = await request.app[CAPTURES_KEY].save_last_target(
            target, seconds, identity, stage=body.stage, note=body.note, case=case
        )
        return _filed(kind, item, target)

    async def snapshot(request: web.Request) -> JsonReply[ItemResponse]:
        identity = await require(request, CALL_TAKERS)
        body = await read_body(request, kind.snapshot_body)
        target, case = await kind.resolve(request, identity, body)
        item = await request.app[CAPTURES_KEY].snapshot_target(
            target,
            identity,
            frame_id=body.frame_id if isinstance(body, SnapshotBody) else None,
            stage=body.stage,
            note=body.note,
            case=case,
        )
        return _filed(kind, item, target)

    for handler in (start_capture, stop_capture, save_last, snapshot):
        handler.__name__ = handler.__qualname__ = f"{kind.name}_{handler.__name__}"
    R = ApiRoute
    base, tag, note = kind.base, kind.tag, kind.who_note
    write = (400, 401, 403, 404, 409, 413, 415)
    return [
        R("POST", f"{base}/captures", start_capture,
          "Start recording (from the pre-roll)" + note, "agent, admin", body=(kind.body,),
          response=CaptureResponse, status=201, errors=write, tag=tag),
        R("POST", f"{base}/captures/{{capture}}/stop", stop_capture,
          "Stop a recording; the clip becomes an evidence item" + note, "agent, admin",
          response=ItemResponse, status=201, errors=(400, 401, 403, 404, 409), tag=tag),
        R("POST", f"{base}/captures/last", save_last, "Save the last N seconds" + note,
          "agent, admin", body=(kind.save_last_body,), response=ItemResponse, status=201,
          errors=write, tag=tag),
        R("POST", f"{base}/snapshots", snapshot,
          "Save a JPEG: the newest frame (or, for a case, one of its best frames)" + note,
          "agent, admin", body=(kind.snapshot_body,), response=ItemResponse, status=201,
          errors=write, tag=tag),
    ]  # fmt: skip


def _filed(kind: CaptureKind, item: EvidenceItem, target: CaptureTarget) -> JsonReply[ItemResponse]:
    return reply(ItemResponse, {"item": kind.describe(item_json(item), target)}, status=201)


# -- a case's call ------------------------------------------------------------------------------


async def _held_case(request: web.Request, identity: Identity, action: CaseAction) -> Resolved:
    case = await request.app[CASES_KEY].require(case_id_of(request))
    await require_case_holder(request, identity, case, action)
    return CaptureTarget.for_case(case), case


async def _case_target(request: web.Request, identity: Identity, body: CaptureBody) -> Resolved:
    return await _held_case(request, identity, CaseAction.CAPTURE)


async def _case_stop_target(request: web.Request, identity: Identity) -> Resolved:
    return await _held_case(request, identity, CaseAction.STOP_CAPTURE)


def _as_is(item: dict[str, Any], target: CaptureTarget) -> dict[str, Any]:
    return item


CASE_CAPTURES = CaptureKind(
    name="case",
    base="/api/cases/{id}",
    tag="evidence",
    body=CaptureBody,
    save_last_body=SaveLastBody,
    snapshot_body=SnapshotBody,
    resolve=_case_target,
    resolve_stop=_case_stop_target,
    describe=_as_is,
    who_note=f"; the case's holder during its call, or an admin with an {REASON_HEADER} header",
)


# -- a site camera ------------------------------------------------------------------------------


async def _camera_target(request: web.Request, identity: Identity, body: CaptureBody) -> Resolved:
    if not isinstance(body, CameraCaptureBody):
        raise TypeError(f"a camera capture takes a CameraCaptureBody, not {type(body).__name__}")
    sites = request.app[SITES_KEY]
    camera = await sites.require_camera(request.match_info["id"])
    if not camera.enabled:
        raise Conflict(f"camera {camera.name!r} is switched off")
    site = await sites.require_site(camera.site_id)
    case = await request.app[CASES_KEY].require(body.case_id) if body.case_id else None
    link = request.app[PRESENCE_KEY].link(camera.id)
    if link is None:
        raise Conflict(f"camera {camera.name!r} is not connected: nothing to capture")
    station = camera.station
    target = CaptureTarget(
        room_id=camera_room(camera.id),
        case_id=case.id if case is not None else RoomId.site(site.id),
        use=station.stage.evidence_use if station is not None else Use.WALKTHROUGH,
        order_id=body.order_id or (case.order_id if case else None),
        tracking_number=body.tracking_number or (case.tracking_number if case else None),
        unit_id=body.unit_id or (case.unit_id if case else None),
        sku=body.sku or (case.sku if case else None),
        default_stage=station.stage.logistics_stage if station is not None else None,
        label=f"Site {site.name} ({site.id}) · camera {camera.name} ({camera.id})",
        site_id=site.id,
        camera_id=camera.id,
        publishers=(link.participant_id,),
    )
    return target, case


async def _camera_stop_target(request: web.Request, identity: Identity) -> Resolved:
    camera = await request.app[SITES_KEY].require_camera(request.match_info["id"])
    room_only = CaptureTarget(
        room_id=camera_room(camera.id), case_id="", use=Use.WALKTHROUGH, camera_id=camera.id
    )
    return room_only, None


def _camera_item(item: dict[str, Any], target: CaptureTarget) -> dict[str, Any]:
    item["camera_id"] = target.camera_id
    if target.site_id is not None:
        item["site_id"] = target.site_id
    return item


CAMERA_CAPTURES = CaptureKind(
    name="camera",
    base="/api/cameras/{id}",
    tag="sites",
    body=CameraCaptureBody,
    save_last_body=CameraSaveLastBody,
    snapshot_body=CameraCaptureBody,
    resolve=_camera_target,
    resolve_stop=_camera_stop_target,
    describe=_camera_item,
)
