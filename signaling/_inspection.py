"""The inspection tools of a case's call: marks on a frozen frame, taps that point at a spot,
photo requests, the customer's camera as the agent drives it, and the switch to audio plus
photos.

The server freezes a frame (``server``: it takes the frame it received at full resolution, files
it, and publishes ``frozen`` into the room); from then on the strokes go from the agent's socket
to the room's topic and on to the customer's page, without a database write in between: a stroke
reaches the customer within a frame time. What each node knows of a room's frozen frame and its
strokes it learns from the room's topic (:meth:`Inspection.observe`), so a stroke for a frame that
was unfrozen meanwhile is refused on whichever node the agent's socket is, and a customer whose
page reconnects is shown the frozen frame with its strokes again. Every tool used is also kept in
the case's timeline (:meth:`CaseDirectory.record_action`), written beside the relay.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from aioutil import OwnedTasks

from . import outbound
from ._audience import for_staff, room_topic
from ._connection import Connection
from .bus import Bus
from .errors import SignalingError, SignalingErrorCode
from .ids import RoomId
from .messages import (
    MAX_STROKES,
    CameraControlMessage,
    CameraStateMessage,
    MarkupMessage,
    PhotoRequestMessage,
    PointMessage,
    VideoModeMessage,
)
from .outbound import ServerMessageType
from .ports import CaseDirectory

__all__ = ["Inspection"]

logger = logging.getLogger(__name__)


@dataclass(slots=True)
class _Frozen:
    """A room's frozen frame as this node has seen it on the room's topic."""

    frame_id: str
    message: dict[str, Any]
    #: The strokes on it by id, in the order they were drawn.
    strokes: dict[str, dict[str, Any]] = field(default_factory=dict)


def _by(conn: Connection) -> dict[str, Any]:
    assert conn.identity is not None
    return {
        "participant_id": conn.participant_id,
        "role": conn.identity.role.value,
        "name": conn.identity.name,
    }


class Inspection:
    """The inspection messages of the sockets of one node."""

    def __init__(self, *, bus: Bus, cases: CaseDirectory, tasks: OwnedTasks) -> None:
        self._bus = bus
        self._cases = cases
        self._tasks = tasks
        self._frozen: dict[RoomId, _Frozen] = {}

    # -- what the room's topic says --------------------------------------------------------------

    def observe(self, room: RoomId, event: Mapping[str, Any]) -> None:
        """Follow a room's frozen frame and its strokes from the events on its topic (called
        once per socket that receives them: each change applies once)."""
        kind = event.get("type")
        if kind == ServerMessageType.FROZEN:
            frame_id = str(event.get("frame_id"))
            current = self._frozen.get(room)
            if current is None or current.frame_id != frame_id:
                message = {k: v for k, v in event.items() if not k.startswith("_")}
                self._frozen[room] = _Frozen(frame_id, message)
        elif kind == ServerMessageType.UNFROZEN:
            current = self._frozen.get(room)
            if current is not None and current.frame_id == event.get("frame_id"):
                del self._frozen[room]
        elif kind == ServerMessageType.MARKUP:
            current = self._frozen.get(room)
            if current is None or current.frame_id != event.get("frame_id"):
                return
            op = event.get("op")
            if op == "add" and isinstance(event.get("stroke"), Mapping):
                stroke = {**event["stroke"], "_by": event.get("by") or {}}
                current.strokes.setdefault(str(stroke.get("id")), stroke)
            elif op == "undo":
                current.strokes.pop(str(event.get("stroke_id")), None)
            elif op == "clear":
                current.strokes.clear()

    def forget(self, room: RoomId) -> None:
        """The room is finished (its case closed)."""
        self._frozen.pop(room, None)

    def replay(self, conn: Connection) -> None:
        """A socket that (re)joined a room with a frozen frame is shown it, with its strokes."""
        if conn.room is None:
            return
        current = self._frozen.get(conn.room)
        if current is None:
            return
        conn.send(current.message)
        for stroke in current.strokes.values():
            conn.send(
                outbound.inspection(
                    ServerMessageType.MARKUP,
                    stroke.get("_by", {}),
                    frame_id=current.frame_id,
                    op="add",
                    stroke={k: v for k, v in stroke.items() if k != "_by"},
                    stroke_id=stroke.get("id"),
                )
            )

    # -- the tools ---------------------------------------------------------------------------------

    async def markup(self, conn: Connection, message: MarkupMessage) -> None:
        room, case_id = self._case_room(conn, message.type, staff=True)
        current = self._frozen_frame(room, message.frame_id, message.type)
        stroke_id = message.stroke_id
        stroke: dict[str, Any] | None = None
        if message.op == "add":
            assert message.stroke is not None
            if len(current.strokes) >= MAX_STROKES:
                raise SignalingError(
                    SignalingErrorCode.TOO_LARGE,
                    f"a frozen frame holds at most {MAX_STROKES} strokes: clear some first",
                    ref=message.type,
                )
            if message.stroke.id in current.strokes:
                raise SignalingError(
                    SignalingErrorCode.INVALID,
                    f"stroke {message.stroke.id!r} is already on the frame",
                    ref=message.type,
                )
            stroke = {**message.stroke.model_dump(), "by": "agent"}
            stroke_id = message.stroke.id
        elif message.op == "undo":
            if stroke_id is None:
                agents = [sid for sid, s in current.strokes.items() if s.get("by") == "agent"]
                stroke_id = agents[-1] if agents else None
            if stroke_id is None or stroke_id not in current.strokes:
                raise SignalingError(
                    SignalingErrorCode.NOT_FOUND, "there is no such stroke to undo", ref="markup"
                )
        event = outbound.inspection(
            ServerMessageType.MARKUP,
            _by(conn),
            frame_id=message.frame_id,
            op=message.op,
            stroke=stroke,
            stroke_id=stroke_id,
        )
        await self._bus.publish(room_topic(room), event)
        data: dict[str, Any] = {"frame_id": message.frame_id, "op": message.op}
        if stroke is not None:
            data.update(
                stroke_id=stroke_id,
                tool=stroke["tool"],
                color=stroke["color"],
                points=len(stroke["points"]),
            )
            if stroke.get("text"):
                data["text"] = stroke["text"]
            if stroke.get("number") is not None:
                data["number"] = stroke["number"]
        elif stroke_id is not None:
            data["stroke_id"] = stroke_id
        self._record(conn, case_id, "inspection.markup", data)

    async def point(self, conn: Connection, message: PointMessage) -> None:
        room, case_id = self._case_room(conn, message.type, staff=False)
        if message.frame_id is not None:
            self._frozen_frame(room, message.frame_id, message.type)
        event = outbound.inspection(
            ServerMessageType.POINT,
            _by(conn),
            x=message.x,
            y=message.y,
            frame_id=message.frame_id,
        )
        await self._bus.publish(room_topic(room), event)
        data = {"x": round(message.x, 4), "y": round(message.y, 4), "frame_id": message.frame_id}
        self._record(conn, case_id, "inspection.point", data)

    async def photo_request(self, conn: Connection, message: PhotoRequestMessage) -> None:
        await self._relay(conn, message, ServerMessageType.PHOTO_REQUEST, ("request_id", "note"))

    async def camera_control(self, conn: Connection, message: CameraControlMessage) -> None:
        await self._relay(conn, message, ServerMessageType.CAMERA_CONTROL, ("control", "value"))

    async def camera_state(self, conn: Connection, message: CameraStateMessage) -> None:
        room, case_id = self._case_room(conn, message.type, staff=False)
        assert conn.identity is not None
        if conn.identity.is_staff:
            raise SignalingError(
                SignalingErrorCode.FORBIDDEN,
                "only the customer's page says what its camera can do",
                ref=message.type,
            )
        event = outbound.inspection(
            ServerMessageType.CAMERA_STATE,
            _by(conn),
            capabilities=message.capabilities,
            settings=message.settings,
            result=message.result,
        )
        await self._bus.publish(room_topic(room), for_staff(event))
        if message.result is not None:
            # What the phone did with a control (or why it could not): kept with the case.
            self._record(conn, case_id, "inspection.camera_result", dict(message.result))

    async def video_mode(self, conn: Connection, message: VideoModeMessage) -> None:
        fields = ("mode", "reason", "bitrate_kbps", "fps")
        await self._relay(conn, message, ServerMessageType.VIDEO_MODE, fields)

    async def _relay(
        self,
        conn: Connection,
        message: PhotoRequestMessage | CameraControlMessage | VideoModeMessage,
        kind: ServerMessageType,
        fields: tuple[str, ...],
    ) -> None:
        """An agent's tool that the room hears of as it was sent (and the timeline keeps)."""
        room, case_id = self._case_room(conn, message.type, staff=True)
        data = {name: getattr(message, name) for name in fields}
        await self._bus.publish(room_topic(room), outbound.inspection(kind, _by(conn), **data))
        self._record(conn, case_id, f"inspection.{message.type}", data)

    # -- helpers -----------------------------------------------------------------------------------

    def _case_room(self, conn: Connection, ref: str, *, staff: bool) -> tuple[RoomId, str]:
        """The case room ``conn`` is in, if it may use a tool there (``staff``: the agent's
        tools, for staff who take calls)."""
        room = conn.room
        case_id = room.case_id if room is not None else None
        if room is None or case_id is None:
            raise SignalingError(
                SignalingErrorCode.NOT_IN_CALL,
                "the inspection tools work in a case's call",
                ref=ref,
            )
        assert conn.identity is not None
        if staff and not conn.identity.can_take_calls:
            raise SignalingError(
                SignalingErrorCode.FORBIDDEN, "only the agent in the call uses this tool", ref=ref
            )
        return room, case_id

    def _frozen_frame(self, room: RoomId, frame_id: str, ref: str) -> _Frozen:
        current = self._frozen.get(room)
        if current is None or current.frame_id != frame_id:
            raise SignalingError(
                SignalingErrorCode.NOT_FOUND,
                f"frame {frame_id!r} is not frozen any more: freeze the picture again",
                ref=ref,
            )
        return current

    def _record(self, conn: Connection, case_id: str, action: str, data: dict[str, Any]) -> None:
        assert conn.identity is not None
        actor = conn.identity.audit_actor
        self._tasks.spawn(
            self._write(case_id, action, actor, data), name=f"inspection-record-{case_id}"
        )

    async def _write(self, case_id: str, action: str, actor: str, data: dict[str, Any]) -> None:
        try:
            await self._cases.record_action(case_id, action, actor=actor, data=data)
        except Exception:
            logger.exception(
                "could not keep %s in the timeline", action, extra={"case_id": case_id}
            )
