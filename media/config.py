"""How the media engine's peers reach clients, what they answer with, and what it samples and
records: :class:`MediaConfig`, validated once when it is built."""

from __future__ import annotations

import re
from dataclasses import dataclass

from aiortc import RTCConfiguration, RTCIceServer

from .sdp import BitrateHints

__all__ = ["MediaConfig"]

_ICE_URL = re.compile(r"^(stun|turn|turns):[^\s]+$")


@dataclass(frozen=True, slots=True)
class MediaConfig:
    """How the engine's peers reach clients and how fast browsers should start sending."""

    #: STUN/TURN URLs (``stun:host:port``, ``turn:host:port?transport=udp``). Empty on loopback
    #: or a host with a public address: then only host candidates are gathered.
    ice_servers: tuple[str, ...] = ()
    turn_username: str | None = None
    turn_credential: str | None = None
    #: ``x-google-start-bitrate`` put in every answer's video fmtp lines.
    start_bitrate_kbps: int = 1500
    min_bitrate_kbps: int | None = None
    max_bitrate_kbps: int | None = None
    #: The least a video publisher is told it may send (REMB) when its subscribers' estimates
    #: are lower: a narrow viewer lowers the publisher's bitrate, but not below a picture worth
    #: inspecting (640x360 at 15 fps in Chromium).
    publish_floor_kbps: int = 500
    #: Share of a subscriber's estimated bitrate its retransmissions may take.
    retransmit_share: float = 0.25
    #: How long the server waits for a lost video packet (NACKed about every round trip)
    #: before it skips it and waits for a keyframe: at least this, else 3 round trips.
    loss_give_up_s: float = 0.4
    #: How long closing one peer (or all of them in :meth:`MediaEngine.aclose`) may take.
    close_timeout_s: float = 5.0
    #: Decoded frames per second handed to the frame sink (the grading model) per video track.
    sample_fps: float = 2.0
    #: Seconds of encoded frames kept per published track so a capture can start before it
    #: was asked for (from the newest keyframe at least this far back). 0 disables pre-roll.
    preroll_s: float = 10.0
    #: Whether captures are possible at all (no pre-roll buffers, no keyframe requests if not).
    recording: bool = True
    #: While pre-roll is armed, ask each video publisher for a keyframe this often (Chromium
    #: sends almost none on its own, and a pre-roll can only start at one).
    keyframe_interval_s: float = 2.0
    #: UDP ports the server's ICE host candidates bind to (``None``: ephemeral ports). Each
    #: process of a host needs its own range.
    udp_ports: range | None = None
    #: Video codecs to answer with, in order, when the room has no publisher to match yet
    #: (a subscriber then receives its publisher's codec and frames are forwarded as they are).
    video_codecs: tuple[str, ...] = ("vp8", "h264")

    def __post_init__(self) -> None:
        for url in self.ice_servers:
            if not _ICE_URL.match(url):
                raise ValueError(f"ICE server URL must be stun:, turn: or turns:, got {url!r}")
        if self.start_bitrate_kbps <= 0:
            raise ValueError("start_bitrate_kbps must be positive")
        low = self.min_bitrate_kbps or 0
        high = self.max_bitrate_kbps or self.start_bitrate_kbps
        if not low <= self.start_bitrate_kbps <= high:
            raise ValueError("bitrates must satisfy min <= start <= max")
        if self.publish_floor_kbps <= 0:
            raise ValueError("publish_floor_kbps must be positive")
        if not 0 < self.retransmit_share <= 1:
            raise ValueError("retransmit_share must be in (0, 1]")
        if self.loss_give_up_s <= 0:
            raise ValueError("loss_give_up_s must be positive")
        if self.close_timeout_s <= 0:
            raise ValueError("close_timeout_s must be positive")
        if self.sample_fps <= 0:
            raise ValueError("sample_fps must be positive")
        if self.preroll_s < 0:
            raise ValueError("preroll_s must not be negative")
        if self.keyframe_interval_s <= 0:
            raise ValueError("keyframe_interval_s must be positive")
        if self.udp_ports is not None and (
            not self.udp_ports or self.udp_ports.start < 1024 or self.udp_ports.stop > 65536
        ):
            raise ValueError("udp_ports must be a non-empty range within 1024-65535")
        unknown = set(self.video_codecs) - {"vp8", "h264"}
        if unknown or not self.video_codecs:
            raise ValueError(f"video_codecs must be some of vp8, h264; got {self.video_codecs}")

    @property
    def preroll_armed(self) -> bool:
        return self.recording and self.preroll_s > 0

    def rtc_configuration(self) -> RTCConfiguration:
        """The aiortc configuration for one peer.

        Always a list, possibly empty: ``iceServers=None`` makes aiortc fall back to Google's
        public STUN server.
        """
        stun = [url for url in self.ice_servers if url.startswith("stun:")]
        turn = [url for url in self.ice_servers if not url.startswith("stun:")]
        servers: list[RTCIceServer] = []
        if stun:
            servers.append(RTCIceServer(urls=stun))
        if turn:
            servers.append(
                RTCIceServer(
                    urls=turn, username=self.turn_username, credential=self.turn_credential
                )
            )
        return RTCConfiguration(iceServers=servers)

    def bitrate_hints(self) -> BitrateHints:
        return BitrateHints(self.start_bitrate_kbps, self.min_bitrate_kbps, self.max_bitrate_kbps)
