"""The ``/ws`` wire protocol: every message is a JSON object with a ``type``.

Client to server (validated here; anything else is answered with an ``error``):

``join``       first message; ``token`` (customer join token), ``camera_token`` (a site's
               camera page) or none (staff, via session cookie); ``case_id`` (staff joining a
               case's call), ``site_id`` (staff watching a site's cameras), ``resume_from`` (last
               chat sequence number the client saw, to replay what it missed)
``offer``      SDP offer for the participant's server-side peer (client always offers); staff in
               a site room name the ``camera_id`` the offer is for (one peer per camera)
``candidate``  trickled ICE candidate for that peer (``camera_id`` as for the offer)
``unwatch``    staff in a site room: close the peer for one ``camera_id``
``chat``       ``client_id`` (idempotency key chosen by the client) and ``text``
``accept``     staff: take a waiting case from the queue (atomic; one agent wins)
``leave``      leave the call (the socket stays open for staff, e.g. back to the queue)
``ping``       keep-alive; answered with ``pong``

The inspection tools of a case's call (``docs/protocol.md``, "Inspection"):

``markup``          staff: ``add`` a :class:`Stroke` to the frozen frame ``frame_id``, ``undo``
                    one (``stroke_id``) or ``clear`` them all
``point``           a tap at ``x``, ``y`` (0..1 of the picture): on the frozen frame
                    ``frame_id``, or (no ``frame_id``) on the live video
``photo_request``   staff: ask the customer's phone for a full-resolution photo
``camera_control``  staff: ``facing``, ``torch``, ``zoom`` or ``focus`` of the customer's camera
``camera_state``    customer: what the camera can do and has, and the result of a control
``video_mode``      staff: ``audio`` (audio plus photos: the phone stops sending video) or back
                    to ``video``

Server to client (each built by its function in :mod:`signaling.outbound`):

``joined``, ``chat_page`` (older chat after ``joined``), ``answer``, ``renegotiate`` (the
server has tracks for the client: send a new offer with enough receiving transceivers),
``participant`` (joined/left), ``tracks`` (remote tracks of the room), ``chat`` (with server
``seq``), ``queue`` (waiting cases, for staff), ``accepted``, ``case`` (state changes),
``pong``, ``error`` (``code``, ``message``, ``ref`` = the type of the message that failed).
"""

from __future__ import annotations

import json
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError, model_validator

from .errors import ProtocolError, SignalingErrorCode

__all__ = [
    "MAX_STROKES",
    "AcceptMessage",
    "CameraControlMessage",
    "CameraStateMessage",
    "CandidateMessage",
    "ChatMessage",
    "ClientMessage",
    "JoinMessage",
    "LeaveMessage",
    "MarkupMessage",
    "OfferMessage",
    "PhotoRequestMessage",
    "PingMessage",
    "PointMessage",
    "Role",
    "Stroke",
    "UnwatchMessage",
    "VideoModeMessage",
    "parse_client_message",
]

MAX_CHAT_CHARS = 4000
MAX_SDP_CHARS = 48 * 1024


class Role(StrEnum):
    CUSTOMER = "customer"
    AGENT = "agent"
    REVIEWER = "reviewer"
    ADMIN = "admin"
    #: A site's camera (a staff phone on ``/camera/<token>``): publishes into the site's room.
    CAMERA = "camera"


class _Message(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, str_strip_whitespace=False)


_ID = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.:-]+$")]


class JoinMessage(_Message):
    type: Literal["join"]
    token: Annotated[str, Field(min_length=1, max_length=2048)] | None = None
    camera_token: Annotated[str, Field(min_length=1, max_length=256)] | None = None
    case_id: Annotated[str, Field(min_length=1, max_length=64)] | None = None
    site_id: _ID | None = None
    resume_from: Annotated[int, Field(ge=0)] = 0
    name: Annotated[str, Field(max_length=120)] | None = None


class OfferMessage(_Message):
    type: Literal["offer"]
    sdp: Annotated[str, Field(min_length=1, max_length=MAX_SDP_CHARS)]
    #: Staff in a site room: which camera this peer watches.
    camera_id: _ID | None = None


class CandidateMessage(_Message):
    type: Literal["candidate"]
    #: ``candidate:...`` line as the browser gives it; empty string = end of candidates.
    candidate: Annotated[str, Field(max_length=1024)]
    sdpMid: Annotated[str, Field(max_length=64)] | None = None  # noqa: N815 - W3C field name
    sdpMLineIndex: Annotated[int, Field(ge=0, le=255)] | None = None  # noqa: N815
    camera_id: _ID | None = None


class ChatMessage(_Message):
    type: Literal["chat"]
    client_id: Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.:-]+$")]
    text: Annotated[str, Field(min_length=1, max_length=MAX_CHAT_CHARS)]
    #: The language the message is written in (BCP 47, e.g. ``de``, ``zh-Hant``), shown with it.
    lang: Annotated[str, Field(pattern=r"^[A-Za-z]{2,3}(-[A-Za-z0-9]{2,8}){0,2}$")] | None = None


class AcceptMessage(_Message):
    type: Literal["accept"]
    case_id: Annotated[str, Field(min_length=1, max_length=64)]


class LeaveMessage(_Message):
    type: Literal["leave"]


class UnwatchMessage(_Message):
    type: Literal["unwatch"]
    camera_id: _ID


class PingMessage(_Message):
    type: Literal["ping"]
    nonce: Annotated[str, Field(max_length=64)] | None = None


# -- the inspection tools ------------------------------------------------------------------------

#: Strokes one frozen frame may carry.
MAX_STROKES = 500
#: A position on the picture, as a share of its width or height (0 = left / top edge).
Unit = Annotated[float, Field(ge=0.0, le=1.0, allow_inf_nan=False)]
#: Points each tool takes (least, most), and how its errors say so.
_POINTS: dict[str, tuple[int, int, str]] = {
    "arrow": (2, 2, "an arrow takes exactly 2 points: its tail, then its head"),
    "circle": (2, 2, "a circle takes exactly 2 points: opposite corners of its box"),
    "freehand": (2, 2000, "a freehand line takes 2 to 2000 points"),
    "text": (1, 1, "a text takes exactly 1 point: the top-left corner of the text"),
    "marker": (1, 1, "a marker takes exactly 1 point: its centre"),
}


class Stroke(_Message):
    """One mark on a frozen frame. Its points are normalised to the frame (x and y in 0..1 from
    the top-left corner), so it lands on the same spot on every screen and orientation."""

    id: _ID
    tool: Literal["arrow", "circle", "freehand", "text", "marker"]
    color: Annotated[str, Field(pattern=r"^#[0-9a-fA-F]{6}$")]
    points: list[tuple[Unit, Unit]]
    text: Annotated[str, Field(max_length=200)] | None = None
    number: Annotated[int, Field(ge=1, le=99)] | None = None
    by: Literal["agent", "customer"] = "agent"

    @model_validator(mode="after")
    def _shape(self) -> Stroke:
        least, most, says = _POINTS[self.tool]
        if not least <= len(self.points) <= most:
            raise ValueError(f"{says} (this one has {len(self.points)})")
        if self.tool == "text" and not (self.text and self.text.strip()):
            raise ValueError("a text needs its text: type something to place")
        if self.tool == "marker" and self.number is None:
            raise ValueError("a marker needs its number (1 to 99)")
        return self


class MarkupMessage(_Message):
    type: Literal["markup"]
    frame_id: _ID
    op: Literal["add", "undo", "clear"]
    stroke: Stroke | None = None
    #: ``undo``: the stroke taken back (the newest when absent).
    stroke_id: _ID | None = None

    @model_validator(mode="after")
    def _needs(self) -> MarkupMessage:
        if self.op == "add" and self.stroke is None:
            raise ValueError("'add' needs the stroke")
        if self.op != "add" and self.stroke is not None:
            raise ValueError(f"'{self.op}' takes no stroke")
        return self


class PointMessage(_Message):
    type: Literal["point"]
    x: Unit
    y: Unit
    #: The frozen frame the tap was on; absent for a tap on the live video.
    frame_id: _ID | None = None


class PhotoRequestMessage(_Message):
    type: Literal["photo_request"]
    request_id: _ID
    #: What to photograph, shown to the customer ("the label on the back").
    note: Annotated[str, Field(max_length=200)] = ""


class CameraControlMessage(_Message):
    type: Literal["camera_control"]
    control: Literal["facing", "torch", "zoom", "focus"]
    #: facing: "user" | "environment"; torch: bool; zoom: the zoom factor; focus: "continuous"
    #: | "manual" | "single-shot" or a focus distance.
    value: bool | float | Annotated[str, Field(max_length=32)]


class CameraStateMessage(_Message):
    type: Literal["camera_state"]
    #: Which controls the phone's camera has (``getCapabilities()`` of the live track), in the
    #: page's own words: {"torch": true, "zoom": {"min": 1, "max": 8, "step": 0.1}, ...}.
    capabilities: dict[str, Any]
    settings: dict[str, Any] = {}
    #: The outcome of the control the agent asked for, if this answers one.
    result: dict[str, Any] | None = None


class VideoModeMessage(_Message):
    type: Literal["video_mode"]
    mode: Literal["video", "audio"]
    #: Who chose: the agent, or the console's automatic switch on a falling bitrate.
    reason: Literal["agent", "auto"] = "agent"
    #: What the console measured when it switched (received kbit/s and frames per second).
    bitrate_kbps: Annotated[float, Field(ge=0, le=1e6)] | None = None
    fps: Annotated[float, Field(ge=0, le=240)] | None = None


ClientMessage = Annotated[
    JoinMessage
    | OfferMessage
    | CandidateMessage
    | ChatMessage
    | AcceptMessage
    | LeaveMessage
    | UnwatchMessage
    | PingMessage
    | MarkupMessage
    | PointMessage
    | PhotoRequestMessage
    | CameraControlMessage
    | CameraStateMessage
    | VideoModeMessage,
    Field(discriminator="type"),
]

_ADAPTER: TypeAdapter[ClientMessage] = TypeAdapter(ClientMessage)
_TYPES = frozenset(
    {
        "join", "offer", "candidate", "chat", "accept", "leave", "unwatch", "ping",
        "markup", "point", "photo_request", "camera_control", "camera_state", "video_mode",
    }
)  # fmt: skip


def parse_client_message(raw: str | bytes, *, max_bytes: int) -> ClientMessage:
    """Parse and validate one client message, or raise :class:`ProtocolError` saying why."""
    size = len(raw.encode() if isinstance(raw, str) else raw)
    if size > max_bytes:
        raise ProtocolError(
            SignalingErrorCode.TOO_LARGE, f"message of {size} bytes exceeds {max_bytes} bytes"
        )
    try:
        document: Any = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ProtocolError(SignalingErrorCode.MALFORMED, f"not valid JSON: {exc}") from exc
    if not isinstance(document, dict):
        raise ProtocolError(SignalingErrorCode.MALFORMED, "a message is a JSON object")
    kind = document.get("type")
    if not isinstance(kind, str):
        raise ProtocolError(SignalingErrorCode.MALFORMED, "a message needs a string 'type'")
    if kind not in _TYPES:
        raise ProtocolError(
            SignalingErrorCode.UNKNOWN_TYPE, f"unknown message type {kind[:40]!r}", ref=kind[:40]
        )
    try:
        return _ADAPTER.validate_python(document)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc'][1:]) or 'message'}: {err['msg']}"
            for err in exc.errors()[:5]
        )
        raise ProtocolError(SignalingErrorCode.INVALID, problems, ref=kind) from exc
