"""Content credentials in bundles: each photo and clip of a type C2PA signs goes in again as a
copy under ``credentials/`` carrying a manifest that the C2PA library's own reader trusts with
the bundle's anchor and that names the item's record and log entry; the originals stay as
stored; types C2PA cannot carry (WebM, JSON) and files it cannot parse are named in the
summary; the bundle still verifies, and a changed or added copy fails by name."""

from __future__ import annotations

import hashlib
import io
import json
import subprocess
import sys
import zipfile
from pathlib import Path

import av
import numpy as np
import pytest
from PIL import Image

from evidence import (
    ContentCredentials,
    EvidenceArchive,
    EvidenceItem,
    canonical_json,
    export_bundle,
    read_credentials,
)
from tests.fakes.faces import write_face_clip

from .conftest import make_files, make_record

VERIFY_SOURCE = Path(__file__).parents[2] / "evidence" / "verify.py"


def verify(target: Path, key_id: str) -> tuple[int, str]:
    done = subprocess.run(
        [sys.executable, str(VERIFY_SOURCE), str(target), "--expect-key-id", key_id],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert "Traceback" not in done.stdout + done.stderr
    return done.returncode, done.stdout + done.stderr


def fails(out: str) -> list[str]:
    return [line for line in out.splitlines() if line.startswith("FAIL")]


def write_media(directory: Path) -> list[tuple[str, Path]]:
    """A real JPEG, PNG and MP4, a WebM (C2PA has no place for a manifest in it) and JSON."""
    directory.mkdir(parents=True, exist_ok=True)
    photo, png = directory / "photo.jpg", directory / "markup.png"
    Image.new("RGB", (96, 64), (120, 160, 200)).save(photo, "JPEG", quality=85)
    Image.new("RGB", (32, 32), (200, 10, 10)).save(png, "PNG")
    clip = directory / "clip.mp4"
    with av.open(str(clip), "w") as container:
        stream = container.add_stream("libx264", rate=10)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        for index in range(10):
            frame = np.full((48, 64, 3), index * 20, np.uint8)
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    # A recorded call (VP8 and Opus in WebM): its credentialed copy is an MP4 rendition.
    webm = directory / "call.webm"
    write_face_clip(webm, seconds=1.0, size=(120, 160), face_width=60)
    strokes = directory / "strokes.json"
    strokes.write_text('{"strokes": []}')
    return [(p.name, p) for p in (photo, png, clip, webm, strokes)]


@pytest.fixture
async def items(archive: EvidenceArchive, tmp_path: Path) -> list[EvidenceItem]:
    media = await archive.add_item(
        write_media(tmp_path / "m"), make_record(kind="photo"), actor="agent-7"
    )
    # make_files' snapshot.jpg only looks like a JPEG: the library cannot parse it.
    fake = await archive.add_item(make_files(tmp_path / "f", "f"), make_record(), actor="agent-8")
    return [media, fake]


async def test_credentialed_copies_read_back_trusted_with_their_record(
    archive: EvidenceArchive, items: list[EvidenceItem], tmp_path: Path
) -> None:
    media, fake = items
    credentials = await archive.content_credentials()
    path = await export_bundle(
        archive,
        [media.item_id, fake.item_id],
        actor="reviewer",
        reason="claim 9",
        dest_dir=tmp_path / "out",
        credentials=credentials,
    )
    with zipfile.ZipFile(path) as zf:
        names = set(zf.namelist())
        manifest = json.loads(zf.read("manifest.json"))
        anchor = zf.read("credentials/trust_anchor.pem")
        record_bytes = zf.read(f"items/{media.item_id}/record.json")
        proof = json.loads(zf.read(f"items/{media.item_id}/inclusion_proof.json"))
        copies = {
            n: zf.read(f"credentials/{media.item_id}/{n}")
            for n in ("photo.jpg", "markup.png", "clip.mp4")
        }
        originals = {f.name: zf.read(f"items/{media.item_id}/{f.name}") for f in media.files}
        rendition = zf.read(f"credentials/{media.item_id}/call.mp4")
        summary = zf.read("summary.html").decode()
        readme = zf.read("README.txt").decode()
    assert anchor == credentials.anchor_pem
    credentialed = {n for n in names if n.startswith("credentials/")}
    assert credentialed == {
        "credentials/trust_anchor.pem",
        *(f"credentials/{media.item_id}/{n}" for n in copies),
        f"credentials/{media.item_id}/call.mp4",
    }
    assert credentialed <= set(manifest["members"])

    # The originals are the stored bytes; the copies are other files.
    for f in media.files:
        assert hashlib.sha256(originals[f.name]).hexdigest() == f.sha256
    mimes = {"photo.jpg": "image/jpeg", "markup.png": "image/png", "clip.mp4": "video/mp4"}
    for name, data in copies.items():
        original = media.file(name)
        assert original is not None and data != originals[name]
        read = read_credentials(data, mimes[name], anchors=anchor)
        assert read.state == "Trusted", (name, read.failures)
        assert read.evidence == {
            "item_id": media.item_id,
            "case_id": "case-1",
            "order_id": "ORD-1",
            "tracking_number": "1Z999",
            "unit_id": "UNIT-1",
            "kind": "photo",
            "captured_at": media.record.started_at.isoformat(),
            # A photo's record without details or a camera's label: the customer's phone.
            "device": {"kind": "customer phone", "via": "photo upload"},
            "operator": "agent-7",
            "log_entry": media.leaf_index,
            "leaf_hash": proof["leaf_hash"],
            "record_sha256": hashlib.sha256(record_bytes).hexdigest(),
            "file": name,
            "sha256": original.sha256,
            "key_id": archive.key_id,
            "bundle": path.name,
        }
    with av.open(io.BytesIO(copies["clip.mp4"]), "r") as container:  # still plays
        assert len(list(container.decode(video=0))) == 10

    # The recorded call's copy is an MP4 rendition, signed, naming the WebM it was made from.
    rendered = read_credentials(rendition, "video/mp4", anchors=anchor)
    assert rendered.state == "Trusted", rendered.failures
    assert rendered.evidence is not None
    assert rendered.evidence["rendition_of"] == "call.webm"
    webm = media.file("call.webm")
    assert webm is not None and rendered.evidence["sha256"] == webm.sha256
    with av.open(io.BytesIO(rendition), "r") as container:
        assert len(list(container.decode(video=0))) >= 10
    assert "an MP4 rendition" in summary
    assert "none: C2PA cannot carry a manifest in a .json file" in summary
    assert "none: the file could not be signed" in summary  # the fake snapshot.jpg
    assert f"credentials/{media.item_id}/photo.jpg" in summary
    assert "c2patool" in readme and "credentials/trust_anchor.pem" in readme

    assert [p.name for p in (tmp_path / "out").iterdir()] == [path.name]  # no scratch left

    code, out = verify(path, archive.key_id)
    assert code == 0 and fails(out) == [], out
    assert (
        f"OK: credentials/{media.item_id}/clip.mp4: a copy with content credentials, as the "
        "manifest lists it"
    ) in out


async def test_a_changed_or_added_copy_fails_by_name(
    archive: EvidenceArchive, items: list[EvidenceItem], tmp_path: Path
) -> None:
    media, fake = items
    path = await export_bundle(
        archive,
        [media.item_id],
        actor="reviewer",
        reason="claim",
        dest_dir=tmp_path / "out",
        credentials=await archive.content_credentials(),
    )
    with zipfile.ZipFile(path) as zf:
        members = {n: zf.read(n) for n in zf.namelist()}
    copy = f"credentials/{media.item_id}/photo.jpg"
    changed = dict(members)
    changed[copy] = changed[copy][:-3] + b"xyz"
    changed[f"credentials/{media.item_id}/extra.jpg"] = members[copy]
    changed[f"credentials/{fake.item_id}/photo.jpg"] = members[copy]
    tampered = tmp_path / "tampered.zip"
    with zipfile.ZipFile(tampered, "w") as zf:
        for name, data in changed.items():
            zf.writestr(name, data)
    code, out = verify(tampered, archive.key_id)
    assert code == 1
    failed = fails(out)
    assert any(f.startswith(f"FAIL: {copy}: SHA-256 is ") for f in failed), out
    assert f"FAIL: credentials/{media.item_id}/extra.jpg: not listed in the manifest" in out
    assert f"FAIL: credentials/{fake.item_id}/photo.jpg: not listed in the manifest" in out

    # Listed by a manifest that names no such item: refused as a member of no item.
    doc = json.loads(members["manifest.json"])
    doc["members"][f"credentials/{fake.item_id}/photo.jpg"] = doc["members"][copy]
    forged = dict(members)
    forged["manifest.json"] = canonical_json(doc)
    forged["manifest.sig"] = archive.sign_manifest(forged["manifest.json"]).encode() + b"\n"
    forged[f"credentials/{fake.item_id}/photo.jpg"] = members[copy]
    with zipfile.ZipFile(tampered, "w") as zf:
        for name, data in forged.items():
            zf.writestr(name, data)
    code, out = verify(tampered, archive.key_id)
    assert code == 1
    assert (
        f"FAIL: manifest.json: lists member credentials/{fake.item_id}/photo.jpg of an item it "
        "does not list"
    ) in out


async def test_an_operator_certificate_signs_without_a_bundled_anchor(
    archive: EvidenceArchive, items: list[EvidenceItem], tmp_path: Path
) -> None:
    # An operator's chain and key (here issued by another archive's root, standing in for a
    # CA): no anchor of the archive goes into the bundle.
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ed25519

    key = ed25519.Ed25519PrivateKey.generate()
    issued = ContentCredentials.for_archive(key, "ef" * 32, tmp_path / "ca")
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )  # fmt: skip
    (tmp_path / "chain.pem").write_bytes(issued.chain_pem)
    (tmp_path / "key.pem").write_bytes(pem)
    operator = ContentCredentials.from_files(tmp_path / "chain.pem", tmp_path / "key.pem")
    media = items[0]
    path = await export_bundle(
        archive, [media.item_id], actor="reviewer", reason="claim", dest_dir=tmp_path / "out",
        credentials=operator,
    )  # fmt: skip
    with zipfile.ZipFile(path) as zf:
        assert "credentials/trust_anchor.pem" not in zf.namelist()
        photo = zf.read(f"credentials/{media.item_id}/photo.jpg")
    assert issued.anchor_pem is not None
    read = read_credentials(photo, "image/jpeg", anchors=issued.anchor_pem)
    assert read.state == "Trusted" and read.evidence is not None
    assert read.evidence["item_id"] == media.item_id
    code, out = verify(path, archive.key_id)
    assert code == 0, out


async def test_without_credentials_nothing_changes(
    archive: EvidenceArchive, items: list[EvidenceItem], tmp_path: Path
) -> None:
    path = await export_bundle(
        archive, [items[0].item_id], actor="reviewer", reason="claim", dest_dir=tmp_path / "out"
    )
    with zipfile.ZipFile(path) as zf:
        assert not [n for n in zf.namelist() if n.startswith("credentials/")]
        assert "Content credentials" not in zf.read("summary.html").decode()
    assert [p.name for p in (tmp_path / "out").iterdir()] == [path.name]  # no scratch left
