"""WHIP ingest (RFC 9725): a hardware or software encoder (OBS, GStreamer, FFmpeg) publishes a
camera of a site at ``/whip/<camera id>``.

- ``POST /whip/<camera id>`` with an ``application/sdp`` offer and ``Authorization: Bearer
  <camera token>`` -> ``201`` with the SDP answer, ``Location`` of the session, an ``ETag`` and
  one ``Link: <url>; rel="ice-server"`` per configured STUN/TURN server.
- ``PATCH <session>`` with ``application/trickle-ice-sdpfrag``: trickled candidates -> ``204``.
  An ICE restart (``If-Match: "*"`` and a fragment with a new ``ice-ufrag``/``ice-pwd``, sent by
  an encoder that changed networks) -> ``200`` with the server's new ``ice-ufrag``/``ice-pwd``
  and candidates as a fragment, and a new ``ETag``; media goes on over the old path until the
  new one is checked (``MediaEngine.restart_ice``). ``409`` if ICE had not completed.
- ``DELETE <session>`` ends it -> ``200``.
- ``OPTIONS`` on both answers CORS preflights (browser WHIP clients); every response carries the
  CORS headers. Bad input gets a clear JSON error: ``401`` (with ``WWW-Authenticate``) for a
  missing, unknown, revoked or expired token, ``403`` for another camera's token, ``404`` for an
  unknown camera or session, ``409`` for a camera that is not a WHIP camera, ``400`` for SDP that
  cannot be applied, ``413`` past the size limits, ``415`` for another content type.

One WHIP session per camera: a new POST for a camera that already has one replaces it (an
encoder that restarted after a crash never sent DELETE). A session whose peer is gone (the
encoder stopped sending and ICE consent expired) is ended by a watchdog.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import re
import secrets
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from aiohttp import web

from media import (
    BadSdpFragment,
    IceCredentials,
    IceNotRestartable,
    SdpFragment,
    parse_sdpfrag,
)
from server.http.errors import HttpError
from server.ice import IceServers
from server.settings import Settings
from server.sites import Camera, CameraKind, CameraPresence, CameraTokenError, SiteService
from signaling import SubjectId, camera_room

__all__ = ["MAX_OFFER_BYTES", "MAX_SDPFRAG_BYTES", "WhipEndpoint", "WhipSession", "ice_links"]

logger = logging.getLogger(__name__)

MAX_OFFER_BYTES = 48 * 1024
MAX_SDPFRAG_BYTES = 16 * 1024
SDP = "application/sdp"
SDPFRAG = "application/trickle-ice-sdpfrag"
_REALM = "inspectd whip"
_CORS = {
    "Access-Control-Allow-Origin": "*",
    "Access-Control-Allow-Methods": "OPTIONS, POST, PATCH, DELETE",
    "Access-Control-Allow-Headers": "Authorization, Content-Type, If-Match",
    "Access-Control-Expose-Headers": "Location, ETag, Link, Accept-Patch, WWW-Authenticate",
    "Access-Control-Max-Age": "600",
}
#: How often sessions whose peer is gone are looked for.
WATCHDOG_S = 2.0


class WhipMedia(Protocol):
    """What WHIP needs of the media engine (``MediaEngine``)."""

    async def answer(self, room_id: str, participant_id: str, offer_sdp: str) -> str: ...

    async def add_candidate(
        self, participant_id: str, candidate: str, sdp_mid: str | None, sdp_mline_index: int | None
    ) -> None: ...

    async def restart_ice(
        self, participant_id: str, remote: IceCredentials
    ) -> tuple[IceCredentials, list[str]]:
        """Raises ``LookupError`` once the peer is gone, ``IceNotRestartable`` before ICE
        completed."""
        ...

    async def close_peer(self, participant_id: str) -> None: ...

    def remote_tracks(self, participant_id: str) -> dict[str, int]:
        """Raises ``LookupError`` once the participant's peer is gone."""
        ...


def _answer_function(media: WhipMedia) -> Callable[[str, str, str], Awaitable[str]]:
    """``media.answer`` for an ingest peer.

    FFmpeg's WHIP muxer never answers ICE consent checks, so aiortc would end the session after
    ~30 s; ``answer(..., ingest=True)`` makes the engine count any packet from the encoder as
    consent. NOTE for the media plane: until every engine has that parameter it is passed only
    when ``answer`` accepts it; drop this shim once it does.
    """
    try:
        accepts = "ingest" in inspect.signature(media.answer).parameters
    except (TypeError, ValueError):
        accepts = False
    if not accepts:
        logger.warning("the media engine has no ingest mode: WHIP sessions may end after ~30 s")
        return media.answer

    async def answer(room_id: str, participant_id: str, offer_sdp: str) -> str:
        call: Any = media.answer
        result: str = await call(room_id, participant_id, offer_sdp, ingest=True)
        return result

    return answer


@dataclass(slots=True)
class WhipSession:
    id: str
    camera_id: str
    site_id: str
    participant_id: str
    token_id: str
    etag: str
    ice_ufrag: str | None
    ice_pwd: str | None
    mids: list[str]
    created_at: float
    #: The kind of the offer's first m= section (the BUNDLE transport), for fragments.
    first_kind: str = "video"
    path: str = field(default="")


class WhipError(HttpError):
    """A WHIP error response; it carries the CORS headers every WHIP answer has (the error
    middleware writes the body)."""

    def __init__(
        self, status: int, code: str, message: str, headers: Mapping[str, str] | None = None
    ) -> None:
        super().__init__(status, code, message, {**_CORS, **(headers or {})})


def ice_links(servers: list[dict[str, Any]]) -> list[str]:
    """``Link`` header values (RFC 9725 section 4.6) for the ICE servers a client may use."""
    links: list[str] = []
    for server in servers:
        urls = server.get("urls") or []
        for url in [urls] if isinstance(urls, str) else urls:
            link = f'<{url}>; rel="ice-server"'
            if server.get("username") and server.get("credential"):
                link += (
                    f'; username="{server["username"]}"; credential="{server["credential"]}"'
                    '; credential-type="password"'
                )
            links.append(link)
    return links


def _sdp_attribute(sdp: str, name: str) -> str | None:
    prefix = f"a={name}:"
    for line in sdp.splitlines():
        line = line.strip()
        if line.startswith(prefix):
            return line[len(prefix) :].strip()
    return None


def _mids(sdp: str) -> list[str]:
    return [
        line.strip()[6:].strip() for line in sdp.splitlines() if line.strip().startswith("a=mid:")
    ]


def _first_kind(sdp: str) -> str:
    for line in sdp.splitlines():
        if line.startswith("m="):
            return line[2:].split(" ", 1)[0]
    return "video"


#: ice-char = ALPHA / DIGIT / "+" / "/" (RFC 8839 section 5.4).
_UFRAG = re.compile(r"[A-Za-z0-9+/]{4,256}")
_PWD = re.compile(r"[A-Za-z0-9+/]{22,256}")


def _media_type(request: web.Request) -> str:
    return request.headers.get("Content-Type", "").split(";", 1)[0].strip().lower()


async def _read_text(request: web.Request, limit: int) -> str:
    if request.content_length is not None and request.content_length > limit:
        raise WhipError(413, "too_large", f"the body is over {limit} bytes")
    data = bytearray()
    async for chunk in request.content.iter_any():
        data.extend(chunk)
        if len(data) > limit:
            raise WhipError(413, "too_large", f"the body is over {limit} bytes")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise WhipError(400, "bad_sdp", "the body is not UTF-8 text") from None


class WhipEndpoint:
    """The ``/whip/`` routes and the live WHIP sessions of this node."""

    def __init__(
        self,
        *,
        settings: Settings,
        sites: SiteService,
        media: WhipMedia,
        presence: CameraPresence,
        ice: IceServers,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._settings = settings
        self._sites = sites
        self._media = media
        self._answer = _answer_function(media)
        self._presence = presence
        self._ice = ice
        self._clock = clock
        self._sessions: dict[str, WhipSession] = {}
        self._by_camera: dict[str, str] = {}
        self._watchdog: asyncio.Task[None] | None = None

    # -- lifecycle -----------------------------------------------------------------------------

    def setup(self, app: web.Application) -> None:
        router = app.router
        router.add_route("OPTIONS", "/whip/{camera_id}", self._options)
        router.add_route("POST", "/whip/{camera_id}", self._create)
        router.add_route("*", "/whip/{camera_id}", self._not_allowed)
        session = "/whip/{camera_id}/sessions/{session_id}"
        router.add_route("OPTIONS", session, self._options)
        router.add_route("PATCH", session, self._trickle)
        router.add_route("DELETE", session, self._delete)
        router.add_route("*", session, self._not_allowed)

    def start(self) -> None:
        if self._watchdog is None:
            self._watchdog = asyncio.create_task(self._watch(), name="whip-watchdog")

    async def aclose(self) -> None:
        """End every session (their peers close with the media engine). Idempotent."""
        task, self._watchdog = self._watchdog, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        for session_id in list(self._sessions):
            await self._end(session_id, "server shutdown")

    @property
    def sessions(self) -> list[WhipSession]:
        return list(self._sessions.values())

    async def close_camera(self, camera_id: str, reason: str) -> bool:
        """End the camera's session (token revoked, camera disabled or deleted)."""
        session_id = self._by_camera.get(camera_id)
        if session_id is None:
            return False
        await self._end(session_id, reason)
        return True

    async def close_token(self, token_id: str, reason: str) -> None:
        for session in list(self._sessions.values()):
            if session.token_id == token_id:
                await self._end(session.id, reason)

    # -- handlers ------------------------------------------------------------------------------

    async def _options(self, request: web.Request) -> web.StreamResponse:
        is_session = "session_id" in request.match_info
        headers = dict(_CORS)
        if is_session:
            headers["Allow"] = "OPTIONS, PATCH, DELETE"
            headers["Accept-Patch"] = SDPFRAG
        else:
            headers["Allow"] = "OPTIONS, POST"
            headers["Accept-Post"] = SDP
        return web.Response(status=204, headers=headers)

    async def _not_allowed(self, request: web.Request) -> web.StreamResponse:
        allow = "OPTIONS, PATCH, DELETE" if "session_id" in request.match_info else "OPTIONS, POST"
        raise WhipError(
            405,
            "method_not_allowed",
            f"{request.method} is not allowed on {request.path}",
            {"Allow": allow},
        )

    async def _delete(self, request: web.Request) -> web.StreamResponse:
        session = await self._session(request)
        await self._end(session.id, "ended by the encoder (DELETE)")
        return web.Response(status=200, headers=_CORS)

    # -- the work --------------------------------------------------------------------------------

    async def _camera(self, request: web.Request) -> tuple[Camera, str]:
        """The camera of the path, authorised by the request's bearer token."""
        header = request.headers.get("Authorization", "")
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise WhipError(
                401,
                "unauthorized",
                "send the camera's token as 'Authorization: Bearer <token>'",
                {"WWW-Authenticate": f'Bearer realm="{_REALM}"'},
            )
        try:
            camera, record = await self._sites.verify_token(token.strip())
        except CameraTokenError as exc:
            challenge = (
                f'Bearer realm="{_REALM}", error="invalid_token", error_description="{exc.message}"'
            )
            code = "token_expired" if exc.reason == "expired" else "unauthorized"
            raise WhipError(401, code, exc.message, {"WWW-Authenticate": challenge}) from None
        camera_id = request.match_info["camera_id"]
        if camera.id != camera_id:
            if await self._sites.get_camera(camera_id) is None:
                raise WhipError(404, "not_found", f"no camera {camera_id!r}")
            raise WhipError(403, "forbidden", "this token belongs to another camera")
        if camera.kind is not CameraKind.WHIP:
            raise WhipError(
                409,
                "wrong_kind",
                f"camera {camera_id!r} is a {camera.kind.value} camera, not a WHIP encoder",
            )
        return camera, record.id

    async def _create(self, request: web.Request) -> web.StreamResponse:
        camera, token_id = await self._camera(request)
        if _media_type(request) != SDP:
            raise WhipError(
                415,
                "unsupported_media_type",
                f"send the offer as {SDP}, not {_media_type(request) or 'nothing'}",
                {"Accept-Post": SDP},
            )
        offer = await _read_text(request, MAX_OFFER_BYTES)
        previous = self._by_camera.get(camera.id)
        if previous is not None:
            await self._end(previous, "replaced by a new session")
        session_id = secrets.token_hex(8)
        participant_id = f"whip-{camera.id}-{session_id[:6]}"
        try:
            answer = await self._answer(camera_room(camera.id), participant_id, offer)
        except ValueError as exc:
            raise WhipError(400, "bad_sdp", str(exc)) from None
        path = f"/whip/{camera.id}/sessions/{session_id}"
        session = WhipSession(
            id=session_id,
            camera_id=camera.id,
            site_id=camera.site_id,
            participant_id=participant_id,
            token_id=token_id,
            etag=f'"{secrets.token_hex(8)}"',
            ice_ufrag=_sdp_attribute(offer, "ice-ufrag"),
            ice_pwd=_sdp_attribute(offer, "ice-pwd"),
            mids=_mids(offer),
            created_at=self._clock(),
            first_kind=_first_kind(offer),
            path=path,
        )
        self._sessions[session_id] = session
        self._by_camera[camera.id] = session_id
        await self._presence.connected(camera.id, camera.site_id, "whip", participant_id)
        logger.info("WHIP session %s started", session_id, extra={"camera_id": camera.id})
        response = web.Response(status=201, body=answer.encode("utf-8"))
        response.headers.update(_CORS)
        response.headers["Content-Type"] = SDP
        response.headers["Location"] = f"{self._settings.base_url}{path}"
        response.headers["ETag"] = session.etag
        response.headers["Accept-Patch"] = SDPFRAG
        for link in ice_links(self._ice.for_subject(SubjectId.camera(camera.id))):
            response.headers.add("Link", link)
        return response

    async def _session(self, request: web.Request) -> WhipSession:
        camera, _ = await self._camera(request)
        session = self._sessions.get(request.match_info["session_id"])
        if session is None or session.camera_id != camera.id:
            raise WhipError(404, "not_found", "no such WHIP session (it may have ended)")
        return session

    async def _trickle(self, request: web.Request) -> web.StreamResponse:
        session = await self._session(request)
        if _media_type(request) != SDPFRAG:
            raise WhipError(
                415,
                "unsupported_media_type",
                f"send trickled candidates as {SDPFRAG}, not {_media_type(request) or 'nothing'}",
                {"Accept-Patch": SDPFRAG},
            )
        if_match = request.headers.get("If-Match")
        try:
            fragment = parse_sdpfrag(await _read_text(request, MAX_SDPFRAG_BYTES))
        except BadSdpFragment as exc:
            raise WhipError(400, exc.code.value, exc.message) from None
        if if_match is not None and if_match not in ("*", session.etag):
            raise WhipError(
                412, "precondition_failed", "If-Match does not match the session's ETag"
            )
        restart = (fragment.ufrag is not None and fragment.ufrag != session.ice_ufrag) or (
            fragment.pwd is not None and fragment.pwd != session.ice_pwd
        )
        if restart or if_match == "*":
            return await self._restart(session, fragment)
        await self._add_candidates(session, fragment)
        return web.Response(status=204, headers={**_CORS, "ETag": session.etag})

    async def _restart(self, session: WhipSession, fragment: SdpFragment) -> web.StreamResponse:
        """ICE restart (RFC 9725 section 4.3.2)."""
        if fragment.ufrag is None or fragment.pwd is None:
            raise WhipError(
                400, "bad_sdpfrag", "an ICE restart needs the new a=ice-ufrag and a=ice-pwd"
            )
        if (fragment.ufrag, fragment.pwd) == (session.ice_ufrag, session.ice_pwd):
            raise WhipError(
                400,
                "bad_sdpfrag",
                "an ICE restart needs a new a=ice-ufrag and a=ice-pwd, not the session's own",
            )
        if not (_UFRAG.fullmatch(fragment.ufrag) and _PWD.fullmatch(fragment.pwd)):
            raise WhipError(
                400,
                "bad_sdpfrag",
                "a=ice-ufrag must be 4-256 and a=ice-pwd 22-256 of A-Z a-z 0-9 + / (RFC 8839)",
            )
        try:
            local, candidates = await self._media.restart_ice(
                session.participant_id, IceCredentials(fragment.ufrag, fragment.pwd)
            )
        except LookupError:
            await self._end(session.id, "peer gone")
            raise WhipError(404, "not_found", "the WHIP session has ended") from None
        except IceNotRestartable as exc:
            raise WhipError(409, "ice_not_restartable", exc.message) from None
        session.ice_ufrag, session.ice_pwd = fragment.ufrag, fragment.pwd
        session.etag = f'"{secrets.token_hex(8)}"'
        await self._add_candidates(session, fragment)
        mid = session.mids[0] if session.mids else "0"
        lines = [
            f"a=ice-ufrag:{local.ufrag}",
            f"a=ice-pwd:{local.pwd}",
            f"m={session.first_kind} 9 UDP/TLS/RTP/SAVPF 0",
            f"a=mid:{mid}",
            *(f"a={candidate}" for candidate in candidates),
            "a=end-of-candidates",
        ]
        logger.info(
            "WHIP session %s: ICE restarted", session.id, extra={"camera_id": session.camera_id}
        )
        return web.Response(
            status=200,
            body=("\r\n".join(lines) + "\r\n").encode("utf-8"),
            headers={**_CORS, "ETag": session.etag, "Content-Type": SDPFRAG},
        )

    async def _add_candidates(self, session: WhipSession, fragment: SdpFragment) -> None:
        for candidate, mid in fragment.candidates:
            index = session.mids.index(mid) if mid in session.mids else None
            try:
                await self._media.add_candidate(
                    session.participant_id, candidate, mid if index is not None else None, index
                )
            except LookupError:
                await self._end(session.id, "peer gone")
                raise WhipError(404, "not_found", "the WHIP session has ended") from None
            except ValueError as exc:
                raise WhipError(400, "bad_candidate", str(exc)) from None
        if fragment.end_of_candidates:
            with contextlib.suppress(ValueError, LookupError):
                await self._media.add_candidate(session.participant_id, "", None, None)

    async def _end(self, session_id: str, reason: str) -> None:
        session = self._sessions.pop(session_id, None)
        if session is None:
            return
        if self._by_camera.get(session.camera_id) == session_id:
            del self._by_camera[session.camera_id]
        await self._media.close_peer(session.participant_id)
        await self._presence.disconnected(session.camera_id, session.participant_id)
        logger.info(
            "WHIP session %s ended: %s", session_id, reason, extra={"camera_id": session.camera_id}
        )

    async def _watch(self) -> None:
        """End sessions whose peer the media engine closed (ICE consent expired, DTLS closed)."""
        while True:
            await asyncio.sleep(WATCHDOG_S)
            for session in list(self._sessions.values()):
                try:
                    self._media.remote_tracks(session.participant_id)
                except LookupError:
                    await self._end(session.id, "the encoder stopped sending")
                except Exception:
                    logger.exception("WHIP watchdog failed for session %s", session.id)
