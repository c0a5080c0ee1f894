"""Dispute bundles: a zip with the media, records, proofs, signed tree head, a signed manifest of
every member, and a verifier.

Format ``inspectd-bundle/2`` (version 1 had no manifest). Layout, and nothing else::

    items/<item_id>/<media files>          as stored (not compressed again)
    items/<item_id>/record.json            the exact leaf data of the item's "item.added" entry
    items/<item_id>/inclusion_proof.json   leaf index, tree size, leaf hash, audit path (hex)
    tree_head.json                         the signed tree head every proof refers to
    public_key.pem                         the archive's Ed25519 public key
    summary.html                           a human-readable summary (no external assets)
    README.txt                             what is in the bundle and how to check it
    verify.py                              standalone checker (stdlib + cryptography)
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

Each item gets an "item.exported" entry before the tree head is signed, so the bundle's proofs
cover its own export. Once the zip is written, and before it is published under its name, a
"bundle.exported" entry logs the bundle's name, the manifest's SHA-256 and the item ids: the
log then says which exact bundle left the archive (later tree heads cover that entry).
"""

from __future__ import annotations

import hashlib
import html
import json
import os
import secrets
import zipfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from evidence.errors import InvalidRecord
from evidence.log import LogEntry, canonical_json
from evidence.record import format_time
from evidence.signing import SignedTreeHead
from evidence.store import EvidenceArchive, ItemProof

__all__ = ["BUNDLE_VERSION", "export_bundle"]

BUNDLE_VERSION = "inspectd-bundle/2"
VERIFIER = Path(__file__).with_name("verify.py")
MANIFEST = "manifest.json"
SIGNATURE = "manifest.sig"
_RESERVED = frozenset({"record.json", "inclusion_proof.json"})
_CHUNK = 1 << 20


@dataclass(frozen=True, slots=True)
class _Part:
    proof: ItemProof
    trail: list[LogEntry]


async def export_bundle(
    archive: EvidenceArchive,
    item_ids: Sequence[str],
    *,
    actor: str,
    reason: str,
    dest_dir: Path,
) -> Path:
    """Write a dispute bundle for ``item_ids`` into ``dest_dir``; returns the zip's path.

    Each item gets an "item.exported" entry (who, why, bundle name) before the tree head is
    signed, so the bundle's proofs cover its own export; the finished bundle is logged as
    "bundle.exported" (name, manifest SHA-256, items) before it appears in ``dest_dir``.
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
    parts = [
        _Part(await archive.proof(i, sth.tree_size), await archive.log_entries(i)) for i in ids
    ]
    texts = {
        "tree_head.json": _json(sth.to_json()),
        "public_key.pem": archive.public_key_pem().encode(),
        "summary.html": _summary(parts, sth, archive.key_id, name, actor, reason).encode(),
        "README.txt": _readme(archive.key_id, sth, name).encode(),
    }
    head = {
        "version": BUNDLE_VERSION,
        "bundle": name,
        "created": created,
        "key_id": archive.key_id,
        "tree_size": sth.tree_size,
        "root_hash": sth.root_hash,
        "items": ids,
    }
    dest = Path(dest_dir) / name
    tmp = dest.with_name(name + ".part")
    manifest = await archive.run_io(_write_zip, tmp, parts, texts, head, archive.sign_manifest)
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
    parts: list[_Part],
    texts: Mapping[str, bytes],
    head: Mapping[str, Any],
    sign: Callable[[bytes], str],
) -> bytes:
    """Blocking: write the bundle to ``tmp`` (fsynced); returns the manifest's bytes."""
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


def _readme(key_id: str, sth: SignedTreeHead, name: str) -> str:
    return f"""Evidence bundle ({BUNDLE_VERSION})
===============

This archive holds evidence items (video clips, photos) with the data that proves they are
unaltered and were recorded in the merchant's append-only evidence log.

  items/<item>/...                  the media files exactly as stored
  items/<item>/record.json          the log record of the item: order, tracking number, times,
                                    grades, and the SHA-256 of every media file; for a clip of
                                    a call, also what was said while it ran (details.transcript:
                                    speaker, language, words, English translation, times), so
                                    the transcript is covered by the same proof as the media
  items/<item>/inclusion_proof.json RFC 9162 audit path from the record to the signed root
  tree_head.json                    the signed tree head (log size {sth.tree_size})
  public_key.pem                    the merchant's Ed25519 public key
  summary.html                      a readable summary
  README.txt                        this file
  verify.py                         a copy of the checker (do not rely on it, see below)
  manifest.json                     the item list and the SHA-256 and size of every member
                                    above, so nothing can be added, dropped or edited unseen
  manifest.sig                      the merchant's signature of manifest.json

The bundle holds nothing else: any other member, a member twice, or a path outside this layout
is a failure.

How to check it
---------------

1. Get the checker from the inspectd project itself: the file evidence/verify.py of the
   project's repository at the release tag the merchant names, or the verify.py the project
   publishes, after comparing its SHA-256 with the published one. Do not use the verify.py
   inside this bundle: whoever could alter the bundle could alter that copy too.
2. Get the merchant's key id from the merchant by another channel than this bundle (their
   website, a signed letter, the contract). The bundle says it was signed by key

       {key_id}

   but that is only the bundle's own claim, which a forged bundle makes too.
3. With Python 3 and the 'cryptography' package (pip install cryptography), run

       python verify.py {name} --expect-key-id <the key id the merchant gave you>

   on this zip (or the folder it was extracted to).

verify.py prints one line per check, OK or FAIL with what exactly failed (naming the member or
item), then a RESULT line. Exit status: 0 every check passed and the key is the one expected;
1 a check failed; 2 the bundle could not be read (or the checker failed); 3 every check passed
but no --expect-key-id was given, so the key was not compared with the merchant's (UNPINNED):
a bundle forged and signed with another key passes every other check.

By hand: SHA-256 each member and compare with manifest.json; the manifest signature is Ed25519
(base64 in manifest.sig) over the bytes "inspectd-bundle-manifest/1" and a newline (0x0a),
followed by manifest.json exactly as stored. SHA-256 each media file and compare with
record.json; the leaf hash is SHA-256(0x00 || record.json bytes); fold the audit path per RFC
9162 section 2.1.3.2 with SHA-256(0x01 || left || right) and compare with root_hash in
tree_head.json; verify the Ed25519 signature (base64) over the UTF-8 JSON, keys sorted, no
spaces, of key_id, root_hash, timestamp, tree_size and version from tree_head.json. The key id
is the SHA-256 of the 32-byte raw public key in public_key.pem.
"""


def _offset(value: Any) -> str:
    """Seconds from the clip's start as ``m:ss.s`` (``-0:01.5`` for words begun before it)."""
    try:
        seconds = float(value)
    except (TypeError, ValueError):
        return "—"
    sign = "-" if seconds < 0 else ""
    minutes, rest = divmod(abs(seconds), 60)
    return f"{sign}{int(minutes)}:{rest:04.1f}"


def _transcript(details: Mapping[str, Any] | None) -> str:
    """The "What was said" table of a record's ``details.transcript``; empty without one."""
    lines = (details or {}).get("transcript")
    if not isinstance(lines, list) or not lines:
        return ""
    e = html.escape
    rows = []
    for line in lines:
        if not isinstance(line, Mapping):
            continue
        name, role = str(line.get("name") or ""), str(line.get("role") or "")
        speaker = f"{name} ({role})" if name and role else name or role or "—"
        rows.append(
            f"<tr><td>{e(_offset(line.get('offset_s')))}</td><td>{e(speaker)}</td>"
            f"<td>{e(str(line.get('language') or '—'))}</td>"
            f"<td>{e(str(line.get('text') or ''))}</td>"
            f"<td>{e(str(line.get('translation') or '—'))}</td></tr>"
        )
    return (
        "<h3>What was said</h3><p>Live captions of the call while the clip ran (times from the "
        "clip's start), as kept in the item's record.</p><table><tr><th>Time</th>"
        "<th>Speaker</th><th>Language</th><th>Original words</th><th>English translation</th>"
        f"</tr>{''.join(rows)}</table>"
    )


def _summary(
    parts: list[_Part], sth: SignedTreeHead, key_id: str, name: str, actor: str, reason: str
) -> str:
    e = html.escape
    when = format_time(datetime.fromtimestamp(sth.timestamp / 1000, UTC))
    sections: list[str] = []
    for part in parts:
        item = part.proof.item
        r = item.record
        facts = [
            ("Item", item.item_id),
            ("Kind", r.kind.value),
            ("Case", r.case_id),
            ("Order", r.order_id or "—"),
            ("Tracking number", r.tracking_number or "—"),
            ("Unit", r.unit_id or "—"),
            ("SKU", r.sku or "—"),
            ("Use", r.use.value),
            ("Logistics stage", r.logistics_stage.value if r.logistics_stage else "—"),
            ("Operator", r.operator),
            ("Recorded", f"{format_time(r.started_at)} to {format_time(r.ended_at)}"),
            ("Added to the log", f"{format_time(item.added_at)} (entry {item.leaf_index})"),
            ("Grade", r.grade or "—"),
            ("Privacy notice", r.privacy_notice_version or "—"),
            ("Note", r.note or "—"),
        ]
        rows = "".join(f"<tr><th>{e(k)}</th><td>{e(str(v))}</td></tr>" for k, v in facts)
        files = "".join(
            f"<tr><td>{e(f.name)}</td><td>{f.size}</td><td><code>{f.sha256}</code></td></tr>"
            for f in item.files
        )
        trail = "".join(
            f"<tr><td>{e(format_time(datetime.fromtimestamp(t.timestamp / 1000, UTC)))}</td>"
            f"<td>{e(t.kind.value)}</td><td>{e(t.actor)}</td><td>{e(t.reason)}</td></tr>"
            for t in part.trail
        )
        grading = (
            f"<pre>{e(json.dumps(r.grading, indent=2, sort_keys=True))}</pre>"
            if r.grading
            else "<p>No grade data.</p>"
        )
        sections.append(
            f"<section><h2>Item {e(item.item_id)}</h2><table>{rows}</table>"
            f"<h3>Files</h3><table><tr><th>Name</th><th>Bytes</th><th>SHA-256</th></tr>"
            f"{files}</table><h3>Grading</h3>{grading}{_transcript(r.details)}"
            f"<h3>Custody trail</h3><table><tr><th>Time</th><th>Event</th><th>Who</th>"
            f"<th>Why</th></tr>{trail}</table></section>"
        )
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Evidence bundle {e(name)}</title>
<style>body{{font-family:sans-serif;max-width:60em;margin:2em auto}}
th{{text-align:left;padding-right:1em}}td,th{{vertical-align:top;border-bottom:1px solid #ddd}}
code,pre{{font-size:.85em;word-break:break-all;white-space:pre-wrap}}</style></head>
<body><h1>Evidence bundle</h1>
<p>Bundle <code>{e(name)}</code> ({BUNDLE_VERSION}), exported by {e(actor)} ({e(reason)}).</p>
<p>Signed tree head: log size {sth.tree_size}, root <code>{sth.root_hash}</code>, signed
{e(when)}.</p>
<p>The bundle says it was signed by key <code>{e(key_id)}</code>. That is only the bundle's
own claim: a forged bundle would name its forger's key here. Only the key id the merchant gives
you by another channel proves whose bundle this is.</p>
{"".join(sections)}
<h2>How to verify</h2>
<p>Nothing on this page is proven until the checker says so: this page is part of the bundle,
and the bundle's signed manifest covers it.</p>
<ol><li>Get the checker from the inspectd project itself: the file
<code>evidence/verify.py</code> of the project's repository at the release tag the merchant
names, or the <code>verify.py</code> the project publishes, after comparing its SHA-256 with
the published one. Do not use the <code>verify.py</code> inside this bundle: whoever could alter
the bundle could alter that copy too.</li>
<li>Get the merchant's key id from the merchant by another channel than this bundle (their
website, a signed letter, the contract).</li>
<li>Install Python 3 and <code>pip install cryptography</code>.</li>
<li>Run this, with the key id the merchant gave you in place of the placeholder:<br>
<code>python verify.py {e(name)} --expect-key-id &lt;the key id the merchant gave you&gt;</code>
</li>
<li>Every line must read OK and the last one <code>RESULT: OK</code> (exit status 0). A FAIL
line names what was altered; <code>UNPINNED</code> (exit status 3) means no key id was given,
so the bundle is not proven to be the merchant's.</li>
</ol><p>README.txt describes the checks so they can also be done by hand.</p>
</body></html>
"""
