"""Content credentials with the C2PA library's own reader: a photo and a clip signed by the
archive's key (under its local root) read back as Trusted with their evidence assertion; a
changed byte reads as Invalid; an operator certificate that does not match its key, or a
self-signed one, is refused when loaded. Exported copies name their case, capture time, log
entry and capture device (a station's camera, or the customer's phone with its EXIF make and
model)."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import av
import numpy as np
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519
from PIL import Image

from evidence import EvidenceArchive, export_bundle
from evidence.credentials import ContentCredentials, CredentialsError, read_credentials

from .conftest import make_record

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


def _phone_photo(path: Path) -> Path:
    """A JPEG as a phone takes it: its EXIF names the camera's make and model."""
    exif = Image.Exif()
    exif[0x010F], exif[0x0110] = "Google", "Pixel 8"
    Image.new("RGB", (96, 64), (90, 120, 60)).save(path, "JPEG", quality=85, exif=exif)
    return path


async def test_exported_copies_name_their_capture_device(
    archive: EvidenceArchive, tmp_path: Path
) -> None:
    _mp4(tmp_path / "clip.mp4")
    Image.new("RGB", (32, 32), (10, 20, 30)).save(tmp_path / "frame.jpg", "JPEG")
    station = await archive.add_item(
        [("clip.mp4", tmp_path / "clip.mp4")],
        make_record(
            case_id="site:s-1",
            use="packing",
            operator="station:cam-9",
            note="Site Depot (East) (s-1) · camera Dock 2 (cam-9) · packing station · tracking "
            "number 1Z999 read at the packing station",
        ),
        actor="station:cam-9",
    )
    phone = await archive.add_item(
        [("photo.jpg", _phone_photo(tmp_path / "photo.jpg"))],
        make_record(kind="photo", details={"source": "camera", "method": "take_photo"}),
        actor="customer:case-1",
    )
    call = await archive.add_item(
        [("frame.jpg", tmp_path / "frame.jpg")],
        make_record(kind="snapshot", note="frozen in the call for markup"),
        actor="agent-7",
    )
    credentials = await archive.content_credentials()
    path = await export_bundle(
        archive, [station.item_id, phone.item_id, call.item_id], actor="reviewer",
        reason="claim", dest_dir=tmp_path / "out", credentials=credentials,
    )  # fmt: skip
    with zipfile.ZipFile(path) as zf:
        read = {
            item.item_id: read_credentials(
                zf.read(f"credentials/{item.item_id}/{name}"), mime, anchors=credentials.anchor_pem
            )
            for item, name, mime in (
                (station, "clip.mp4", "video/mp4"),
                (phone, "photo.jpg", "image/jpeg"),
                (call, "frame.jpg", "image/jpeg"),
            )
        }
    for item in (station, phone, call):
        got = read[item.item_id]
        assert got.state == "Trusted", got.failures
        assert got.evidence is not None
        assert got.evidence["case_id"] == item.record.case_id
        assert got.evidence["captured_at"] == item.record.started_at.isoformat()
        assert got.evidence["log_entry"] == item.leaf_index
    devices = {item_id: got.evidence["device"] for item_id, got in read.items() if got.evidence}
    assert devices[station.item_id] == {
        "kind": "station camera",
        "camera_id": "cam-9",
        "camera": "Dock 2",
        "site_id": "s-1",
        "site": "Depot (East)",
        "station": "packing",
    }
    assert devices[phone.item_id] == {
        "kind": "customer phone",
        "via": "photo upload",
        "source": "camera",
        "method": "take_photo",
        "exif_make": "Google",
        "exif_model": "Pixel 8",
    }
    assert devices[call.item_id] == {"kind": "customer phone", "via": "video call (WebRTC)"}
