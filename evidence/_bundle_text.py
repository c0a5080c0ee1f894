"""The human-readable members of a dispute bundle: ``README.txt`` (what is in it and how to
check it, by the checker or by hand) and ``summary.html`` (each item's facts, files, custody
trail, transcript, outside timestamp and content credentials; no external assets)."""

from __future__ import annotations

import html
import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from evidence.log import LogEntry
from evidence.record import ItemKind, format_time
from evidence.signing import SignedTreeHead
from evidence.stamps import StampedHead
from evidence.store import ItemProof

__all__ = ["BUNDLE_VERSION", "Copy", "Part", "readme", "summary"]

BUNDLE_VERSION = "inspectd-bundle/2"


@dataclass(frozen=True, slots=True)
class Part:
    proof: ItemProof
    trail: list[LogEntry]
    stamp: StampedHead | None  # the earliest stamped head that covers the item


@dataclass(frozen=True, slots=True)
class Copy:
    """What became of one media file's credentialed copy: where it lies, or why there is none."""

    member: str | None
    path: Path | None
    note: str


_README_TIMESTAMPS_LAYOUT = """
  timestamps/<size>.json            an earlier signed tree head (log size <size>), the RFC 3161
                                    timestamp a time-stamping authority (TSA) gave it, and the
                                    RFC 9162 consistency proof from it to tree_head.json
  timestamps/tsa_roots.pem          the TSA root certificate(s) the merchant configured"""

_README_CREDENTIALS_LAYOUT = """
  credentials/<item>/...            copies of the photos and clips carrying a C2PA manifest
                                    (content credentials); the originals are under items/
  credentials/trust_anchor.pem      the root certificate of the merchant's C2PA signer, when the
                                    archive's own key signed the copies"""

_README_TIMESTAMPS = """
Outside timestamps
------------------

The merchant's own clock is only the merchant's word. A signed tree head under timestamps/ was
also timestamped by an RFC 3161 time-stamping authority (TSA): the TSA signed, at its own time,
the SHA-256 of the tree head's signed message. Every item whose log entry that head contains
(leaf index below its size) existed by then. For each timestamps/<size>.json, the checker
checks the tree head's Ed25519 signature (the merchant's key, as tree_head.json), the consistency
proof from that head to tree_head.json (the later log only extended the stamped one), and the
RFC 3161 response against the head's signed message and the TSA's root certificate. It then
prints "OK: item <id> existed by <time> (<authority>)" for each item covered. The RFC 3161
check needs the 'rfc3161-client' package (pip install rfc3161-client).

timestamps/tsa_roots.pem is only the bundle's own copy of the TSA's root, which a forger
would replace with a root of their own: obtain the TSA's root certificate from the TSA itself
(its website or policy document), compare it with that file, or give it to the checker:

    inspectd-verify {name} --expect-key-id <the key id the merchant gave you> \\
        --tsa-roots <the TSA's root certificate, a PEM file>

By hand: decode "response" (base64) to resp.tsr, write the tree head's signed message (built
from "tree_head" as for tree_head.json) to head.msg, and run

    openssl ts -verify -data head.msg -in resp.tsr -CAfile <the TSA's root certificate>

then fold "consistency_proof" per RFC 9162 section 2.1.4.2 from that head's root to the root
in tree_head.json.
"""

_README_CREDENTIALS = """
Content credentials
-------------------

The files under credentials/ are copies of the media files carrying a C2PA manifest, signed
by the merchant (the archive's key under its own root, credentials/trust_anchor.pem, or a
certificate of the merchant's from a public CA). Its assertion "com.inspectd.evidence" names
the item, case, order, tracking number, unit, capture time, operator, log entry (leaf index and
leaf hash), the SHA-256 of record.json and of the original file, the key id and this bundle,
so a single copy can be checked without the bundle by any C2PA tool, for example

    c2patool <copy> trust --trust_anchors credentials/trust_anchor.pem

or the c2pa Python library's Reader with that anchor in its trust settings: it must say
"Trusted". As with the key id, obtain the anchor from the merchant, not only from this bundle.
The checker only checks that each copy is listed in the signed manifest with its SHA-256; the
C2PA manifest inside it is for the C2PA tools. A copy's bytes differ from the original's (the
manifest is embedded), so the SHA-256 in record.json is that of the file under items/.
"""


def readme(
    key_id: str, sth: SignedTreeHead, name: str, *, stamped: bool, credentialed: bool
) -> str:
    """README.txt; ``stamped``/``credentialed``: the bundle holds timestamps/credentials."""
    layout = (_README_TIMESTAMPS_LAYOUT if stamped else "") + (
        _README_CREDENTIALS_LAYOUT if credentialed else ""
    )
    sections = (_README_TIMESTAMPS.format(name=name) if stamped else "") + (
        _README_CREDENTIALS if credentialed else ""
    )
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
  items/<item>/inclusion_proof.json RFC 9162 audit path from the record to the signed root{layout}
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

1. Get the checker from the inspectd project itself: installing the project from its
   repository (pip install ./inspectd in a clone) gives the command inspectd-verify; or take
   the single file evidence/verify.py from the project's repository.
   inspectd-verify --self-hash prints the SHA-256 of the checker it runs, and a verify.py
   whose SHA-256 (sha256sum verify.py) is the same is the same checker.
   Do not use the verify.py inside this bundle: whoever could alter the bundle could alter that
   copy too.
2. Get the merchant's key id from the merchant by another channel than this bundle (their
   website, a signed letter, the contract). The bundle says it was signed by key

       {key_id}

   but that is only the bundle's own claim, which a forged bundle makes too.
3. Run

       inspectd-verify {name} --expect-key-id <the key id the merchant gave you>

   on this zip (or the folder it was extracted to); with the single file, run it as
   python verify.py and the same arguments (it needs Python 3 and the 'cryptography'
   package: pip install cryptography).

The checker prints one line per check, OK or FAIL with what exactly failed (naming the member or
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
{sections}"""


def _offset(value: Any) -> str:
    """Seconds from the clip's start as ``m:ss.s`` (``-0:01.5`` for words begun before it)."""
    try:
        seconds = float(value)
    except (TypeError, ValueError):
        return "—"
    sign = "-" if seconds < 0 else ""
    minutes, rest = divmod(abs(seconds), 60)
    return f"{sign}{int(minutes)}:{rest:04.1f}"


def _gaps_text(details: Mapping[str, Any] | None) -> str:
    """A clip record's ``details.gaps`` in words: ``video-1.webm video 2.1-4.3 s (no frames)``
    per gap, ``none``, or ``—`` for a record from before gaps were recorded."""
    gaps = (details or {}).get("gaps")
    if not isinstance(gaps, list):
        return "—"
    words = []
    for gap in gaps:
        if not isinstance(gap, Mapping):
            continue
        try:
            span = f"{float(gap['start_s']):.1f}-{float(gap['end_s']):.1f} s"
        except (KeyError, TypeError, ValueError):
            continue
        where = " ".join(str(gap[k]) for k in ("file", "kind") if gap.get(k))
        words.append(f"{where} {span} ({gap.get('reason') or 'gap'})".strip())
    return "; ".join(words) or "none"


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


def _existed_by(stamp: StampedHead | None) -> str:
    if stamp is None:
        return "— (no RFC 3161 timestamp covers its log entry yet)"
    return (
        f"existed by {format_time(stamp.gen_time)} ({stamp.authority or 'unnamed authority'}, "
        f"RFC 3161; stamped tree head of size {stamp.tree_size})"
    )


def _summary_extras(parts: list[Part], copies: Mapping[tuple[str, str], Copy]) -> str:
    """What the summary says of the timestamps and credentialed copies the bundle holds."""
    out = []
    if any(p.stamp is not None for p in parts):
        out.append(
            "<p>Outside timestamps: an RFC 3161 time-stamping authority timestamped the signed "
            "tree heads in <code>timestamps/</code>, so an item under one existed by the "
            "authority's time, whatever the merchant's clock says. The checker verifies them "
            "against the authority's root certificate, which you should obtain from the "
            "authority itself (README.txt).</p>"
        )
    if any(c.member for c in copies.values()):
        out.append(
            "<p>Content credentials: <code>credentials/</code> holds copies of the photos and "
            "clips carrying a C2PA manifest that names the item, case, capture time and log "
            "entry, so that a C2PA tool checks a single file without this bundle (README.txt). "
            "The originals are those under <code>items/</code>.</p>"
        )
    return "\n".join(out)


def summary(
    parts: list[Part],
    copies: Mapping[tuple[str, str], Copy],
    sth: SignedTreeHead,
    key_id: str,
    name: str,
    actor: str,
    reason: str,
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
            *([("Gaps", _gaps_text(r.details))] if r.kind is ItemKind.CLIP else []),
            ("Added to the log", f"{format_time(item.added_at)} (entry {item.leaf_index})"),
            ("Outside timestamp", _existed_by(part.stamp)),
            ("Grade", r.grade or "—"),
            ("Privacy notice", r.privacy_notice_version or "—"),
            ("Note", r.note or "—"),
        ]
        rows = "".join(f"<tr><th>{e(k)}</th><td>{e(str(v))}</td></tr>" for k, v in facts)
        credentials_column = "<th>Content credentials (C2PA)</th>" if copies else ""
        files = "".join(
            f"<tr><td>{e(f.name)}</td><td>{f.size}</td><td><code>{f.sha256}</code></td>"
            + (f"<td>{e(copies[(item.item_id, f.name)].note)}</td>" if copies else "")
            + "</tr>"
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
            f"<h3>Files</h3><table><tr><th>Name</th><th>Bytes</th><th>SHA-256</th>"
            f"{credentials_column}</tr>"
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
{_summary_extras(parts, copies)}
{"".join(sections)}
<h2>How to verify</h2>
<p>Nothing on this page is proven until the checker says so: this page is part of the bundle,
and the bundle's signed manifest covers it.</p>
<ol><li>Get the checker from the inspectd project itself: installing the project from its
repository (<code>pip install ./inspectd</code> in a clone) gives the command
<code>inspectd-verify</code>; or take the single file
<code>evidence/verify.py</code> from the project's repository.
<code>inspectd-verify --self-hash</code> prints the SHA-256 of the checker it runs, and a
<code>verify.py</code> whose SHA-256 is the same is the same checker. Do not use the
<code>verify.py</code> inside this bundle: whoever could alter the bundle could alter that copy
too.</li>
<li>Get the merchant's key id from the merchant by another channel than this bundle (their
website, a signed letter, the contract).</li>
<li>Run this, with the key id the merchant gave you in place of the placeholder:<br>
<code>inspectd-verify {e(name)} --expect-key-id &lt;the key id the merchant gave you&gt;</code>
<br>(with the single file: <code>python verify.py</code> and the same arguments, after
<code>pip install cryptography</code>).</li>
<li>Every line must read OK and the last one <code>RESULT: OK</code> (exit status 0). A FAIL
line names what was altered; <code>UNPINNED</code> (exit status 3) means no key id was given,
so the bundle is not proven to be the merchant's.</li>
</ol><p>README.txt describes the checks so they can also be done by hand.</p>
</body></html>
"""
