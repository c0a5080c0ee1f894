"""Media plane: server-side aiortc peers and forwarding between the participants of a room.

Other packages import only the names below.
"""

from __future__ import annotations

from ._aiortc import IceCredentials
from .audio import SPEECH_RATE, AudioSampler, AudioSink
from .config import MediaConfig
from .engine import MediaEngine, MediaListener
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
from .forwarder import Forwarder
from .frame_router import FrameRouter, Resampler
from .ingest import Backoff, IngestTarget, RtspPull, RtspState, RtspStatus, mask_url
from .keyframes import EncodedFrame, codec_of, is_keyframe
from .metrics import MediaCollector
from .peer import ServerPeer
from .preroll import PrerollBuffer
from .recorder import Gap, GapReason, RecordedFile, Recorder
from .recording import CaptureHandle, Publication
from .sampler import FrameSampler, FrameSink, StreamKey
from .sdp import (
    MAX_SDP_BYTES,
    BitrateHints,
    OfferedMedia,
    SdpFragment,
    munge_answer,
    parse_candidate,
    parse_sdpfrag,
    validate_offer,
)
from .source import FrameTap, SourceStats, TrackSource
from .subscriber import ForwardingTotals, SubscriberTrack
from .transcode import Transcode

__all__ = [
    "MAX_SDP_BYTES",
    "SPEECH_RATE",
    "AudioSampler",
    "AudioSink",
    "Backoff",
    "BadCandidate",
    "BadSdp",
    "BadSdpFragment",
    "BitrateHints",
    "CaptureHandle",
    "CaptureNotFound",
    "EncodedFrame",
    "Forwarder",
    "ForwardingTotals",
    "FrameRouter",
    "FrameSampler",
    "FrameSink",
    "FrameTap",
    "Gap",
    "GapReason",
    "IceCredentials",
    "IceNotRestartable",
    "IngestTarget",
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
    "Publication",
    "RecordedFile",
    "Recorder",
    "Resampler",
    "RtspPull",
    "RtspState",
    "RtspStatus",
    "SdpFragment",
    "ServerPeer",
    "SourceStats",
    "StreamKey",
    "SubscriberTrack",
    "TrackSource",
    "Transcode",
    "codec_of",
    "is_keyframe",
    "mask_url",
    "munge_answer",
    "parse_candidate",
    "parse_sdpfrag",
    "validate_offer",
]
