"""REST routes of sites and cameras (see docs/protocol.md, "Sites and cameras"): admins create,
change and delete sites and cameras and mint or revoke camera tokens; every staff member may
list and view them with their live status (capture from a camera: ``server.http.capture``)."""

from __future__ import annotations

import time
from typing import Annotated, Any, Literal

from aiohttp import web
from pydantic import Field, StrictBool, StringConstraints

from evidence import EvidenceError
from server.errors import InvalidRequest
from server.http._request import ADMIN, STAFF, read_body, require
from server.http.keys import (
    CAMERA_SESSIONS_KEY,
    EVIDENCE_KEY,
    PRESENCE_KEY,
    SETTINGS_KEY,
    SITES_KEY,
)
from server.http.openapi import ApiRoute
from server.http.replies import JsonReply, Out, reply
from server.http.wire import Body, ItemListResponse, item_json
from server.sites import (
    Camera,
    CameraChanges,
    CameraKind,
    CameraPresence,
    NewCamera,
    SiteService,
    StationStage,
)
from server.timefmt import iso_time
from signaling import Identity, Role

__all__ = ["camera_json", "routes"]

CAPTURE_READERS = frozenset({Role.AGENT, Role.REVIEWER, Role.ADMIN})
#: Longest a camera token may live (a fixed camera keeps its token; rotate by minting a new one).
MAX_TOKEN_TTL_S = 5 * 366 * 24 * 3600
#: A camera token's life when none is asked for: a shift's phone, an encoder between two
#: maintenance visits. Longer on request (``ttl_s``), never without end.
DEFAULT_TOKEN_TTL_S = 30 * 24 * 3600


# -- wire models -------------------------------------------------------------------------------


Name = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=120)]
Text = Annotated[str, StringConstraints(max_length=2000)]
Secret = Annotated[str, StringConstraints(min_length=1, max_length=256)]
RtspUrl = Annotated[str, StringConstraints(min_length=8, max_length=2048)]
StationName = Literal["receiving", "packing", "returns_qc"]
IdleTimeout = Annotated[float, Field(ge=5, le=3600)]


class NewSiteBody(Body):
    name: Name
    address: Text | None = None
    note: Text | None = None


class SiteChangeBody(Body):
    name: Name | None = None
    address: Text | None = None
    note: Text | None = None


class NewCameraBody(Body):
    name: Name
    kind: Literal["phone", "whip", "rtsp"]
    #: RTSP cameras: ``rtsp://[user:password@]host[:port]/path``; credentials are kept
    #: encrypted, apart from the URL, and never shown back.
    rtsp_url: RtspUrl | None = None
    rtsp_username: Secret | None = None
    rtsp_password: Secret | None = None
    #: A fixed station camera (packing-station evidence): what the station does.
    station_stage: StationName | None = None
    station_idle_timeout_s: IdleTimeout | None = None


class CameraChangeBody(Body):
    """Only the fields sent change; ``null`` clears the station or the RTSP credentials."""

    name: Name | None = None
    enabled: StrictBool | None = None
    rtsp_url: RtspUrl | None = None
    rtsp_username: Secret | None = None
    rtsp_password: Secret | None = None
    station_stage: StationName | None = None
    station_idle_timeout_s: IdleTimeout | None = None


class NewCameraTokenBody(Body):
    #: Seconds the token stays valid (30 days unless asked; at most 5 years).
    ttl_s: Annotated[int, Field(ge=60, le=MAX_TOKEN_TTL_S)] = DEFAULT_TOKEN_TTL_S


class SiteOut(Out):
    id: str
    name: str
    address: str | None
    note: str | None
    created_at: str
    updated_at: str
    camera_count: int | None = None


class RtspStatusOut(Out):
    """What the server's puller of an RTSP camera is doing."""

    state: Literal["connecting", "online", "retrying", "stopped"]
    codec: str | None
    profile: str | None
    width: int | None
    height: int | None
    fps: float | None
    transcoding: str | None
    audio: str | None
    #: "not allowed" (the outbound guard refused the address) or "unreachable"; why in full
    #: is ``detail``, for admins.
    error: str | None
    #: Admins only: the camera's URL without credentials and the reason it failed.
    detail: str | None = None
    retries: int
    connects: int
    retry_in_s: float | None
    last_frame_at: str | None


class StationStatusOut(Out):
    """What a station camera is recording now."""

    stage: StationName
    logistics_stage: str
    reading: bool
    tracking_number: str | None
    recording_since: str | None
    idle_timeout_s: float
    last_read_at: str | None
    last_tracking_number: str | None
    last_item_id: str | None
    clips: int


class CameraStatusOut(Out):
    online: bool
    live: bool | None
    source: Literal["phone", "whip", "rtsp"] | None
    connected_since: str | None
    last_seen_at: str | None
    codec: str | None
    width: int | None
    height: int | None
    fps: float | None
    bitrate_kbps: float | None
    audio_codec: str | None
    last_frame_at: str | None
    transcoding: str | None
    stats_available: bool
    #: RTSP cameras: the puller's state (null for other cameras).
    rtsp: RtspStatusOut | None = None
    #: Station cameras: the parcel being recorded (null for other cameras).
    station: StationStatusOut | None = None


class StationOut(Out):
    stage: StationName
    logistics_stage: str
    idle_timeout_s: float | None


class CameraOut(Out):
    id: str
    site_id: str
    name: str
    kind: Literal["phone", "whip", "rtsp"]
    rtsp_url: str | None
    rtsp_credentials: bool
    station: StationOut | None
    enabled: bool
    created_at: str
    updated_at: str
    last_seen_at: str | None
    status: CameraStatusOut
    whip_url: str | None = None


class SiteResponse(Out):
    site: SiteOut


class SiteListResponse(Out):
    sites: list[SiteOut]


class SiteDetailResponse(Out):
    site: SiteOut
    cameras: list[CameraOut]


class CameraResponse(Out):
    camera: CameraOut


class CameraTokenOut(Out):
    id: str
    camera_id: str
    state: Literal["active", "expired", "revoked"]
    created_by: str | None
    created_at: str
    expires_at: str | None
    revoked_at: str | None
    last_used_at: str | None


class CameraTokenListResponse(Out):
    tokens: list[CameraTokenOut]


class CameraTokenCreatedResponse(Out):
    token: str
    id: str
    camera_id: str
    kind: Literal["phone", "whip"]
    expires_at: str | None
    #: Phone cameras: the page to open on the phone (the token is in it).
    camera_url: str | None = None
    #: WHIP cameras: the endpoint to give the encoder, with the token as its bearer token.
    whip_url: str | None = None


# -- helpers -----------------------------------------------------------------------------------


def _sites(request: web.Request) -> SiteService:
    return request.app[SITES_KEY]


def camera_json(camera: Camera, presence: CameraPresence, base_url: str) -> dict[str, Any]:
    """A camera with its live status (and, for WHIP cameras, the endpoint URL)."""
    body = camera.to_json()
    body["status"] = presence.status(camera.id, camera.last_seen_at)
    if camera.kind is CameraKind.WHIP:
        body["whip_url"] = f"{base_url}/whip/{camera.id}"
    return body


def _camera_json(
    request: web.Request, camera: Camera, identity: Identity | None = None
) -> dict[str, Any]:
    """:func:`camera_json`; for an admin, with why its RTSP pull failed (M4: to anyone else,
    that text would map which internal hosts and ports answer)."""
    body = camera_json(camera, request.app[PRESENCE_KEY], request.app[SETTINGS_KEY].base_url)
    rtsp = (body.get("status") or {}).get("rtsp")
    sessions = request.app.get(CAMERA_SESSIONS_KEY)
    if identity is not None and identity.role is Role.ADMIN and rtsp and sessions is not None:
        if rtsp.get("error") is not None:
            rtsp["detail"] = sessions.rtsp_error(camera.id)
    return body


# -- sites -------------------------------------------------------------------------------------


async def list_sites(request: web.Request) -> JsonReply[SiteListResponse]:
    await require(request, STAFF)
    sites = _sites(request)
    out = []
    for site in await sites.list_sites():
        body = site.to_json()
        body["camera_count"] = len(await sites.list_cameras(site.id))
        out.append(body)
    return reply(SiteListResponse, {"sites": out})


async def create_site(request: web.Request) -> JsonReply[SiteResponse]:
    identity = await require(request, ADMIN)
    body = await read_body(request, NewSiteBody)
    site = await _sites(request).create_site(
        body.name, address=body.address, note=body.note, actor=identity.subject
    )
    return reply(SiteResponse, {"site": site.to_json()}, status=201)


async def get_site(request: web.Request) -> JsonReply[SiteDetailResponse]:
    identity = await require(request, STAFF)
    sites = _sites(request)
    site = await sites.require_site(request.match_info["id"])
    cameras = [
        _camera_json(request, camera, identity) for camera in await sites.list_cameras(site.id)
    ]
    return reply(SiteDetailResponse, {"site": site.to_json(), "cameras": cameras})


async def update_site(request: web.Request) -> JsonReply[SiteResponse]:
    await require(request, ADMIN)
    body = await read_body(request, SiteChangeBody)
    changes = {key: getattr(body, key) for key in body.model_fields_set}
    if changes.get("name", "") is None:
        raise InvalidRequest("name: a site keeps a name", fields=("name",))
    site = await _sites(request).update_site(request.match_info["id"], changes)
    await request.app[CAMERA_SESSIONS_KEY].site_changed(site.id)
    return reply(SiteResponse, {"site": site.to_json()})


async def delete_site(request: web.Request) -> web.Response:
    await require(request, ADMIN)
    site_id = request.match_info["id"]
    cameras = await _sites(request).delete_site(site_id)
    sessions = request.app[CAMERA_SESSIONS_KEY]
    for camera_id in cameras:
        await sessions.end_camera(camera_id, "the site was deleted")
    await sessions.site_changed(site_id)
    return web.Response(status=204)


# -- cameras -----------------------------------------------------------------------------------


async def create_camera(request: web.Request) -> JsonReply[CameraResponse]:
    identity = await require(request, ADMIN)
    body = await read_body(request, NewCameraBody)
    camera = await _sites(request).create_camera(
        request.match_info["id"],
        NewCamera(
            name=body.name,
            kind=CameraKind(body.kind),
            rtsp_url=body.rtsp_url,
            rtsp_username=body.rtsp_username,
            rtsp_password=body.rtsp_password,
            station_stage=StationStage(body.station_stage) if body.station_stage else None,
            station_idle_timeout_s=body.station_idle_timeout_s,
        ),
        actor=identity.subject,
    )
    await request.app[CAMERA_SESSIONS_KEY].site_changed(camera.site_id)
    return reply(CameraResponse, {"camera": _camera_json(request, camera)}, status=201)


async def get_camera(request: web.Request) -> JsonReply[CameraResponse]:
    identity = await require(request, STAFF)
    camera = await _sites(request).require_camera(request.match_info["id"])
    return reply(CameraResponse, {"camera": _camera_json(request, camera, identity)})


async def update_camera(request: web.Request) -> JsonReply[CameraResponse]:
    await require(request, ADMIN)
    body = await read_body(request, CameraChangeBody)
    sent = body.model_fields_set
    if "name" in sent and body.name is None:
        raise InvalidRequest("name: a camera keeps a name", fields=("name",))
    if "enabled" in sent and body.enabled is None:
        raise InvalidRequest("enabled: true or false", fields=("enabled",))
    values: dict[str, Any] = {key: getattr(body, key) for key in sent}
    if "station_stage" in values and values["station_stage"] is not None:
        values["station_stage"] = StationStage(values["station_stage"])
    camera = await _sites(request).update_camera(request.match_info["id"], CameraChanges(**values))
    sessions = request.app[CAMERA_SESSIONS_KEY]
    if not camera.enabled:
        await sessions.end_camera(camera.id, "this camera was switched off by an administrator")
    await sessions.site_changed(camera.site_id)
    return reply(CameraResponse, {"camera": _camera_json(request, camera)})


async def delete_camera(request: web.Request) -> web.Response:
    await require(request, ADMIN)
    camera = await _sites(request).delete_camera(request.match_info["id"])
    sessions = request.app[CAMERA_SESSIONS_KEY]
    await sessions.end_camera(camera.id, "this camera was deleted")
    await sessions.site_changed(camera.site_id)
    return web.Response(status=204)


# -- tokens ------------------------------------------------------------------------------------


async def list_camera_tokens(request: web.Request) -> JsonReply[CameraTokenListResponse]:
    await require(request, ADMIN)
    sites = _sites(request)
    tokens = await sites.list_tokens(request.match_info["id"])
    now = time.time()
    return reply(CameraTokenListResponse, {"tokens": [token.to_json(now) for token in tokens]})


async def create_camera_token(request: web.Request) -> JsonReply[CameraTokenCreatedResponse]:
    identity = await require(request, ADMIN)
    body = await read_body(request, NewCameraTokenBody)
    sites = _sites(request)
    camera = await sites.require_camera(request.match_info["id"])
    issued = await sites.issue_token(camera.id, ttl_s=body.ttl_s, actor=identity.subject)
    base = request.app[SETTINGS_KEY].base_url
    out: dict[str, Any] = {
        "token": issued.token,
        "id": issued.id,
        "camera_id": camera.id,
        "kind": camera.kind.value,
        "expires_at": iso_time(issued.expires_at),
    }
    if camera.kind is CameraKind.PHONE:
        # The token rides in the fragment, which no browser sends and no proxy logs.
        out["camera_url"] = f"{base}/camera#t={issued.token}"
    else:
        out["whip_url"] = f"{base}/whip/{camera.id}"
    return reply(CameraTokenCreatedResponse, out, status=201)


async def revoke_camera_token(request: web.Request) -> web.Response:
    await require(request, ADMIN)
    camera_id, token_id = request.match_info["id"], request.match_info["token"]
    await _sites(request).revoke_token(camera_id, token_id)
    await request.app[CAMERA_SESSIONS_KEY].end_camera(
        camera_id, "this camera's token was revoked by an administrator", token_id=token_id
    )
    return web.Response(status=204)


# -- evidence filed from the site's cameras --------------------------------------------------


async def site_evidence(request: web.Request) -> JsonReply[ItemListResponse]:
    await require(request, CAPTURE_READERS)
    sites = _sites(request)
    site = await sites.require_site(request.match_info["id"])
    archive = request.app[EVIDENCE_KEY]
    items = []
    for link in await sites.evidence(site.id):
        try:
            item = await archive.peek(link.item_id)
        except EvidenceError:
            continue  # deleted since (retention or a reviewer): its log entries remain
        body = item_json(item)
        body["site_id"], body["camera_id"] = link.site_id, link.camera_id
        items.append(body)
    return reply(ItemListResponse, {"items": items})


def routes() -> list[ApiRoute]:
    R = ApiRoute
    site = "/api/sites/{id}"
    camera = "/api/cameras/{id}"
    write = (400, 401, 403, 404, 413, 415)
    return [
        R("GET", "/api/sites", list_sites, "Sites, by name", "staff",
          response=SiteListResponse, errors=(401, 403), tag="sites"),
        R("POST", "/api/sites", create_site, "Create a site", "admin", body=(NewSiteBody,),
          response=SiteResponse, status=201, errors=(400, 401, 403, 413, 415), tag="sites"),
        R("GET", site, get_site, "A site and its cameras with their live status", "staff",
          response=SiteDetailResponse, errors=(401, 403, 404), tag="sites"),
        R("PATCH", site, update_site, "Change a site's name, address or note", "admin",
          body=(SiteChangeBody,), response=SiteResponse, errors=write, tag="sites"),
        R("DELETE", site, delete_site,
          "Delete a site with its cameras and tokens (live cameras are disconnected)", "admin",
          status=204, errors=(401, 403, 404), tag="sites"),
        R("POST", f"{site}/cameras", create_camera,
          "Add a camera (phone page, WHIP encoder or RTSP IP camera)", "admin",
          body=(NewCameraBody,), response=CameraResponse, status=201, errors=write, tag="sites"),
        R("GET", f"{site}/evidence", site_evidence, "Evidence captured from the site's cameras",
          "agent, reviewer, admin", response=ItemListResponse, errors=(401, 403, 404),
          tag="sites"),
        R("GET", camera, get_camera, "A camera with its live status", "staff",
          response=CameraResponse, errors=(401, 403, 404), tag="sites"),
        R("PATCH", camera, update_camera,
          "Change a camera (name, enabled, RTSP URL and credentials, station)", "admin",
          body=(CameraChangeBody,), response=CameraResponse, errors=write, tag="sites"),
        R("DELETE", camera, delete_camera, "Delete a camera (it is disconnected)", "admin",
          status=204, errors=(401, 403, 404), tag="sites"),
        R("GET", f"{camera}/tokens", list_camera_tokens,
          "The camera's tokens (never the tokens themselves)", "admin",
          response=CameraTokenListResponse, errors=(401, 403, 404), tag="sites"),
        R("POST", f"{camera}/tokens", create_camera_token,
          "Mint a token for a phone or WHIP camera (shown once)", "admin",
          body=(NewCameraTokenBody,), response=CameraTokenCreatedResponse, status=201,
          errors=(*write, 409), tag="sites"),
        R("DELETE", f"{camera}/tokens/{{token}}", revoke_camera_token,
          "Revoke a camera token (a page or encoder using it is disconnected)", "admin",
          status=204, errors=(401, 403, 404), tag="sites"),
    ]  # fmt: skip
