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

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

from .errors import ProtocolError, SignalingErrorCode

__all__ = [
    "AcceptMessage",
    "CandidateMessage",
    "ChatMessage",
    "ClientMessage",
    "JoinMessage",
    "LeaveMessage",
    "OfferMessage",
    "PingMessage",
    "Role",
    "UnwatchMessage",
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


ClientMessage = Annotated[
    JoinMessage
    | OfferMessage
    | CandidateMessage
    | ChatMessage
    | AcceptMessage
    | LeaveMessage
    | UnwatchMessage
    | PingMessage,
    Field(discriminator="type"),
]

_ADAPTER: TypeAdapter[ClientMessage] = TypeAdapter(ClientMessage)
_TYPES = frozenset({"join", "offer", "candidate", "chat", "accept", "leave", "unwatch", "ping"})


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
