"""Offer checks, answer munging, candidate and trickle-ICE fragment parsing."""

from __future__ import annotations

import pytest

from media import (
    BadCandidate,
    BadSdp,
    BadSdpFragment,
    BitrateHints,
    MediaErrorCode,
    SdpFragment,
    munge_answer,
    parse_candidate,
    parse_sdpfrag,
    validate_offer,
)
from tests.fakes.camera import client_offer, client_pc

ANSWER = "\r\n".join(
    [
        "v=0",
        "o=- 1 1 IN IP4 0.0.0.0",
        "s=-",
        "t=0 0",
        "m=audio 9 UDP/TLS/RTP/SAVPF 111",
        "a=rtpmap:111 opus/48000/2",
        "a=fmtp:111 minptime=10;useinbandfec=1",
        "m=video 9 UDP/TLS/RTP/SAVPF 97 98 99 100 101",
        "a=rtpmap:97 VP8/90000",
        "a=rtcp-fb:97 nack",
        "a=rtpmap:98 rtx/90000",
        "a=fmtp:98 apt=97",
        "a=rtpmap:99 H264/90000",
        "a=fmtp:99 packetization-mode=1;profile-level-id=42e01f",
        "a=rtpmap:100 red/90000",
        "a=rtpmap:101 ulpfec/90000",
        "",
    ]
)


def test_munge_adds_start_bitrate_to_every_video_codec_only() -> None:
    out = munge_answer(ANSWER, BitrateHints(1500, max_kbps=2500)).splitlines()
    assert "a=fmtp:97 x-google-start-bitrate=1500;x-google-max-bitrate=2500" in out
    # Inserted right after the codec's rtpmap line.
    assert out[out.index("a=rtpmap:97 VP8/90000") + 1].startswith("a=fmtp:97 ")
    assert (
        "a=fmtp:99 packetization-mode=1;profile-level-id=42e01f;"
        "x-google-start-bitrate=1500;x-google-max-bitrate=2500"
    ) in out
    assert "a=fmtp:98 apt=97" in out
    assert not any(line.startswith(("a=fmtp:100", "a=fmtp:101")) for line in out)
    assert "a=fmtp:111 minptime=10;useinbandfec=1" in out  # audio untouched
    assert munge_answer(ANSWER, BitrateHints(1500)).endswith("\r\n")


def test_munge_is_idempotent() -> None:
    once = munge_answer(ANSWER, BitrateHints(800))
    assert munge_answer(once, BitrateHints(800)) == once


async def test_validate_offer_reports_media_directions() -> None:
    pc = client_pc()
    pc.addTransceiver("audio", direction="sendrecv")
    pc.addTransceiver("video", direction="recvonly")
    offer = await client_offer(pc)
    await pc.close()
    media = validate_offer(offer)
    assert [(m.kind, m.direction, m.client_receives) for m in media] == [
        ("audio", "sendrecv", True),
        ("video", "recvonly", True),
    ]
    with pytest.raises(BadSdp, match="rtcp-mux"):
        validate_offer(offer.replace("a=rtcp-mux\r\n", ""))
    with pytest.raises(BadSdp, match="string"):
        validate_offer(b"v=0")


@pytest.mark.parametrize(
    "text",
    [
        "candidate:842163049 1 udp 1677729535 192.0.2.7 61665 typ srflx raddr 10.0.0.2 rport 61665",
        "a=candidate:1 1 UDP 2130706431 127.0.0.1 50000 typ host",
        "candidate:2 1 tcp 1518280447 10.0.0.2 9 typ host tcptype active",
        "candidate:3 1 udp 2122260223 4ea3c5d5-0b1e-4c5a-9a34-06b9f8a2b5b1.local 53702 typ host",
    ],
)
def test_parse_candidate_accepts_what_browsers_send(text: str) -> None:
    candidate = parse_candidate(text, "0", 0)
    assert candidate is not None
    assert candidate.sdpMid == "0" and candidate.component == 1


def test_parse_candidate_defaults_to_first_section_and_empty_means_end() -> None:
    candidate = parse_candidate("candidate:1 1 udp 1 127.0.0.1 5 typ host", None, None)
    assert candidate is not None and candidate.sdpMLineIndex == 0
    assert parse_candidate("", "0", 0) is None


@pytest.mark.parametrize(
    "text",
    [
        "garbage",
        "candidate:1 1 udp 1 127.0.0.1 5 host",  # no "typ"
        "candidate:1 1 sctp 1 127.0.0.1 5 typ host",
        "candidate:1 1 udp 1 127.0.0.1 5 typ weird",
        "candidate:1 one udp 1 127.0.0.1 5 typ host",
        "candidate:1 1 udp 1 127.0.0.1 70000 typ host",
        "candidate:1 1 udp 1 127.0.0.1 5 typ host\x00",
    ],
)
def test_parse_candidate_rejects_garbage(text: str) -> None:
    with pytest.raises(BadCandidate) as caught:
        parse_candidate(text, "0", 0)
    assert isinstance(caught.value, ValueError)
    assert caught.value.code == "bad_candidate"


def test_parse_sdpfrag_reads_credentials_candidates_per_section_and_the_end() -> None:
    fragment = parse_sdpfrag(
        "a=ice-ufrag:EsAw\r\n"
        "a=ice-pwd:P2uYro0UCOQ4zxjKXaWCBui1\r\n"
        "a=group:BUNDLE 0 1\r\n"
        "m=audio 9 RTP/AVP 0\r\n"
        "c=IN IP4 0.0.0.0\r\n"
        "a=mid:0\r\n"
        "a=candidate:1 1 udp 2130706431 192.0.2.1 5000 typ host\r\n"
        "m=video 9 RTP/AVP 0\r\n"
        "a=candidate:2 1 udp 2130706431 192.0.2.1 5002 typ host\r\n"
        "a=mid:1\r\n"
        "a=candidate:3 1 tcp 1518280447 192.0.2.1 9 typ host tcptype active\r\n"
        "a=end-of-candidates\r\n"
    )
    assert isinstance(fragment, SdpFragment)
    assert (fragment.ufrag, fragment.pwd) == ("EsAw", "P2uYro0UCOQ4zxjKXaWCBui1")
    assert fragment.candidates == (
        ("candidate:1 1 udp 2130706431 192.0.2.1 5000 typ host", "0"),
        # A new m= section forgets the previous mid until its own a=mid line.
        ("candidate:2 1 udp 2130706431 192.0.2.1 5002 typ host", None),
        ("candidate:3 1 tcp 1518280447 192.0.2.1 9 typ host tcptype active", "1"),
    )
    assert fragment.end_of_candidates


def test_parse_sdpfrag_of_bare_candidates_has_no_credentials() -> None:
    fragment = parse_sdpfrag("\n  a=candidate:1 1 udp 1 10.0.0.1 5 typ host  \n\n")
    assert fragment == SdpFragment(
        ufrag=None,
        pwd=None,
        candidates=(("candidate:1 1 udp 1 10.0.0.1 5 typ host", None),),
        end_of_candidates=False,
    )
    assert parse_sdpfrag("") == SdpFragment(None, None, (), False)


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\n", "not an SDP fragment line: 'v=0'"),
        ("a=mid:0\r\ncandidate:1 1 udp 1 10.0.0.1 5 typ host\r\n", "not an SDP fragment"),
        ("a=ice-ufrag:ab\x00cd\r\n", "malformed line"),
        ("a=candidate:" + "1" * 2100 + "\r\n", "malformed line"),
    ],
)
def test_parse_sdpfrag_rejects_what_is_no_fragment(body: str, message: str) -> None:
    with pytest.raises(BadSdpFragment, match=message) as info:
        parse_sdpfrag(body)
    # Callers that only know offers (BadSdp) or plain ValueError still catch it.
    assert isinstance(info.value, BadSdp) and isinstance(info.value, ValueError)
    assert info.value.code == MediaErrorCode.BAD_SDPFRAG == "bad_sdpfrag"
