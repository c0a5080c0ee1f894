"""Signaling: the ``/ws`` protocol, rooms, agent queue, chat log and bus backends."""

from __future__ import annotations

from .bus import (
    Bus,
    BusUnavailable,
    ChatRecord,
    Lagged,
    MemoryBus,
    QueueEntry,
    Reconnected,
    RedisBus,
    Subscription,
)
from .errors import CloseCode, ProtocolError, SignalingError, SignalingErrorCode
from .hub import Hub, HubConfig, HubObserver
from .messages import Role, parse_client_message
from .ports import (
    Authenticator,
    CaseDirectory,
    CaseSummary,
    Identity,
    MediaGateway,
    MediaListener,
    SiteDirectory,
    SiteSummary,
    camera_room,
    site_room,
)

__all__ = [
    "Authenticator",
    "Bus",
    "BusUnavailable",
    "CaseDirectory",
    "CaseSummary",
    "ChatRecord",
    "CloseCode",
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
    "Reconnected",
    "RedisBus",
    "Role",
    "SignalingError",
    "SignalingErrorCode",
    "SiteDirectory",
    "SiteSummary",
    "Subscription",
    "camera_room",
    "parse_client_message",
    "site_room",
]
