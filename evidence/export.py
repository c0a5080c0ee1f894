"""Dispute bundles: a zip with the media, records, proofs, signed tree head and a verifier.

Layout::

    items/<item_id>/<media files>          as stored
    items/<item_id>/record.json            the exact leaf data of the item's "item.added" entry
    items/<item_id>/inclusion_proof.json   leaf index, tree size, leaf hash, audit path (hex)
    tree_head.json                         the signed tree head every proof refers to
    public_key.pem                         the archive's Ed25519 public key
    summary.html                           a human-readable summary (no external assets)
    verify.py                              standalone checker (stdlib + cryptography)
    README.txt                             what is in the bundle and how to check it
"""

from __future__ import annotations

import html
import json
import os
import secrets
import zipfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from evidence.errors import InvalidRecord
from evidence.log import LogEntry
from evidence.record import format_time
from evidence.signing import SignedTreeHead
from evidence.store import EvidenceArchive, ItemProof

__all__ = ["export_bundle"]

VERIFIER = Path(__file__).with_name("verify.py")


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
    signed, so the bundle's proofs cover its own export.
    """
    ids = list(dict.fromkeys(item_ids))
    if not ids:
        raise InvalidRecord("a bundle needs at least one item")
    size_now = await archive.refresh()  # other processes may have appended
    for item_id in ids:  # all exist before anything is logged
        await archive.proof(item_id, size_now)
    now = datetime.fromtimestamp(archive.log.now_ms() / 1000, UTC)
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
        "README.txt": _readme(archive.key_id, sth).encode(),
    }
    dest = Path(dest_dir) / name
    await archive.run_io(_write_zip, dest, parts, texts)
    return dest


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


def _write_zip(dest: Path, parts: list[_Part], texts: dict[str, bytes]) -> None:
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(dest.name + ".part")
    try:
        with zipfile.ZipFile(tmp, "x", compression=zipfile.ZIP_DEFLATED) as zf:
            for part in parts:
                base = f"items/{part.proof.item.item_id}"
                for f in part.proof.item.files:
                    # Media is already compressed; store it as is.
                    zf.write(part.proof.directory / f.name, f"{base}/{f.name}", zipfile.ZIP_STORED)
                zf.writestr(f"{base}/record.json", part.proof.leaf_data)
                zf.writestr(f"{base}/inclusion_proof.json", _json(_proof_json(part.proof)))
            for name, data in texts.items():
                zf.writestr(name, data)
            zf.write(VERIFIER, "verify.py")
        with tmp.open("rb") as written:
            os.fsync(written.fileno())
        os.replace(tmp, dest)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _readme(key_id: str, sth: SignedTreeHead) -> str:
    return f"""Evidence bundle
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
  verify.py                         the checker

Check it (Python 3 with the 'cryptography' package):

    pip install cryptography
    python verify.py <this zip or the extracted folder> --expect-key-id <published key id>

verify.py prints one line per check, OK or FAIL with what exactly failed, and exits non-zero
when anything fails. Compare the key id it prints with the one the merchant publishes; this
bundle was signed by key {key_id}.

By hand: SHA-256 each media file and compare with record.json; the leaf hash is
SHA-256(0x00 || record.json bytes); fold the audit path per RFC 9162 section 2.1.3.2 with
SHA-256(0x01 || left || right) and compare with root_hash in tree_head.json; verify the Ed25519
signature (base64) over the UTF-8 JSON, keys sorted, no spaces, of key_id, root_hash,
timestamp, tree_size and version from tree_head.json.
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
<p>Bundle <code>{e(name)}</code>, exported by {e(actor)} ({e(reason)}).</p>
<p>Signed tree head: log size {sth.tree_size}, root <code>{sth.root_hash}</code>, signed {e(when)}
by key <code>{key_id}</code>.</p>
{"".join(sections)}
<h2>How to verify</h2>
<ol><li>Install Python 3 and <code>pip install cryptography</code>.</li>
<li>Run <code>python verify.py {e(name)} --expect-key-id {key_id}</code>.</li>
<li>Every line must read OK; compare the printed key id with the merchant's published one.</li>
</ol><p>README.txt describes the checks so they can also be done by hand.</p>
</body></html>
"""
