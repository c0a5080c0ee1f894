"""Which bus topic carries what, and which of a topic's events each socket is sent.

Topics: ``lobby`` (the agent queue, for staff who can take calls) and ``room:<room id>`` (one
per room: chat, participants, case or site changes, staff-only events such as the model's
live assessment). An event may be marked for one audience (staff, or staff and one camera's
page); the mark never reaches a client. Chat and participant events are sent to a socket once
each, however it received them (its join's history, the live topic, a resync). A ``case``
event reaches a customer without the holder's user id."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ._connection import Connection
from .ids import RoomId
from .outbound import ServerMessageType

__all__ = ["LOBBY", "REVOKED", "deliver", "for_staff", "for_staff_and_camera", "room_topic"]

LOBBY = "lobby"
#: Subjects whose sockets every node closes (``Hub.revoke_subject``).
REVOKED = "subjects:revoked"
#: Bus events carrying this key go only to that audience; the keys are not sent on.
_AUDIENCE = "_audience"
_CAMERA = "_camera"
_STAFF = "staff"


def room_topic(room: RoomId) -> str:
    return f"room:{room}"


def for_staff(event: Mapping[str, Any]) -> dict[str, Any]:
    """``event``, marked to reach only the staff of the room it is published to."""
    return {**event, _AUDIENCE: _STAFF}


def for_staff_and_camera(event: Mapping[str, Any], camera_id: str) -> dict[str, Any]:
    """``event``, marked to reach the staff of a site's room and that one camera's page."""
    return {**event, _AUDIENCE: _STAFF, _CAMERA: camera_id}


def _audience_allows(conn: Connection, event: Mapping[str, Any]) -> bool:
    identity = conn.identity
    if identity is None:
        return False
    if event[_AUDIENCE] != _STAFF or identity.is_staff:
        return True
    camera_id = event.get(_CAMERA)
    return camera_id is not None and identity.camera_id == camera_id


def deliver(conn: Connection, topic: str, event: Mapping[str, Any]) -> None:
    """Send ``conn`` an event of ``topic`` unless it is not for this socket or already sent."""
    if _AUDIENCE in event:
        if not _audience_allows(conn, event):
            return
        event = {key: value for key, value in event.items() if key not in (_AUDIENCE, _CAMERA)}
    kind = event.get("type")
    if kind == ServerMessageType.CHAT:
        seq = int(event["seq"])
        if seq in conn.sent_seqs:
            return
        conn.sent_seqs.add(seq)
    elif kind == ServerMessageType.PARTICIPANT:
        participant = event.get("participant", {})
        participant_id = participant.get("participant_id")
        if participant_id == conn.participant_id:
            return
        if event.get("event") == "left":
            conn.known.discard(str(participant_id))
        else:
            conn.known.add(str(participant_id))
    elif kind == ServerMessageType.QUEUE and topic != LOBBY:
        return
    elif kind == ServerMessageType.CASE and not (conn.identity and conn.identity.is_staff):
        case = event.get("case")
        if isinstance(case, Mapping) and "agent_id" in case:
            event = {**event, "case": {k: v for k, v in case.items() if k != "agent_id"}}
    conn.send(dict(event))
