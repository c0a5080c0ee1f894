"""Signaling: the ``/ws`` protocol, rooms, agent queue, chat log and bus backends.

Room and subject ids are :class:`RoomId` and :class:`SubjectId`; the messages sent to clients
are built by :mod:`signaling.outbound`; the Hub's needs from the rest of the service are the
Protocols of :mod:`signaling.ports`."""

from __future__ import annotations

from . import outbound
from ._origin import origin_of
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
from .config import HubConfig
from .errors import CloseCode, ProtocolError, SignalingError, SignalingErrorCode
from .hub import Hub
from .ids import RoomId, RoomKind, SubjectId, SubjectKind, camera_room, site_room
from .messages import (
    MAX_STROKES,
    AcceptMessage,
    CandidateMessage,
    ChatMessage,
    ClientMessage,
    JoinMessage,
    LeaveMessage,
    OfferMessage,
    PingMessage,
    Role,
    Stroke,
    UnwatchMessage,
    parse_client_message,
)
from .outbound import ServerMessageType
from .ports import (
    Authenticator,
    CaseDirectory,
    CaseStatus,
    CaseSummary,
    CredentialCheck,
    HubObserver,
    Identity,
    MediaGateway,
    MediaListener,
    SiteDirectory,
    SiteSummary,
)
from .ratelimit import RateLimit, RateLimiter, TokenBucket

__all__ = [
    "origin_of",
    "MAX_STROKES",
    "AcceptMessage",
    "Authenticator",
    "Bus",
    "BusUnavailable",
    "CandidateMessage",
    "CaseDirectory",
    "CaseStatus",
    "CaseSummary",
    "ChatMessage",
    "ChatRecord",
    "ClientMessage",
    "CloseCode",
    "CredentialCheck",
    "Hub",
    "HubConfig",
    "HubObserver",
    "Identity",
    "JoinMessage",
    "Lagged",
    "LeaveMessage",
    "MediaGateway",
    "MediaListener",
    "MemoryBus",
    "OfferMessage",
    "PingMessage",
    "ProtocolError",
    "QueueEntry",
    "RateLimit",
    "RateLimiter",
    "Reconnected",
    "RedisBus",
    "Role",
    "RoomId",
    "RoomKind",
    "ServerMessageType",
    "SignalingError",
    "SignalingErrorCode",
    "SiteDirectory",
    "SiteSummary",
    "SubjectId",
    "Stroke",
    "SubjectKind",
    "Subscription",
    "TokenBucket",
    "UnwatchMessage",
    "camera_room",
    "outbound",
    "parse_client_message",
    "site_room",
]
