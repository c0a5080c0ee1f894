"""Which bus topic carries what, and which of a topic's events each socket is sent.

Topics: ``lobby`` (the agent queue, for staff who can take calls) and ``room:<room id>`` (one
per room: chat, participants, case or site changes, staff-only events such as the model's
live assessment). An event may be marked for one audience (staff); the mark never reaches a
client. Chat and participant events are sent to a socket once each, however it received them
(its join's history, the live topic, a resync)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ._connection import Connection
from .ids import RoomId
from .outbound import ServerMessageType

__all__ = ["LOBBY", "deliver", "for_staff", "room_topic"]

LOBBY = "lobby"
#: Bus events carrying this key go only to that audience; the key is not sent on.
_AUDIENCE = "_audience"
_STAFF = "staff"


def room_topic(room: RoomId) -> str:
    return f"room:{room}"


def for_staff(event: Mapping[str, Any]) -> dict[str, Any]:
    """``event``, marked to reach only the staff of the room it is published to."""
    return {**event, _AUDIENCE: _STAFF}


def deliver(conn: Connection, topic: str, event: Mapping[str, Any]) -> None:
    """Send ``conn`` an event of ``topic`` unless it is not for this socket or already sent."""
    if _AUDIENCE in event:
        if event[_AUDIENCE] == _STAFF and (conn.identity is None or not conn.identity.is_staff):
            return
        event = {key: value for key, value in event.items() if key != _AUDIENCE}
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
    conn.send(dict(event))
