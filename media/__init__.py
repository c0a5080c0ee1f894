"""Media plane: server-side aiortc peers and forwarding between the participants of a room."""

from __future__ import annotations

from ._aiortc import IceCredentials
from .capture import CaptureHandle
from .engine import MediaConfig, MediaEngine, MediaListener
from .errors import (
    BadCandidate,
    BadSdp,
    BadSdpFragment,
    CaptureNotFound,
    IceNotRestartable,
    MediaError,
    MediaErrorCode,
    NothingToRecord,
    PeerNotFound,
)
from .forwarder import Forwarder, SourceStats, SubscriberTrack, TrackSource, Transcode
from .ingest import Backoff, IngestTarget, RtspPull, RtspState, RtspStatus, mask_url
from .metrics import MediaCollector
from .peer import ServerPeer
from .preroll import PrerollBuffer
from .recorder import RecordedFile, Recorder
from .sampler import FrameSampler, FrameSink, StreamKey
from .sdp import (
    BitrateHints,
    OfferedMedia,
    SdpFragment,
    munge_answer,
    parse_candidate,
    parse_sdpfrag,
    validate_offer,
)

__all__ = [
    "Backoff",
    "IngestTarget",
    "RtspPull",
    "RtspState",
    "RtspStatus",
    "mask_url",
    "BadCandidate",
    "BadSdp",
    "BadSdpFragment",
    "BitrateHints",
    "CaptureHandle",
    "CaptureNotFound",
    "Forwarder",
    "FrameSampler",
    "FrameSink",
    "IceCredentials",
    "IceNotRestartable",
    "MediaCollector",
    "MediaConfig",
    "MediaEngine",
    "MediaError",
    "MediaErrorCode",
    "MediaListener",
    "NothingToRecord",
    "OfferedMedia",
    "PeerNotFound",
    "PrerollBuffer",
    "SdpFragment",
    "RecordedFile",
    "Recorder",
    "ServerPeer",
    "SourceStats",
    "StreamKey",
    "SubscriberTrack",
    "TrackSource",
    "Transcode",
    "munge_answer",
    "parse_candidate",
    "parse_sdpfrag",
    "validate_offer",
]
