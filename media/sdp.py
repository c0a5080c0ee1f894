"""SDP checks and rewrites around aiortc.

aiortc's own parser raises whatever the garbage provokes (``KeyError``, ``IndexError``,
``AssertionError``...) and may leave a peer half-configured, so offers are checked and parsed
here first and every failure becomes :class:`~media.errors.BadSdp` with a message for the client.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from aiortc import RTCIceCandidate
from aiortc import sdp as aiortc_sdp

from .errors import BadCandidate, BadSdp, BadSdpFragment

__all__ = [
    "MAX_SDP_BYTES",
    "BitrateHints",
    "OfferedMedia",
    "SdpFragment",
    "munge_answer",
    "no_common_codec",
    "parse_candidate",
    "parse_sdpfrag",
    "validate_offer",
]

#: Larger is no offer a browser or encoder sends (signaling caps its frames at 64 KiB too).
MAX_SDP_BYTES = 64 * 1024

#: Payload types that protect or repeat another codec; bitrate hints on them mean nothing.
_NON_MEDIA_CODECS = frozenset({"rtx", "red", "ulpfec", "flexfec-03", "cn", "telephone-event"})

_CANDIDATE_TYPES = frozenset({"host", "srflx", "prflx", "relay"})
_RTPMAP = re.compile(r"^a=rtpmap:(\d+) ([^/\s]+)")
_FMTP = re.compile(r"^a=fmtp:(\d+)(?: (.*))?$")


@dataclass(frozen=True, slots=True)
class OfferedMedia:
    """One audio or video section of a client's offer, as the server needs it."""

    mid: str
    kind: str
    #: The direction the *client* wrote (``sendrecv``, ``sendonly``, ``recvonly``, ``inactive``).
    direction: str
    #: The media codecs offered, as people read them (``VP8``, ``H264 640c1f``), in order.
    codecs: tuple[str, ...] = ()

    @property
    def client_receives(self) -> bool:
        """Whether the server may send on this section."""
        return self.direction in ("sendrecv", "recvonly")

    @property
    def client_sends(self) -> bool:
        return self.direction in ("sendrecv", "sendonly")


def validate_offer(text: object) -> list[OfferedMedia]:
    """Check that ``text`` is an SDP offer aiortc can apply and describe its media sections.

    Raises :class:`BadSdp` with a human-readable message otherwise.
    """
    if not isinstance(text, str):
        raise BadSdp("the offer SDP must be a string")
    if not text.strip():
        raise BadSdp("the offer SDP is empty")
    if len(text.encode("utf-8", "surrogatepass")) > MAX_SDP_BYTES:
        raise BadSdp(f"the offer SDP is larger than {MAX_SDP_BYTES} bytes")
    if "\x00" in text:
        raise BadSdp("the offer SDP contains NUL characters")
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    if lines[0] != "v=0":
        raise BadSdp("the offer SDP must start with a 'v=0' line")
    if not any(line.startswith("m=") for line in lines):
        raise BadSdp("the offer SDP has no media ('m=') sections")
    try:
        description = aiortc_sdp.SessionDescription.parse(text)
    except (ValueError, KeyError, IndexError, TypeError, AttributeError, AssertionError) as exc:
        raise BadSdp(f"the offer SDP cannot be parsed: {_describe(exc)}") from exc

    offered: list[OfferedMedia] = []
    for index, media in enumerate(description.media):
        where = f"media section {index} ({media.kind})"
        if media.kind not in ("audio", "video", "application"):
            raise BadSdp(f"{where}: unsupported media kind")
        if media.ice is None or not media.ice.usernameFragment or not media.ice.password:
            raise BadSdp(f"{where}: missing a=ice-ufrag / a=ice-pwd")
        if media.dtls is None or not media.dtls.fingerprints:
            raise BadSdp(f"{where}: missing a=fingerprint (DTLS is required)")
        if not media.rtp.muxId:
            raise BadSdp(f"{where}: missing a=mid")
        if media.kind == "application":
            continue
        if not media.rtcp_mux:
            raise BadSdp(f"{where}: a=rtcp-mux is required")
        if not media.rtp.codecs:
            raise BadSdp(f"{where}: no codecs (a=rtpmap) offered")
        offered.append(
            OfferedMedia(
                mid=media.rtp.muxId,
                kind=media.kind,
                direction=media.direction or "",
                codecs=_codec_names(media.rtp.codecs),
            )
        )
    if not offered:
        raise BadSdp("the offer SDP has no audio or video section")
    return offered


#: What the server forwards, for the message when an offer has none of it.
_SUPPORTED = {
    "audio": "Opus, PCMU, PCMA or G722",
    "video": "VP8 or H264 (constrained baseline 42e01f/42001f, packetization-mode 1)",
}


def no_common_codec(offered: list[OfferedMedia]) -> str:
    """Why an offer aiortc could not apply found no codec: what it offers, what is taken."""
    parts = [
        f"{media.kind} section {media.mid} offers {', '.join(media.codecs) or 'nothing'}"
        for media in offered
    ]
    kinds = sorted({media.kind for media in offered})
    wanted = "; ".join(f"{kind}: {_SUPPORTED[kind]}" for kind in kinds if kind in _SUPPORTED)
    return f"no codec in common with the server ({'; '.join(parts)}; it takes {wanted})"


def _codec_names(codecs: Iterable[object]) -> tuple[str, ...]:
    names: list[str] = []
    for codec in codecs:
        name = str(getattr(codec, "mimeType", "")).split("/", 1)[-1]
        if name.lower() in _NON_MEDIA_CODECS:
            continue
        params = getattr(codec, "parameters", {}) or {}
        profile = params.get("profile-level-id")
        label = f"{name} {profile}" if profile else name
        if label not in names:
            names.append(label)
    return tuple(names)


def _describe(exc: BaseException) -> str:
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


@dataclass(frozen=True, slots=True)
class BitrateHints:
    """Chromium's ``x-google-*-bitrate`` fmtp parameters, in kbit/s.

    Without a start bitrate Chromium starts low and, against aiortc's REMB, needs ~35 s to reach
    720p (measured; see DESIGN.md "Interop facts").
    """

    start_kbps: int
    min_kbps: int | None = None
    max_kbps: int | None = None

    def params(self) -> str:
        parts = [f"x-google-start-bitrate={self.start_kbps}"]
        if self.min_kbps is not None:
            parts.append(f"x-google-min-bitrate={self.min_kbps}")
        if self.max_kbps is not None:
            parts.append(f"x-google-max-bitrate={self.max_kbps}")
        return ";".join(parts)


def munge_answer(answer_sdp: str, hints: BitrateHints) -> str:
    """Add bitrate hints to every video codec's ``a=fmtp`` line of an answer, and Opus
    in-band FEC (``useinbandfec=1``, RFC 7587) to every Opus ``a=fmtp`` line.

    Payload types with an fmtp line get the parameters appended; those without get a new
    ``a=fmtp:<pt>`` line right after their ``a=rtpmap``. rtx/red/ulpfec are left alone. With
    FEC asked for, a browser puts a low-rate copy of each packet's speech in the next one: the
    server forwards packets whole, so the receiver at the far end recovers a packet lost on
    either leg from the one after it.
    """
    lines = answer_sdp.splitlines()
    out: list[str] = []
    for section in _sections(lines):
        if section and section[0].startswith("m=video"):
            out.extend(_munge_video_section(section, hints.params()))
        elif section and section[0].startswith("m=audio"):
            out.extend(_with_params(section, {"opus"}, "useinbandfec=1", "useinbandfec"))
        else:
            out.extend(section)
    return "\r\n".join(out) + "\r\n"


def _with_params(section: list[str], codecs: set[str], params: str, marker: str) -> list[str]:
    """``params`` on the fmtp line of every payload type of ``codecs`` (a line made if there is
    none); a line already holding ``marker`` is left as it is."""
    names = {m.group(1): m.group(2).lower() for line in section if (m := _RTPMAP.match(line))}
    wanted = {pt for pt, name in names.items() if name in codecs}
    with_fmtp = {m.group(1) for line in section if (m := _FMTP.match(line))}
    out: list[str] = []
    for line in section:
        fmtp = _FMTP.match(line)
        if fmtp and fmtp.group(1) in wanted:
            existing = fmtp.group(2) or ""
            if marker in existing:
                out.append(line)
            elif existing:
                out.append(f"{line};{params}")
            else:
                out.append(f"a=fmtp:{fmtp.group(1)} {params}")
            continue
        out.append(line)
        rtpmap = _RTPMAP.match(line)
        if rtpmap and rtpmap.group(1) in wanted and rtpmap.group(1) not in with_fmtp:
            out.append(f"a=fmtp:{rtpmap.group(1)} {params}")
    return out


def _sections(lines: list[str]) -> Iterable[list[str]]:
    current: list[str] = []
    for line in lines:
        if line.startswith("m=") and current:
            yield current
            current = []
        current.append(line)
    if current:
        yield current


def _munge_video_section(section: list[str], params: str) -> list[str]:
    names = {m.group(1): m.group(2).lower() for line in section if (m := _RTPMAP.match(line))}
    media = {name for name in names.values() if name not in _NON_MEDIA_CODECS}
    return _with_params(section, media, params, "x-google-start-bitrate")


def parse_candidate(
    candidate: str, sdp_mid: str | None, sdp_mline_index: int | None
) -> RTCIceCandidate | None:
    """Turn a trickled candidate, as a browser sends it, into an aiortc candidate.

    Returns ``None`` for the empty string, which means end-of-candidates. Raises
    :class:`BadCandidate` on anything else that is not a well-formed ICE candidate.
    """
    if not isinstance(candidate, str):
        raise BadCandidate("the candidate must be a string")
    text = candidate.strip()
    if not text:
        return None
    if "\x00" in text or len(text) > 1024:
        raise BadCandidate("the candidate is not a valid ICE candidate line")
    for prefix in ("a=", "candidate:"):
        if text.startswith(prefix):
            text = text[len(prefix) :]
    bits = text.split()
    # foundation component transport priority address port "typ" type [extensions...]
    if len(bits) < 8 or bits[6] != "typ":
        raise BadCandidate(
            "the candidate must read 'candidate:<foundation> <component> <transport> "
            "<priority> <address> <port> typ <type> ...'"
        )
    if bits[2].lower() not in ("udp", "tcp"):
        raise BadCandidate(f"unsupported candidate transport {bits[2]!r}")
    if bits[7] not in _CANDIDATE_TYPES:
        raise BadCandidate(f"unknown candidate type {bits[7]!r}")
    try:
        parsed = aiortc_sdp.candidate_from_sdp(text)
    except (ValueError, IndexError, AssertionError) as exc:
        raise BadCandidate(f"the candidate cannot be parsed: {_describe(exc)}") from exc
    if not 1 <= parsed.component <= 256 or not 0 <= parsed.port <= 65535 or parsed.priority < 0:
        raise BadCandidate("the candidate has an out-of-range component, port or priority")
    if sdp_mline_index is not None and sdp_mline_index < 0:
        raise BadCandidate("sdpMLineIndex must not be negative")
    # aiortc needs one of the two; with BUNDLE everything rides on the first section.
    parsed.sdpMid = sdp_mid
    parsed.sdpMLineIndex = 0 if sdp_mid is None and sdp_mline_index is None else sdp_mline_index
    return parsed


#: Longer is no line of a trickle-ICE fragment (a candidate with every extension is ~200).
_MAX_SDPFRAG_LINE = 2048


@dataclass(frozen=True, slots=True)
class SdpFragment:
    """A trickle-ICE SDP fragment (RFC 8840 ``application/trickle-ice-sdpfrag``): what a WHIP
    client PATCHes to trickle candidates or restart ICE."""

    #: ``a=ice-ufrag`` / ``a=ice-pwd``, when the fragment carries them (an ICE restart does).
    ufrag: str | None
    pwd: str | None
    #: Each ``a=candidate`` line without its ``a=``, with the ``a=mid`` of the ``m=`` section
    #: it came in (``None`` before any ``a=mid``), in the order they came.
    candidates: tuple[tuple[str, str | None], ...]
    #: Whether the fragment holds ``a=end-of-candidates``.
    end_of_candidates: bool


def parse_sdpfrag(body: str) -> SdpFragment:
    """Read an ``application/trickle-ice-sdpfrag`` body (RFC 8840).

    Other ``a=`` and ``c=`` lines are ignored; any other line, a NUL character or a line longer
    than 2048 characters raises :class:`~media.errors.BadSdpFragment`.
    """
    ufrag = pwd = None
    mid: str | None = None
    candidates: list[tuple[str, str | None]] = []
    end = False
    for raw in body.splitlines():
        line = raw.strip()
        if not line:
            continue
        if "\x00" in line or len(line) > _MAX_SDPFRAG_LINE:
            raise BadSdpFragment("the SDP fragment has a malformed line")
        if line.startswith("a=ice-ufrag:"):
            ufrag = line.removeprefix("a=ice-ufrag:").strip()
        elif line.startswith("a=ice-pwd:"):
            pwd = line.removeprefix("a=ice-pwd:").strip()
        elif line.startswith("m="):
            mid = None
        elif line.startswith("a=mid:"):
            mid = line.removeprefix("a=mid:").strip()
        elif line.startswith("a=candidate:"):
            candidates.append((line.removeprefix("a="), mid))
        elif line == "a=end-of-candidates":
            end = True
        elif not line.startswith(("a=", "c=")):
            raise BadSdpFragment(f"not an SDP fragment line: {line[:40]!r} (RFC 8840)")
    return SdpFragment(ufrag, pwd, tuple(candidates), end)
