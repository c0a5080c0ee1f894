"""Server-to-client messages of ``/ws``: one builder per message type.

Every message a socket is sent is made here (``docs/protocol.md`` describes each one), so the
wire format of a message lives in one function; the Hub never writes a message dict by hand.
Builders return plain JSON-ready dicts: they are queued per socket and published on the bus as
they are. ``server`` may use them for what it publishes into rooms (``site``, ``camera``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from enum import StrEnum
from typing import Any

from .bus.base import ChatRecord, QueueEntry
from .errors import SignalingErrorCode
from .messages import Role
from .ports import CaseSummary, SiteSummary

__all__ = [
    "ServerMessageType",
    "accepted",
    "answer",
    "call_details",
    "camera_page_details",
    "camera_status",
    "caption",
    "captions",
    "case",
    "chat",
    "chat_page",
    "error",
    "frozen",
    "inspection",
    "joined",
    "participant_info",
    "participant_joined",
    "participant_left",
    "pong",
    "queue",
    "renegotiate",
    "site",
    "site_details",
    "unfrozen",
]

Message = dict[str, Any]


class ServerMessageType(StrEnum):
    JOINED = "joined"
    ANSWER = "answer"
    RENEGOTIATE = "renegotiate"
    PARTICIPANT = "participant"
    CAMERA = "camera"
    SITE = "site"
    CHAT = "chat"
    CHAT_PAGE = "chat_page"
    QUEUE = "queue"
    ACCEPTED = "accepted"
    CASE = "case"
    PONG = "pong"
    ERROR = "error"
    # The inspection tools of a case's call (docs/protocol.md, "Inspection").
    FROZEN = "frozen"
    UNFROZEN = "unfrozen"
    MARKUP = "markup"
    POINT = "point"
    PHOTO_REQUEST = "photo_request"
    PHOTO = "photo"
    CAMERA_CONTROL = "camera_control"
    CAMERA_STATE = "camera_state"
    VIDEO_MODE = "video_mode"
    CAPTION = "caption"
    CAPTIONS = "captions"


def error(code: SignalingErrorCode, message: str, ref: str | None = None) -> Message:
    """A refused message (``ref``: the type of the message that failed, if known), or news
    that ends the connection (``replaced``, ``media_lost``, ``unauthorized``: ``ref`` None)."""
    return {
        "type": ServerMessageType.ERROR.value,
        "code": code.value,
        "message": message,
        "ref": ref,
    }


def pong(nonce: str | None) -> Message:
    return {"type": ServerMessageType.PONG.value, "nonce": nonce}


def participant_info(
    participant_id: str,
    role: Role,
    name: str,
    camera_id: str | None = None,
    *,
    name_source: str | None = None,
) -> Message:
    """How one participant is shown to the others (``joined``, ``participant``, chat
    senders, and the room's presence list). ``name_source`` (customers): ``customer`` when the
    customer typed the name, ``case`` when it is the name the case was opened with."""
    info: Message = {"participant_id": participant_id, "role": role.value, "name": name}
    if camera_id is not None:
        info["camera_id"] = camera_id
    if name_source is not None:
        info["name_source"] = name_source
    return info


def call_details(*, grading: bool, preroll_s: float | None) -> Message:
    """What staff entering a case's call are told besides the room (``joined``)."""
    return {"grading": grading, "preroll_s": preroll_s}


def site_details(summary: SiteSummary, *, preroll_s: float | None) -> Message:
    """What staff entering a site's room are told: the site and its cameras."""
    return {"site": summary.to_json(), "preroll_s": preroll_s}


def camera_page_details(summary: SiteSummary, camera: Mapping[str, Any]) -> Message:
    """What a camera page is told when it joins: its site (without the other cameras) and its
    own camera."""
    return {"site": {"site_id": summary.site_id, "name": summary.name}, "camera": dict(camera)}


def joined(
    participant: Mapping[str, Any],
    *,
    case: CaseSummary | None,
    ice_servers: Sequence[Mapping[str, Any]],
    chat: Sequence[ChatRecord] = (),
    chat_more: bool = False,
    last_seq: int = 0,
    participants: Sequence[Mapping[str, Any]] = (),
    details: Mapping[str, Any] | None = None,
    staff: bool = True,
) -> Message:
    """The answer to ``join``: who the socket is (``participant_info``), its case (``None``
    in the staff lobby and in site rooms; without the holder's id unless ``staff``), the newest
    page of the chat after ``resume_from`` (``chat_more``: older pages follow as
    ``chat_page``), who else is there, and the room's ``details`` (``call_details``,
    ``site_details`` or ``camera_page_details``)."""
    return {
        "type": ServerMessageType.JOINED.value,
        **participant,
        "case": case.to_json(staff=staff) if case is not None else None,
        "ice_servers": list(ice_servers),
        "chat": [record.to_json() for record in chat],
        "chat_more": chat_more,
        "last_seq": last_seq,
        "participants": list(participants),
        **(details or {}),
    }


def answer(sdp: str, camera_id: str | None = None) -> Message:
    """The server peer's SDP answer (``camera_id``: the camera the offer named)."""
    message: Message = {"type": ServerMessageType.ANSWER.value, "sdp": sdp}
    if camera_id is not None:
        message["camera_id"] = camera_id
    return message


def renegotiate(tracks: Mapping[str, int] | None, camera_id: str | None = None) -> Message:
    """The server has this many tracks of each kind for the client's peer: offer again."""
    message: Message = {"type": ServerMessageType.RENEGOTIATE.value, "tracks": dict(tracks or {})}
    if camera_id is not None:
        message["camera_id"] = camera_id
    return message


def participant_joined(participant: Mapping[str, Any]) -> Message:
    return {
        "type": ServerMessageType.PARTICIPANT.value,
        "event": "joined",
        "participant": participant,
    }


def participant_left(participant: Mapping[str, Any]) -> Message:
    return {
        "type": ServerMessageType.PARTICIPANT.value,
        "event": "left",
        "participant": participant,
    }


def chat(record: ChatRecord) -> Message:
    """A chat message with its server ``seq`` (the record keeps the format: the bus publishes
    it as it stores it)."""
    return record.to_json()


def chat_page(records: Sequence[ChatRecord], *, more: bool) -> Message:
    """One page of the chat replayed after ``joined`` (oldest pages first; ``more``: another
    page follows; the last one has ``more`` false)."""
    return {
        "type": ServerMessageType.CHAT_PAGE.value,
        "chat": [record.to_json() for record in records],
        "more": more,
    }


def queue(entries: Iterable[QueueEntry]) -> Message:
    """The waiting cases, in the order given (the bus: longest wait first)."""
    return {
        "type": ServerMessageType.QUEUE.value,
        "cases": [
            {**entry.summary, "case_id": entry.case_id, "waiting_since": entry.waiting_since}
            for entry in entries
        ],
    }


def accepted(summary: CaseSummary) -> Message:
    """This agent won the case; a ``joined`` for its room follows."""
    return {"type": ServerMessageType.ACCEPTED.value, "case": summary.to_json()}


def case(summary: CaseSummary, *, staff: bool = True) -> Message:
    """The case as it is now (after a state change, or a resync); without the holder's id
    unless ``staff``."""
    return {"type": ServerMessageType.CASE.value, "case": summary.to_json(staff=staff)}


def site(summary: SiteSummary | None) -> Message:
    """The site as it is now; ``None`` once it was deleted."""
    return {
        "type": ServerMessageType.SITE.value,
        "site": summary.to_json() if summary is not None else None,
    }


def camera_status(camera_id: str, status: Mapping[str, Any]) -> Message:
    """A camera of a site connected, left, or changed what it sends."""
    return {"type": ServerMessageType.CAMERA.value, "camera_id": camera_id, "status": status}


# -- the inspection tools -------------------------------------------------------------------------


def frozen(
    frame_id: str, *, width: int, height: int, item_id: str, by: Mapping[str, Any]
) -> Message:
    """The agent froze the customer's picture: both pages show the frame ``frame_id`` (the
    server's full-resolution copy, filed as evidence item ``item_id``) until ``unfrozen``."""
    return {
        "type": ServerMessageType.FROZEN.value,
        "frame_id": frame_id,
        "width": width,
        "height": height,
        "item_id": item_id,
        "by": dict(by),
    }


def unfrozen(frame_id: str, *, item_id: str | None) -> Message:
    """Back to live video; ``item_id``: the marked-up frame filed as evidence, if it had marks."""
    return {"type": ServerMessageType.UNFROZEN.value, "frame_id": frame_id, "item_id": item_id}


def inspection(kind: ServerMessageType, by: Mapping[str, Any], **fields: Any) -> Message:
    """A tool used in the call (``markup``, ``point``, ``photo_request``, ``camera_control``,
    ``camera_state``, ``video_mode``, ``photo``), sent on to the room with who used it
    (``by``: participant id, role and name) and the message's own fields."""
    return {"type": kind.value, **fields, "by": dict(by)}


def caption(segment: Mapping[str, Any]) -> Message:
    """One captioned segment of someone's speech, for the whole room: who spoke, the language,
    the words, their English translation (``None`` for English speech) and the milliseconds
    from the end of the speech to the caption."""
    fields = ("segment_id", "participant_id", "role", "name", "language", "text", "translation",
              "started_at", "ended_at", "latency_ms")  # fmt: skip
    message: Message = {"type": ServerMessageType.CAPTION.value}
    message.update({key: segment.get(key) for key in fields})
    return message


def captions(enabled: bool, *, by: Mapping[str, Any] | None = None) -> Message:
    """Captions were switched on or off for the case (both pages show it)."""
    return {
        "type": ServerMessageType.CAPTIONS.value,
        "enabled": enabled,
        "by": dict(by) if by is not None else None,
    }
