"""Who may send which ``/ws`` message: every client message type x every principal, as data.

The table's rows are checked against the message types ``signaling.messages`` parses, so a new
message type without a row fails here. Each principal gets a Hub of its own with the same
scene, then sends one message of every row in the table's order (later rows see what earlier
ones changed: ``accept`` moves a winning agent into the accepted case, ``leave`` takes it out).

The scene: case X is in a call (its customer and agent-1, who holds it); case Y's customer is
waiting; site s1 has camera cam1. The outcome of a message is the first reply to it among
``error`` (as ``error:<code>``), ``pong``, ``answer``, ``joined``, ``accepted`` and ``chat``, or
``ok`` when the server answers nothing (a ping sent after it is answered first)."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, get_args

import pytest

from signaling import ClientMessage, HubConfig, Role
from tests.fakes.signal_client import Participant
from tests.fakes.signaling_hub import HubUnderTest

OFFER = "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\n"
CANDIDATE = "candidate:1 1 udp 1 1.2.3.4 5 typ host"

PRINCIPALS = (
    "anonymous",
    "customer_x",
    "customer_other",
    "agent_holding",
    "agent_other",
    "reviewer",
    "admin",
    "camera",
)

#: Replies that answer a message (everything else is news the socket would get anyway).
REPLIES = frozenset({"error", "pong", "answer", "joined", "accepted", "chat"})


@dataclass(frozen=True)
class Scene:
    case_x: str
    case_y: str


Build = Callable[[Scene], dict[str, Any]]

#: message type -> (the message, {principal: outcome}), in the order they are sent.
MATRIX: dict[str, tuple[Build, dict[str, str]]] = {
    "ping": (
        lambda s: {"type": "ping", "nonce": "row"},
        {
            "anonymous": "error:not_joined",
            "customer_x": "pong",
            "customer_other": "pong",
            "agent_holding": "pong",
            "agent_other": "pong",
            "reviewer": "pong",
            "admin": "pong",
            "camera": "pong",
        },
    ),
    "chat": (
        lambda s: {"type": "chat", "client_id": "row", "text": "hello"},
        {
            "anonymous": "error:not_joined",
            "customer_x": "chat",  # into case X's room
            "customer_other": "chat",  # into its own case's room
            "agent_holding": "chat",
            "agent_other": "error:not_in_call",  # the lobby has no chat
            "reviewer": "error:not_in_call",
            "admin": "error:not_in_call",
            "camera": "chat",  # into its site's room
        },
    ),
    "offer": (
        lambda s: {"type": "offer", "sdp": OFFER},
        {
            "anonymous": "error:not_joined",
            "customer_x": "answer",
            "customer_other": "answer",  # its own case's media room
            "agent_holding": "answer",
            "agent_other": "error:not_in_call",
            "reviewer": "error:not_in_call",
            "admin": "error:not_in_call",
            "camera": "answer",  # its own camera's media room
        },
    ),
    "candidate": (
        lambda s: {"type": "candidate", "candidate": CANDIDATE},
        {
            "anonymous": "error:not_joined",
            "customer_x": "ok",
            "customer_other": "ok",
            "agent_holding": "ok",
            "agent_other": "error:not_in_call",
            "reviewer": "error:not_in_call",
            "admin": "error:not_in_call",
            "camera": "ok",
        },
    ),
    "markup": (
        lambda s: {"type": "markup", "frame_id": "f0", "op": "clear"},
        {
            "anonymous": "error:not_joined",
            "customer_x": "error:forbidden",
            "customer_other": "error:forbidden",
            "agent_holding": "error:not_found",
            "agent_other": "error:not_in_call",
            "reviewer": "error:not_in_call",
            "admin": "error:not_in_call",
            "camera": "error:not_in_call",
        },
    ),
    "point": (
        lambda s: {"type": "point", "x": 0.5, "y": 0.5},
        {
            "anonymous": "error:not_joined",
            "customer_x": "ok",
            "customer_other": "ok",
            "agent_holding": "ok",
            "agent_other": "error:not_in_call",
            "reviewer": "error:not_in_call",
            "admin": "error:not_in_call",
            "camera": "error:not_in_call",
        },
    ),
    "photo_request": (
        lambda s: {"type": "photo_request", "request_id": "r1"},
        {
            "anonymous": "error:not_joined",
            "customer_x": "error:forbidden",
            "customer_other": "error:forbidden",
            "agent_holding": "ok",
            "agent_other": "error:not_in_call",
            "reviewer": "error:not_in_call",
            "admin": "error:not_in_call",
            "camera": "error:not_in_call",
        },
    ),
    "camera_control": (
        lambda s: {"type": "camera_control", "control": "torch", "value": True},
        {
            "anonymous": "error:not_joined",
            "customer_x": "error:forbidden",
            "customer_other": "error:forbidden",
            "agent_holding": "ok",
            "agent_other": "error:not_in_call",
            "reviewer": "error:not_in_call",
            "admin": "error:not_in_call",
            "camera": "error:not_in_call",
        },
    ),
    "camera_state": (
        lambda s: {"type": "camera_state", "capabilities": {"torch": False}},
        {
            "anonymous": "error:not_joined",
            "customer_x": "ok",
            "customer_other": "ok",
            "agent_holding": "error:forbidden",
            "agent_other": "error:not_in_call",
            "reviewer": "error:not_in_call",
            "admin": "error:not_in_call",
            "camera": "error:not_in_call",
        },
    ),
    "video_mode": (
        lambda s: {"type": "video_mode", "mode": "audio"},
        {
            "anonymous": "error:not_joined",
            "customer_x": "error:forbidden",
            "customer_other": "error:forbidden",
            "agent_holding": "ok",
            "agent_other": "error:not_in_call",
            "reviewer": "error:not_in_call",
            "admin": "error:not_in_call",
            "camera": "error:not_in_call",
        },
    ),
    "unwatch": (
        lambda s: {"type": "unwatch", "camera_id": "cam1"},
        {
            "anonymous": "error:not_joined",
            "customer_x": "error:forbidden",
            "customer_other": "error:forbidden",
            "agent_holding": "ok",
            "agent_other": "ok",
            "reviewer": "ok",
            "admin": "ok",
            "camera": "error:forbidden",
        },
    ),
    "accept": (
        lambda s: {"type": "accept", "case_id": s.case_y},
        {
            "anonymous": "error:not_joined",
            "customer_x": "error:forbidden",
            "customer_other": "error:forbidden",  # not even its own case
            "agent_holding": "accepted",
            "agent_other": "accepted",
            "reviewer": "error:forbidden",
            "admin": "accepted",
            "camera": "error:forbidden",
        },
    ),
    "leave": (
        lambda s: {"type": "leave"},
        {
            "anonymous": "error:not_joined",
            "customer_x": "ok",
            "customer_other": "ok",
            "agent_holding": "joined",  # back to the lobby
            "agent_other": "joined",
            "reviewer": "ok",  # was in the lobby already
            "admin": "joined",
            "camera": "ok",
        },
    ),
    "join": (
        lambda s: {"type": "join", "case_id": s.case_x},
        {
            "anonymous": "error:unauthorized",  # no credential at all (then closed, 4401)
            "customer_x": "error:already_joined",
            "customer_other": "error:already_joined",
            "agent_holding": "joined",  # back into the call it holds
            "agent_other": "error:forbidden",  # another agent holds the call
            "reviewer": "error:forbidden",
            "admin": "joined",  # admins may enter any call
            "camera": "error:already_joined",
        },
    ),
}

#: Who may end up in case X's room (presence, chat, a media peer) after every row.
IN_CASE_X = frozenset({"customer_x", "agent_holding", "admin"})


def parsed_message_types() -> set[str]:
    """The ``type`` of every message ``signaling.parse_client_message`` accepts."""
    union = get_args(ClientMessage)[0]
    types: set[str] = set()
    for model in get_args(union):
        (kind,) = get_args(model.model_fields["type"].annotation)
        types.add(kind)
    return types


def test_every_message_type_has_a_row_for_every_principal() -> None:
    assert set(MATRIX) == parsed_message_types()
    for kind, (_, outcomes) in MATRIX.items():
        assert set(outcomes) == set(PRINCIPALS), f"row {kind!r} misses a principal"


_nonces = itertools.count()


async def outcome(socket: Participant, message: dict[str, Any]) -> str:
    """Send ``message``; its first reply, or ``ok`` if the ping sent after it is answered
    first. What it causes later (``accept``'s ``joined``) is read up to that ping's answer, so
    the next row starts clean."""
    marker = f"marker-{next(_nonces)}"
    await socket.send(message)
    if message["type"] != "join":  # the last row; a refused anonymous join closes the socket
        await socket.send({"type": "ping", "nonce": marker})
    found: str | None = None
    # A stored chat message comes back through the room's topic, after the ping's answer.
    echo = message.get("client_id") if message["type"] == "chat" else None
    async with asyncio.timeout(10):
        while True:
            reply = await socket.inbox.get()
            if echo is not None and reply["type"] == "chat" and reply["client_id"] == echo:
                return "chat"
            if reply["type"] == "pong" and reply.get("nonce") == marker:
                if echo is not None and found is None:
                    continue
                return found or "ok"
            if found is not None and reply["type"] == "error" and reply["ref"] == "ping":
                return found  # the ping itself refused (before join): its answer all the same
            if found is None and reply["type"] == "error":
                found = f"error:{reply['code']}"
            elif found is None and reply["type"] == "pong":
                found = "pong" if message["type"] == "ping" else None
            elif found is None and reply["type"] in REPLIES - {"chat", "pong"}:
                found = str(reply["type"])
            if found is not None and message["type"] == "join":
                return found


async def scene(hubt: HubUnderTest, principal: str) -> tuple[Scene, Participant]:
    """Case X in a call, case Y's customer waiting, site s1 with cam1; the principal's socket
    joined as it is (anonymous: connected, not joined)."""
    hubt.sites.add_site("s1", "Warehouse", "cam1")
    case_x = hubt.cases.create("Xena Customer").case_id
    case_y = hubt.cases.create("Yuri Customer").case_id
    holder = hubt.client(headers=hubt.auth.staff("agent-1"))
    await holder.join()
    customer_x, _ = await hubt.customer(case_x)
    await holder.send({"type": "accept", "case_id": case_x})
    await holder.expect("joined", where=lambda m: m["case"] is not None)
    customer_y, _ = await hubt.customer(case_y)
    sockets: dict[str, Callable[[], Any]] = {
        "customer_x": lambda: customer_x,
        "customer_other": lambda: customer_y,
        "agent_holding": lambda: holder,
    }
    if principal in sockets:
        return Scene(case_x, case_y), sockets[principal]()
    if principal == "anonymous":
        socket = hubt.client()
        await socket.connect()
        return Scene(case_x, case_y), socket
    if principal == "camera":
        socket = hubt.client()
        await socket.join(camera_token=hubt.sites.camera_token("s1", "cam1"))
        return Scene(case_x, case_y), socket
    role = {"agent_other": Role.AGENT, "reviewer": Role.REVIEWER, "admin": Role.ADMIN}[principal]
    socket, _ = await hubt.staff(f"{principal}-1", role=role)
    return Scene(case_x, case_y), socket


@pytest.mark.parametrize("principal", PRINCIPALS)
async def test_ws_authorisation_matrix(principal: str) -> None:
    config = HubConfig(waiting_grace_s=5.0, message_burst=200.0)
    async with HubUnderTest(config) as hubt:
        where, socket = await scene(hubt, principal)
        got = {}
        for kind, (build, _) in MATRIX.items():
            got[kind] = await outcome(socket, build(where))
        expected = {kind: outcomes[principal] for kind, (_, outcomes) in MATRIX.items()}
        assert got == expected

        if principal in IN_CASE_X:
            return
        # Whatever it sent, nothing of it reached case X: no chat, no presence, no media peer.
        mine = {m["participant_id"] for m in socket.seen if m["type"] == "joined"}
        chat = await hubt.bus.chat_since(where.case_x, 0)
        assert not [r for r in chat if r.sender.get("participant_id") in mine]
        present = {p["participant_id"] for p in await hubt.bus.presence_list(where.case_x)}
        assert not present & mine
        assert not [
            peer_id
            for peer_id, peer in hubt.media.peers.items()
            if peer.room_id == where.case_x and peer_id.split("-")[0] in mine
        ]
