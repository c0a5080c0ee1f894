"""One server-side peer connection and what the engine remembers about it."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

from aiortc import RTCPeerConnection

from .subscriber import SubscriberTrack

__all__ = ["ServerPeer"]


@dataclass(eq=False, slots=True)
class ServerPeer:
    """The server side of one participant's call: its ``RTCPeerConnection`` and bookkeeping."""

    room_id: str
    participant_id: str
    pc: RTCPeerConnection
    #: Serialises offer/answer and candidates: a candidate trickled right behind an offer must
    #: wait until the offer is applied.
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    #: The subscriber track set on each sending transceiver, by mid. Set once, never replaced.
    outlets: dict[str, SubscriberTrack] = field(default_factory=dict)
    #: True once an offer has been answered (the first failed offer discards the peer).
    negotiated: bool = False
    #: True while an offer is being applied: routing does not ask this peer to renegotiate then.
    negotiating: bool = False
    closed: bool = False
    #: Set once the peer connection is closed and everything it used is freed.
    done: asyncio.Event = field(default_factory=asyncio.Event)
    #: The track counts last sent with ``renegotiation_needed``, so one shortfall asks once.
    requested: dict[str, int] | None = None

    @property
    def log_extra(self) -> dict[str, Any]:
        """``extra=`` for log records about this peer."""
        return {"room_id": self.room_id, "participant_id": self.participant_id}

    @property
    def state(self) -> str:
        """The connection state (``new``, ``connecting``, ``connected``, ``failed``, ``closed``)."""
        return "closed" if self.closed else self.pc.connectionState
