"""Media plane: server-side aiortc peers and forwarding between the participants of a room."""

from __future__ import annotations

from .engine import MediaConfig, MediaEngine, MediaListener
from .errors import BadCandidate, BadSdp, MediaError, PeerNotFound
from .forwarder import Forwarder, SubscriberTrack, TrackSource
from .peer import ServerPeer
from .sampler import FrameSampler, FrameSink, StreamKey
from .sdp import BitrateHints, OfferedMedia, munge_answer, parse_candidate, validate_offer

__all__ = [
    "BadCandidate",
    "BadSdp",
    "BitrateHints",
    "Forwarder",
    "FrameSampler",
    "FrameSink",
    "MediaConfig",
    "MediaEngine",
    "MediaError",
    "MediaListener",
    "OfferedMedia",
    "PeerNotFound",
    "ServerPeer",
    "StreamKey",
    "SubscriberTrack",
    "TrackSource",
    "munge_answer",
    "parse_candidate",
    "validate_offer",
]
