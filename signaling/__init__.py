"""Signaling: the ``/ws`` protocol, rooms, agent queue, chat log and bus backends."""

from __future__ import annotations

from .bus import Bus, ChatRecord, Lagged, MemoryBus, QueueEntry, Subscription
from .errors import ProtocolError, SignalingError, SignalingErrorCode
from .hub import Hub, HubConfig, HubObserver
from .messages import Role, parse_client_message
from .ports import (
    Authenticator,
    CaseDirectory,
    CaseSummary,
    Identity,
    MediaGateway,
    MediaListener,
)

__all__ = [
    "Authenticator",
    "Bus",
    "CaseDirectory",
    "CaseSummary",
    "ChatRecord",
    "Hub",
    "HubConfig",
    "HubObserver",
    "Identity",
    "Lagged",
    "MediaGateway",
    "MediaListener",
    "MemoryBus",
    "ProtocolError",
    "QueueEntry",
    "Role",
    "SignalingError",
    "SignalingErrorCode",
    "Subscription",
    "parse_client_message",
]
