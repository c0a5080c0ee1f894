"""Content credentials with the C2PA library's own reader: a photo and a clip signed by the
archive's key (under its local root) read back as Trusted with their evidence assertion; a
changed byte reads as Invalid; an operator certificate that does not match its key, or a
self-signed one, is refused when loaded."""

from __future__ import annotations

import io
from pathlib import Path

import av
import numpy as np
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519
from PIL import Image

from evidence.credentials import ContentCredentials, CredentialsError, read_credentials

EVIDENCE = {"case_id": "c-1", "order_id": "ORD-7", "tracking_number": "1Z999", "item_id": "it-1",
            "log_entry": 12, "operator": "Alex Agent"}  # fmt: skip


@pytest.fixture
def credentials(tmp_path: Path) -> ContentCredentials:
    return ContentCredentials.for_archive(ed25519.Ed25519PrivateKey.generate(), "ab" * 32, tmp_path)


def _jpeg() -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (320, 240), (120, 160, 200)).save(out, "JPEG", quality=85)
    return out.getvalue()


def _mp4(path: Path) -> bytes:
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=10)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        for index in range(10):
            frame = np.full((48, 64, 3), index * 20, np.uint8)
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path.read_bytes()


def test_a_photo_reads_back_trusted_with_its_evidence(credentials: ContentCredentials) -> None:
    signed = credentials.sign(_jpeg(), "image/jpeg", title="photo.jpg", evidence=EVIDENCE)
    read = read_credentials(signed, "image/jpeg", anchors=credentials.anchor_pem)
    assert read.state == "Trusted", read.failures
    assert read.evidence == EVIDENCE
    # Without the archive's root it is still intact, but not trusted.
    assert read_credentials(signed, "image/jpeg").state == "Valid"
    tampered = bytearray(signed)
    tampered[-200] ^= 0xFF
    broken = read_credentials(bytes(tampered), "image/jpeg", anchors=credentials.anchor_pem)
    assert broken.state == "Invalid" and any("mismatch" in f for f in broken.failures)


def test_a_clip_reads_back_trusted_and_still_plays(
    credentials: ContentCredentials, tmp_path: Path
) -> None:
    signed = credentials.sign(_mp4(tmp_path / "clip.mp4"), "video/mp4", title="clip.mp4",
                              evidence=EVIDENCE)  # fmt: skip
    read = read_credentials(signed, "video/mp4", anchors=credentials.anchor_pem)
    assert read.state == "Trusted" and read.evidence == EVIDENCE
    with av.open(io.BytesIO(signed)) as container:
        assert sum(1 for _ in container.decode(video=0)) == 10


def test_an_unsigned_file_has_no_credentials() -> None:
    with pytest.raises(CredentialsError, match="no content credentials"):
        read_credentials(_jpeg(), "image/jpeg")


def test_an_operator_certificate_must_match_its_key(
    credentials: ContentCredentials, tmp_path: Path
) -> None:
    other = ed25519.Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )  # fmt: skip
    with pytest.raises(CredentialsError, match="does not match the private key"):
        ContentCredentials(credentials.chain_pem, other)
    assert credentials.anchor_pem is not None
    with pytest.raises(CredentialsError, match="self-signed"):
        root_key = (tmp_path / "content_credentials_ca.key").read_bytes()
        ContentCredentials(credentials.anchor_pem, root_key)
    with pytest.raises(CredentialsError, match="cannot be read"):
        ContentCredentials(b"not a certificate", other)
    # The archive's root is made once and kept.
    again = ContentCredentials.for_archive(
        ed25519.Ed25519PrivateKey.generate(), "cd" * 32, tmp_path
    )
    assert again.anchor_pem is not None
