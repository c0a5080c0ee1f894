"""REST routes of the inspection tools: freezing the customer's picture and releasing it (with
the marked-up frame), the frozen frame and the call's stills as images, and the customer's
photo uploads.

The agent's routes are the case holder's (:func:`server.http.authz.require_case_holder`). The
customer's routes hang under the customer's page (``/join/c/{case_id}/...``), so that the page's
path-scoped, same-site cookie carries the join token to them and to nothing else.

A photo goes up in pieces, resumably (``POST`` creates the upload, ``PATCH`` with
``Upload-Offset`` sends a piece, ``HEAD`` says where to go on after the network dropped); the
piece that completes it has the photo read, graded and filed, and answers with the item.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Annotated, Any, Literal

from aiohttp import web
from pydantic import Field

from server.capture import PhotoMeta, Upload
from server.cases import Case, CaseAction
from server.errors import DomainError, DomainErrorCode, InvalidRequest
from server.http._request import CALL_TAKERS, case_id_of, customer_of, read_body, require
from server.http.authz import REASON_HEADER, require_case_holder
from server.http.keys import (
    CASES_KEY,
    EVIDENCE_KEY,
    INSPECTION_KEY,
    UPLOADS_KEY,
)
from server.http.openapi import ApiRoute
from server.http.replies import JsonReply, Out, reply
from server.http.wire import Body, item_json
from signaling import MAX_STROKES, Identity, Stroke

__all__ = ["routes"]

#: The header a piece of an upload says where it starts with (and answers carry).
OFFSET_HEADER = "Upload-Offset"
LENGTH_HEADER = "Upload-Length"
#: Largest piece one PATCH may carry (a phone sends a few hundred kilobytes at a time).
MAX_PIECE_BYTES = 8 * 1024 * 1024


class FrameOut(Out):
    frame_id: str
    item_id: str
    case_id: str
    width: int
    height: int


class FrozenResponse(Out):
    frame: FrameOut


class ReleaseBody(Body):
    strokes: Annotated[list[Stroke], Field(max_length=MAX_STROKES)] = []


class ReleaseResponse(Out):
    #: The marked-up frame filed as evidence; null when nothing was drawn.
    item: dict[str, Any] | None


class LocationBody(Body):
    latitude: Annotated[float, Field(ge=-90, le=90)]
    longitude: Annotated[float, Field(ge=-180, le=180)]
    accuracy_m: Annotated[float, Field(ge=0, le=1e6)] | None = None


class UploadBody(Body):
    size: Annotated[int, Field(gt=0)]
    content_type: Annotated[str, Field(max_length=100)]
    source: Literal["camera", "gallery"] = "camera"
    method: Literal["take_photo", "frame", "file"] = "take_photo"
    request_id: Annotated[str, Field(pattern=r"^[A-Za-z0-9_.:-]{1,64}$")] | None = None
    location_consent: bool = False
    location: LocationBody | None = None
    #: When the phone took it, in milliseconds since the epoch (the page's clock).
    taken_at_ms: Annotated[int, Field(ge=0)] | None = None
    #: ``call``, or ``intake``: sent with the answers before the call.
    purpose: Literal["call", "intake"] = "call"


class UploadOut(Out):
    id: str
    size: int
    offset: int
    complete: bool
    expires_at: float


class UploadResponse(Out):
    upload: UploadOut


class PhotoOut(Out):
    item_id: str
    width: int
    height: int
    sha256: str
    grade: str | None
    assessment: dict[str, Any]


class PieceResponse(Out):
    upload: UploadOut
    #: The photo as filed, once the piece completed the upload.
    photo: PhotoOut | None


def _upload_json(upload: Upload) -> dict[str, Any]:
    return {
        "id": upload.id,
        "size": upload.size,
        "offset": upload.offset,
        "complete": upload.complete,
        "expires_at": upload.expires_at,
    }


# -- the agent's side ------------------------------------------------------------------------------


async def _held(request: web.Request, action: CaseAction) -> tuple[Identity, Case, str]:
    identity = await require(request, CALL_TAKERS)
    case = await request.app[CASES_KEY].require(case_id_of(request))
    grant = await require_case_holder(request, identity, case, action)
    return identity, case, grant.reason


async def freeze_frame(request: web.Request) -> JsonReply[FrozenResponse]:
    identity, case, _ = await _held(request, CaseAction.CAPTURE)
    frame = await request.app[INSPECTION_KEY].freeze(case, identity)
    return reply(FrozenResponse, {"frame": frame.to_json()}, status=201)


async def release_frozen(request: web.Request) -> JsonReply[ReleaseResponse]:
    identity, case, _ = await _held(request, CaseAction.CAPTURE)
    body = await read_body(request, ReleaseBody)
    item = await request.app[INSPECTION_KEY].release(
        case, request.match_info["frame"], body.strokes, identity
    )
    return reply(ReleaseResponse, {"item": item_json(item) if item is not None else None})


async def frozen_image(request: web.Request) -> web.Response:
    identity, case, reason = await _held(request, CaseAction.VIEW_LIVE)
    frame_id = request.match_info["frame"]
    data = await request.app[INSPECTION_KEY].frame_image(case, frame_id)
    # Logged before it is served, as every live frame staff see.
    await request.app[EVIDENCE_KEY].log_view(
        actor=identity.subject,
        reason=reason,
        subject=f"case:{case.id}",
        what=f"frozen:{frame_id}",
        fields={"actor_name": identity.name, "case_id": case.id, "frame_id": frame_id},
    )
    return _image(data, "image/jpeg")


async def still_image(request: web.Request) -> web.StreamResponse:
    identity, case, reason = await _held(request, CaseAction.VIEW_LIVE)
    stamped = request.query.get("stamped") in ("1", "true")
    name, path = await request.app[INSPECTION_KEY].still_file(
        case, request.match_info["item"], actor=identity.subject, reason=reason, stamped=stamped
    )
    kind = "image/png" if name.endswith(".png") else "image/jpeg"
    return web.FileResponse(
        path,
        headers={
            "Content-Type": kind,
            "Cache-Control": "private, max-age=3600",
            "X-Content-Type-Options": "nosniff",
        },
    )


def _image(data: bytes, content_type: str) -> web.Response:
    return web.Response(
        body=data,
        content_type=content_type,
        # Kept by the viewer's browser only: a cached copy is never served to anyone else.
        headers={"Cache-Control": "private, max-age=3600", "X-Content-Type-Options": "nosniff"},
    )


# -- the customer's side ---------------------------------------------------------------------------


def _owner(identity: Identity, case: Case) -> str:
    return f"{case.id}:{identity.subject}"


async def customer_frozen_image(request: web.Request) -> web.Response:
    _, case = await customer_of(request)
    data = await request.app[INSPECTION_KEY].frame_image(case, request.match_info["frame"])
    return _image(data, "image/jpeg")


async def create_upload(request: web.Request) -> JsonReply[UploadResponse]:
    identity, case = await customer_of(request)
    body = await read_body(request, UploadBody)
    request.app[INSPECTION_KEY].require_call(case, body.purpose)
    meta: dict[str, Any] = body.model_dump(exclude={"size", "content_type"})
    upload = await request.app[UPLOADS_KEY].create(
        _owner(identity, case), size=body.size, content_type=body.content_type, meta=meta
    )
    response = reply(UploadResponse, {"upload": _upload_json(upload)}, status=201)
    response.headers[OFFSET_HEADER] = str(upload.offset)
    return response


async def upload_status(request: web.Request) -> web.Response:
    identity, case = await customer_of(request)
    upload = await request.app[UPLOADS_KEY].status(
        request.match_info["upload"], _owner(identity, case)
    )
    return web.Response(
        status=200,
        headers={
            OFFSET_HEADER: str(upload.offset),
            LENGTH_HEADER: str(upload.size),
            "Cache-Control": "no-store",
        },
    )


async def send_piece(request: web.Request) -> JsonReply[PieceResponse]:
    identity, case = await customer_of(request)
    raw = request.headers.get(OFFSET_HEADER, "")
    if not raw.isdigit():
        raise InvalidRequest(f"send the {OFFSET_HEADER} header: the byte the piece starts at")
    if request.content_length is not None and request.content_length > MAX_PIECE_BYTES:
        raise DomainError(
            f"a piece is at most {MAX_PIECE_BYTES // (1024 * 1024)} MB: send smaller pieces",
            code=DomainErrorCode.TOO_LARGE,
        )
    store = request.app[UPLOADS_KEY]
    owner = _owner(identity, case)
    upload_id = request.match_info["upload"]
    pending = await store.status(upload_id, owner)
    request.app[INSPECTION_KEY].require_call(case, str(pending.meta.get("purpose", "call")))
    # Whatever has arrived, at once: a piece cut off halfway keeps every byte it brought.
    upload = await store.append(
        upload_id, owner, offset=int(raw), chunks=request.content.iter_any()
    )
    photo = None
    if upload.complete:
        photo = await _file_photo(request, identity, case, upload)
    response = reply(PieceResponse, {"upload": _upload_json(upload), "photo": photo})
    response.headers[OFFSET_HEADER] = str(upload.offset)
    return response


async def _file_photo(
    request: web.Request, identity: Identity, case: Case, upload: Upload
) -> dict[str, Any]:
    """Read, grade and file a complete upload; the upload is gone after (filed or refused)."""
    store = request.app[UPLOADS_KEY]
    owner = _owner(identity, case)
    _, path = await store.take(upload.id, owner)
    try:
        data = await asyncio.to_thread(path.read_bytes)
        meta = upload.meta
        location = meta.get("location")
        item, model = await request.app[INSPECTION_KEY].file_photo(
            case,
            data,
            PhotoMeta(
                source=meta.get("source", "camera"),
                request_id=meta.get("request_id"),
                method=meta.get("method", "take_photo"),
                location_consent=bool(meta.get("location_consent")),
                location=(
                    (location["latitude"], location["longitude"], location.get("accuracy_m"))
                    if isinstance(location, dict)
                    else None
                ),
                taken_at=meta["taken_at_ms"] / 1000 if meta.get("taken_at_ms") else None,
                purpose="intake" if meta.get("purpose") == "intake" else "call",
            ),
            identity,
        )
    finally:
        with contextlib.suppress(Exception):
            await store.discard(upload.id)
    first = item.files[0]
    return {
        "item_id": item.item_id,
        "width": int((item.record.details or {}).get("width", 0)),
        "height": int((item.record.details or {}).get("height", 0)),
        "sha256": first.sha256,
        "grade": model.get("grade"),
        "assessment": model,
    }


def routes() -> list[ApiRoute]:
    """The inspection endpoints, registered and documented with the rest of the API."""
    R = ApiRoute
    held = f"the case's holder during its call, or an admin with an {REASON_HEADER} header"
    customer = "the customer (the join link's cookie)"
    return [
        R("POST", "/api/cases/{id}/frozen", freeze_frame,
          "Freeze the customer's picture: the newest frame the server received, at full "
          "resolution, filed as a snapshot and shown on both pages; " + held,
          "agent holding the case, admin", response=FrozenResponse, status=201,
          errors=(400, 401, 403, 404, 409), tag="inspection"),
        R("GET", "/api/cases/{id}/frozen/{frame}", frozen_image,
          "The frozen frame as JPEG; every read is in the evidence log; " + held,
          "agent holding the case, admin", errors=(400, 401, 403, 404, 409),
          content_type="image/jpeg", tag="inspection"),
        R("POST", "/api/cases/{id}/frozen/{frame}/release", release_frozen,
          "Back to live video; with strokes, the marked-up frame is filed first; " + held,
          "agent holding the case, admin", body=(ReleaseBody,), response=ReleaseResponse,
          errors=(400, 401, 403, 404, 409, 413, 415), tag="inspection"),
        R("GET", "/api/cases/{id}/stills/{item}", still_image,
          "A photo, frozen or marked-up frame of the case (``?stamped=1``: its stamped "
          "copy); logged as a download; " + held,
          "agent holding the case, admin", errors=(400, 401, 403, 404, 409),
          content_type="image/jpeg", tag="inspection"),
        R("GET", "/join/c/{case_id}/frozen/{frame}", customer_frozen_image,
          "The frozen frame as JPEG, for the customer's page", customer,
          errors=(401, 404), content_type="image/jpeg", tag="inspection"),
        R("POST", "/join/c/{case_id}/uploads", create_upload,
          "Start sending a photo (resumable: PATCH pieces, HEAD to resume)", customer,
          body=(UploadBody,), response=UploadResponse, status=201,
          errors=(400, 401, 404, 409, 413, 415), tag="inspection"),
        R("HEAD", "/join/c/{case_id}/uploads/{upload}", upload_status,
          f"Where an upload stands: the {OFFSET_HEADER} to send the next piece from", customer,
          errors=(401, 404), content_type="text/plain", tag="inspection"),
        R("PATCH", "/join/c/{case_id}/uploads/{upload}", send_piece,
          f"One piece of a photo, from the byte its {OFFSET_HEADER} header names; the piece "
          "that completes it has the photo read, graded and filed", customer,
          response=PieceResponse, errors=(400, 401, 404, 409, 413, 415, 503),
          tag="inspection"),
    ]  # fmt: skip
