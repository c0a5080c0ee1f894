"""Dispute bundles: a zip with the media, records, proofs, signed tree head, a signed manifest of
every member, and a verifier.

Format ``inspectd-bundle/2`` (version 1 had no manifest). Layout, and nothing else::

    items/<item_id>/<media files>          as stored (not compressed again)
    items/<item_id>/record.json            the exact leaf data of the item's "item.added" entry
    items/<item_id>/inclusion_proof.json   leaf index, tree size, leaf hash, audit path (hex)
    timestamps/<tree_size>.json            a stamped tree head covering some of the items: its
                                           RFC 3161 response and a consistency proof from it
                                           to tree_head.json (only when one covers an item)
    timestamps/tsa_roots.pem               the authorities' root certificates (with the above)
    credentials/<item_id>/<media file>     a copy carrying a C2PA manifest (with credentials)
    credentials/trust_anchor.pem           the archive's local C2PA root (with its credentials)
    tree_head.json                         the signed tree head every proof refers to
    public_key.pem                         the archive's Ed25519 public key
    summary.html                           a human-readable summary (no external assets)
    README.txt                             what is in the bundle and how to check it
    verify.py                              standalone checker (stdlib + cryptography; and
                                           rfc3161-client for bundles with timestamps)
    manifest.json                          what the bundle holds (below), canonical JSON
    manifest.sig                           base64 Ed25519 signature of the manifest

``manifest.json`` is the canonical JSON (UTF-8, keys sorted, no whitespace) of::

    {"bundle": "<file name>", "created": <ms>, "items": ["<item_id>", ...],
     "key_id": "<hex>", "members": {"<member>": {"sha256": "<hex>", "size": <bytes>}, ...},
     "root_hash": "<hex>", "tree_size": <n>, "version": "inspectd-bundle/2"}

``members`` lists every member but ``manifest.json`` and ``manifest.sig``, so a summary or
README edited, a member added, dropped or doubled, or an item left out is named by the
verifier; ``tree_size`` and ``root_hash`` are those of ``tree_head.json``. ``manifest.sig`` is
the archive key's signature of ``b"inspectd-bundle-manifest/1\n"`` followed by the manifest's
bytes (``evidence.signing``).

An item is covered by the earliest stamped tree head (``evidence.stamps``) whose size is larger
than the item's leaf index: the authority's time says the item existed by then. The media files
under ``items/`` are always the stored bytes; a credentialed copy is a new file (its hash is in
the manifest, not in the record), for C2PA tools that check one file without the bundle.

Each item gets an "item.exported" entry before the tree head is signed, so the bundle's proofs
cover its own export. Once the zip is written, and before it is published under its name, a
"bundle.exported" entry logs the bundle's name, the manifest's SHA-256 and the item ids: the
log then says which exact bundle left the archive (later tree heads cover that entry).
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import os
import re
import secrets
import shutil
import warnings
import zipfile
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import av
from cryptography.hazmat.primitives import hashes, serialization
from PIL import Image

from evidence._bundle_text import BUNDLE_VERSION, Copy, Part, readme, summary
from evidence._rendition import RENDERED, mp4_rendition
from evidence.credentials import MIME_TYPES, ContentCredentials, CredentialsError
from evidence.errors import InvalidRecord
from evidence.log import canonical_json
from evidence.record import EvidenceFile, EvidenceRecord, ItemKind, format_time
from evidence.signing import SignedTreeHead
from evidence.stamps import StampedHead
from evidence.store import EvidenceArchive, ItemProof
from evidence.timestamp import load_certificates

__all__ = ["BUNDLE_VERSION", "TIMESTAMP_VERSION", "export_bundle"]

logger = logging.getLogger(__name__)

TIMESTAMP_VERSION = "inspectd-timestamp/1"
VERIFIER = Path(__file__).with_name("verify.py")
MANIFEST = "manifest.json"
SIGNATURE = "manifest.sig"
TSA_ROOTS = "timestamps/tsa_roots.pem"
TRUST_ANCHOR = "credentials/trust_anchor.pem"
_RESERVED = frozenset({"record.json", "inclusion_proof.json"})
_CHUNK = 1 << 20
#: The label a site camera's or a station's capture puts in its record's note (server/http/
#: capture.py, server/sites/stations.py): "Site <name> (<id>) · camera <name> (<id>)", then
#: " · <stage> station" for a station. A redacted copy's note has it after its own words.
_CAMERA_LABEL = re.compile(
    r"Site (?P<site>.+?) \((?P<site_id>[^()]+)\) · camera (?P<camera>.+?) "
    r"\((?P<camera_id>[^()]+)\)(?: · (?P<station>[a-z_]+) station\b)?"
)
#: The EXIF tags (IFD0) that name the camera of a photo: Make, Model.
_EXIF_DEVICE = {"exif_make": 0x010F, "exif_model": 0x0110}
_EXIF_SUFFIXES = frozenset({".jpg", ".jpeg", ".png"})


async def export_bundle(
    archive: EvidenceArchive,
    item_ids: Sequence[str],
    *,
    actor: str,
    reason: str,
    dest_dir: Path,
    credentials: ContentCredentials | None = None,
) -> Path:
    """Write a dispute bundle for ``item_ids`` into ``dest_dir``; returns the zip's path.

    Each item gets an "item.exported" entry (who, why, bundle name) before the tree head is
    signed, so the bundle's proofs cover its own export; the finished bundle is logged as
    "bundle.exported" (name, manifest SHA-256, items) before it appears in ``dest_dir``.
    The stamped heads that cover the items go in with their consistency proofs. With
    ``credentials``, every media file of a type C2PA signs also goes in as a credentialed copy.
    """
    ids = list(dict.fromkeys(item_ids))
    if not ids:
        raise InvalidRecord("a bundle needs at least one item")
    size_now = await archive.refresh()  # other processes may have appended
    for item_id in ids:  # all exist and fit the layout before anything is logged
        _check_layout(await archive.proof(item_id, size_now))
    created = archive.log.now_ms()
    now = datetime.fromtimestamp(created / 1000, UTC)
    name = f"evidence-{now:%Y%m%dT%H%M%SZ}-{secrets.token_hex(4)}.zip"
    for item_id in ids:
        await archive.record_export(item_id, actor=actor, reason=reason, bundle=name)
    sth = archive.tree_head()
    proofs = [await archive.proof(i, sth.tree_size) for i in ids]
    stamps = await archive.stamps_covering([p.item.leaf_index for p in proofs], sth.tree_size)
    parts = [
        Part(p, await archive.log_entries(p.item.item_id), stamps.get(p.item.leaf_index))
        for p in proofs
    ]
    dest = Path(dest_dir) / name
    tmp = dest.with_name(name + ".part")
    scratch = dest.with_name(name + ".credentials")  # the signed copies, until zipped
    try:
        copies: dict[tuple[str, str], Copy] = {}
        if credentials is not None:
            copies = await archive.run_io(
                _credentialed_copies, parts, credentials, scratch, name, archive.key_id
            )
        signed = any(c.member for c in copies.values())
        texts = {
            "tree_head.json": _json(sth.to_json()),
            "public_key.pem": archive.public_key_pem().encode(),
            "summary.html": summary(
                parts, copies, sth, archive.key_id, name, actor, reason
            ).encode(),
            "README.txt": readme(
                archive.key_id, sth, name, stamped=bool(stamps), credentialed=signed
            ).encode(),
            **_timestamps(archive, stamps.values(), sth),
        }
        if credentials is not None and credentials.anchor_pem is not None and signed:
            texts[TRUST_ANCHOR] = credentials.anchor_pem
        head = {
            "version": BUNDLE_VERSION,
            "bundle": name,
            "created": created,
            "key_id": archive.key_id,
            "tree_size": sth.tree_size,
            "root_hash": sth.root_hash,
            "items": ids,
        }
        extra = [(c.member, c.path) for c in copies.values() if c.member and c.path]
        manifest = await archive.run_io(
            _write_zip, tmp, parts, extra, texts, head, archive.sign_manifest
        )
    finally:
        await archive.run_io(shutil.rmtree, scratch, True)
    try:
        await archive.record_bundle(
            name,
            manifest_sha256=hashlib.sha256(manifest).hexdigest(),
            item_ids=ids,
            tree_size=sth.tree_size,
            actor=actor,
            reason=reason,
        )
        await archive.run_io(os.replace, tmp, dest)
    except BaseException:
        tmp.unlink(missing_ok=True)  # one system call, on the failure path only
        raise
    return dest


def _timestamps(
    archive: EvidenceArchive, stamps: Iterable[StampedHead], sth: SignedTreeHead
) -> dict[str, bytes]:
    """``timestamps/<tree_size>.json`` for each stamped head, each with its consistency proof
    to ``sth``, and the authorities' roots they were checked against."""
    members: dict[str, bytes] = {}
    roots: dict[bytes, bytes] = {}
    for stamp in sorted({s.tree_size: s for s in stamps}.values(), key=lambda s: s.tree_size):
        proof = archive.consistency_proof(stamp.tree_size, sth.tree_size)
        members[f"timestamps/{stamp.tree_size}.json"] = _json(
            {
                "version": TIMESTAMP_VERSION,
                "tree_head": stamp.tree_head.to_json(),
                "response": base64.b64encode(stamp.response).decode(),
                "gen_time": format_time(stamp.gen_time),
                "authority": stamp.authority,
                "to_tree_size": sth.tree_size,
                "consistency_proof": [h.hex() for h in proof],
                "algorithm": "RFC 3161 timestamp of the tree head's signed message; RFC 9162 "
                "section 2.1.4 consistency proof (SHA-256) to tree_head.json",
            }
        )
        for root in load_certificates(stamp.roots_pem):
            roots[root.fingerprint(hashes.SHA256())] = root.public_bytes(serialization.Encoding.PEM)
    if members:
        members[TSA_ROOTS] = b"".join(roots.values())
    return members


def _exif_device(path: Path) -> dict[str, str]:
    """Blocking: the camera make and model a photo's own EXIF names; empty without them, or
    when the file cannot be read as an image."""
    if path.suffix.lower() not in _EXIF_SUFFIXES:
        return {}
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # damaged EXIF: Pillow warns, and nothing is named
            with Image.open(path) as image:
                exif = image.getexif()
    except Exception:  # not an image Pillow reads: the file still gets its manifest
        return {}
    found = {}
    for key, tag in _EXIF_DEVICE.items():
        value = exif.get(tag)
        if isinstance(value, bytes):
            value = value.decode("utf-8", "replace")
        if isinstance(value, str):
            text = " ".join(value.replace("\x00", " ").split())[:100]
            if text:
                found[key] = text
    return found


def _device(record: EvidenceRecord, source: Path) -> dict[str, Any]:
    """Blocking: what captured the file, as far as its record says: a site's camera or a
    station (its label in the note), or the customer's phone in the case's call or sending a
    photo (from the camera or the gallery, as ``details`` says), with the make and model the
    photo's own EXIF names."""
    label = _CAMERA_LABEL.search(record.note)
    device: dict[str, Any]
    if label is not None:
        device = {
            "kind": "station camera" if label["station"] else "site camera",
            "camera_id": label["camera_id"],
            "camera": label["camera"],
            "site_id": label["site_id"],
            "site": label["site"],
        }
        if label["station"]:
            device["station"] = label["station"]
    elif record.case_id.startswith("site:"):  # site evidence without its camera's label
        device = {"kind": "site camera", "site_id": record.case_id.removeprefix("site:")}
    elif record.kind is ItemKind.PHOTO:
        details = record.details or {}
        device = {"kind": "customer phone", "via": "photo upload"}
        for key in ("source", "method"):
            if isinstance(details.get(key), str):
                device[key] = details[key]
    else:
        # A clip, snapshot, frozen or marked-up frame of the case's call: the video the server
        # received from the call (the customer's phone), not a screenshot of a page.
        device = {"kind": "customer phone", "via": "video call (WebRTC)"}
    return {**device, **_exif_device(source)}


def _assertion(part: Part, file: EvidenceFile, key_id: str, bundle: str) -> dict[str, Any]:
    """Blocking (it reads the file's EXIF): the evidence assertion of a credentialed copy: what
    the file is evidence of, what captured it, and where its record is in the log."""
    proof = part.proof
    item, record = proof.item, proof.item.record
    return {
        "item_id": item.item_id,
        "case_id": record.case_id,
        "order_id": record.order_id,
        "tracking_number": record.tracking_number,
        "unit_id": record.unit_id,
        "kind": record.kind.value,
        "captured_at": format_time(record.started_at),
        "device": _device(record, proof.directory / file.name),
        "operator": record.operator,
        "log_entry": item.leaf_index,
        "leaf_hash": proof.leaf_hash.hex(),
        "record_sha256": hashlib.sha256(proof.leaf_data).hexdigest(),
        "file": file.name,
        "sha256": file.sha256,
        "key_id": key_id,
        "bundle": bundle,
    }


def _credentialed_copies(
    parts: list[Part],
    credentials: ContentCredentials,
    scratch: Path,
    bundle: str,
    key_id: str,
) -> dict[tuple[str, str], Copy]:
    """Blocking: sign a copy of every media file C2PA can carry a manifest in, into
    ``scratch``; the others, and any the library refuses, get the reason instead."""
    copies: dict[tuple[str, str], Copy] = {}
    for part in parts:
        item = part.proof.item
        for file in item.files:
            suffix = Path(file.name).suffix.lower()
            if suffix in RENDERED:
                copies[(item.item_id, file.name)] = _rendered_copy(
                    part, file, credentials, scratch, bundle, key_id
                )
                continue
            mime = MIME_TYPES.get(suffix)
            if mime is None:
                why = f"none: C2PA cannot carry a manifest in a {suffix or 'suffix-less'} file"
                copies[(item.item_id, file.name)] = Copy(None, None, why)
                continue
            dest = scratch / item.item_id / file.name
            dest.parent.mkdir(parents=True, exist_ok=True)
            try:
                credentials.sign_file(
                    part.proof.directory / file.name,
                    dest,
                    mime,
                    title=file.name,
                    evidence=_assertion(part, file, key_id, bundle),
                    captured_at=item.record.started_at,
                )
            except CredentialsError as exc:
                logger.warning(
                    "no content credentials for %s: %s", file.name, exc,
                    extra={"item_id": item.item_id},
                )  # fmt: skip
                copies[(item.item_id, file.name)] = Copy(None, None, f"none: {exc}")
                continue
            member = f"credentials/{item.item_id}/{file.name}"
            copies[(item.item_id, file.name)] = Copy(member, dest, member)
    return copies


def _rendered_copy(
    part: Part,
    file: Any,
    credentials: ContentCredentials,
    scratch: Path,
    bundle: str,
    key_id: str,
) -> Copy:
    """Blocking: a recorded clip (WebM, Matroska) as a signed MP4 rendition, its assertion
    naming the original file and its SHA-256."""
    item = part.proof.item
    name = f"{Path(file.name).stem}.mp4"
    dest = scratch / item.item_id / name
    dest.parent.mkdir(parents=True, exist_ok=True)
    rendered = dest.with_name(f"{name}.rendition")
    evidence = {
        **_assertion(part, file, key_id, bundle),
        "rendition_of": file.name,
        "rendition": "MP4 (H.264 copied or re-encoded from VP8/VP9, sound to AAC)",
    }
    try:
        mp4_rendition(part.proof.directory / file.name, rendered)
        credentials.sign_file(
            rendered, dest, "video/mp4", title=name, evidence=evidence,
            captured_at=item.record.started_at,
        )  # fmt: skip
    except (CredentialsError, ValueError, av.FFmpegError) as exc:
        logger.warning(
            "no content credentials for %s: %s", file.name, exc, extra={"item_id": item.item_id}
        )
        return Copy(None, None, f"none: {exc}")
    finally:
        rendered.unlink(missing_ok=True)
    member = f"credentials/{item.item_id}/{name}"
    return Copy(member, dest, f"{member} (an MP4 rendition: C2PA does not sign {file.name})")


def _check_layout(proof: ItemProof) -> None:
    """A media file named like the item's record or proof would make a duplicate member."""
    for f in proof.item.files:
        if f.name in _RESERVED:
            raise InvalidRecord(
                f"item {proof.item.item_id} has a file named {f.name!r}, which the bundle "
                "layout reserves",
                item_id=proof.item.item_id,
            )


def _json(value: Any) -> bytes:
    return json.dumps(value, indent=2, sort_keys=True, ensure_ascii=False).encode() + b"\n"


def _proof_json(p: ItemProof) -> dict[str, Any]:
    return {
        "item_id": p.item.item_id,
        "leaf_index": p.item.leaf_index,
        "tree_size": p.tree_size,
        "leaf_hash": p.leaf_hash.hex(),
        "audit_path": [h.hex() for h in p.audit_path],
        "algorithm": "RFC 9162 section 2.1.3 (SHA-256)",
    }


def _digest(data: bytes) -> dict[str, Any]:
    return {"sha256": hashlib.sha256(data).hexdigest(), "size": len(data)}


def _copy_stored(zf: zipfile.ZipFile, src: Path, member: str) -> dict[str, Any]:
    """Copy a media file into the zip uncompressed (it is compressed already), hashing the
    bytes that go in: the manifest describes the zip, whatever the record says."""
    info = zipfile.ZipInfo.from_file(src, member)
    info.compress_type = zipfile.ZIP_STORED
    digest = hashlib.sha256()
    size = 0
    with src.open("rb") as fin, zf.open(info, "w") as fout:
        while chunk := fin.read(_CHUNK):
            digest.update(chunk)
            fout.write(chunk)
            size += len(chunk)
    return {"sha256": digest.hexdigest(), "size": size}


def _write_zip(
    tmp: Path,
    parts: list[Part],
    copies: list[tuple[str, Path]],
    texts: Mapping[str, bytes],
    head: Mapping[str, Any],
    sign: Callable[[bytes], str],
) -> bytes:
    """Blocking: write the bundle to ``tmp`` (fsynced); returns the manifest's bytes.
    ``copies``: (member, path) of the credentialed copies."""
    tmp.parent.mkdir(parents=True, exist_ok=True)
    members: dict[str, dict[str, Any]] = {}
    try:
        with zipfile.ZipFile(tmp, "x", compression=zipfile.ZIP_DEFLATED) as zf:

            def put(member: str, data: bytes) -> None:
                zf.writestr(member, data)
                members[member] = _digest(data)

            for part in parts:
                base = f"items/{part.proof.item.item_id}"
                for f in part.proof.item.files:
                    member = f"{base}/{f.name}"
                    members[member] = _copy_stored(zf, part.proof.directory / f.name, member)
                put(f"{base}/record.json", part.proof.leaf_data)
                put(f"{base}/inclusion_proof.json", _json(_proof_json(part.proof)))
            for member, path in copies:
                members[member] = _copy_stored(zf, path, member)
            for member, data in texts.items():
                put(member, data)
            put("verify.py", VERIFIER.read_bytes())
            manifest = canonical_json({**head, "members": members})
            zf.writestr(MANIFEST, manifest)
            zf.writestr(SIGNATURE, sign(manifest).encode() + b"\n")
        with tmp.open("rb") as written:
            os.fsync(written.fileno())
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return manifest
