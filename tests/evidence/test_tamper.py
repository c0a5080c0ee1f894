"""Tampered copies of a real dispute bundle: each one fails ``verify.py`` with a FAIL line that
names what was changed, exits non-zero, and never ends in a traceback.

Every case starts from a bundle exported by a real archive and changes one thing the way an
outside reviewer (or a damaged download) would: members added, doubled, dropped or renamed,
bytes flipped inside the zip, documents rewritten, the manifest or its signature removed, and
a whole forgery signed with another key.
"""

from __future__ import annotations

import base64
import hashlib
import json
import stat
import struct
import subprocess
import sys
import warnings
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from evidence import (
    EntryKind,
    EvidenceArchive,
    EvidenceItem,
    SigningKey,
    canonical_json,
    export_bundle,
    load_public_key,
    verify_manifest,
)
from evidence import verify as checker

from .conftest import make_files, make_record

VERIFY_SOURCE = Path(__file__).parents[2] / "evidence" / "verify.py"


@dataclass
class Exported:
    path: Path
    a: EvidenceItem  # a clip and a snapshot
    b: EvidenceItem  # a clip only
    archive: EvidenceArchive

    @property
    def key_id(self) -> str:
        return self.archive.key_id


@dataclass
class Outcome:
    code: int
    out: str

    @property
    def fails(self) -> list[str]:
        return [line for line in self.out.splitlines() if line.startswith("FAIL")]

    def failed(self, prefix: str) -> str:
        """The FAIL line that starts with ``FAIL: <prefix>`` (exactly one)."""
        found = [f for f in self.fails if f.startswith(f"FAIL: {prefix}")]
        assert len(found) == 1, f"{len(found)} FAIL lines start with {prefix!r} in:\n{self.out}"
        return found[0]


def verify(target: Path, *args: str) -> Outcome:
    """The project's own verify.py (never a copy inside the bundle) on ``target``."""
    done = subprocess.run(
        [sys.executable, str(VERIFY_SOURCE), str(target), *args],
        capture_output=True,
        text=True,
        timeout=60,
    )
    outcome = Outcome(done.returncode, done.stdout + done.stderr)
    assert "Traceback" not in outcome.out, outcome.out
    return outcome


def run_inside(folder: Path) -> Outcome:
    """The copy of verify.py inside an extracted bundle, run on its own folder."""
    done = subprocess.run(
        [sys.executable, str(folder / "verify.py")], capture_output=True, text=True, timeout=60
    )
    return Outcome(done.returncode, done.stdout + done.stderr)


def pinned(e: Exported, target: Path) -> Outcome:
    return verify(target, "--expect-key-id", e.key_id)


@pytest.fixture
async def exported(archive: EvidenceArchive, tmp_path: Path) -> Exported:
    a = await archive.add_item(make_files(tmp_path / "a", "a"), make_record(), actor="agent-7")
    b = await archive.add_item(
        make_files(tmp_path / "b", "b", snapshot=False),
        make_record(logistics_stage="last_mile"),
        actor="agent-8",
    )
    await archive.get(a.item_id, actor="reviewer", reason="prepare claim")
    path = await export_bundle(
        archive, [a.item_id, b.item_id], actor="reviewer", reason="claim 9", dest_dir=tmp_path
    )
    return Exported(path, a, b, archive)


# -- rewriting a bundle ---------------------------------------------------------------------


@dataclass
class Member:
    name: str
    data: bytes
    compress_type: int = zipfile.ZIP_DEFLATED
    external_attr: int = (stat.S_IFREG | 0o644) << 16


def members_of(path: Path) -> list[Member]:
    with zipfile.ZipFile(path) as zf:
        return [
            Member(i.filename, zf.read(i), i.compress_type, i.external_attr) for i in zf.infolist()
        ]


def write_zip(path: Path, members: list[Member]) -> Path:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # zipfile warns of the duplicate names made on purpose
        with zipfile.ZipFile(path, "w") as zf:
            for m in members:
                info = zipfile.ZipInfo(m.name, (2025, 3, 1, 10, 0, 0))
                info.compress_type = m.compress_type
                info.external_attr = m.external_attr
                zf.writestr(info, m.data)
    return path


def rewritten(e: Exported, change: Callable[[list[Member]], list[Member] | None]) -> Path:
    members = members_of(e.path)
    result = change(members)
    return write_zip(e.path.with_name("tampered.zip"), members if result is None else result)


def member(members: list[Member], name: str) -> Member:
    [found] = [m for m in members if m.name == name]
    return found


def edit_json(members: list[Member], name: str, change: Callable[[dict[str, Any]], None]) -> None:
    m = member(members, name)
    doc = json.loads(m.data)
    change(doc)
    m.data = json.dumps(doc, indent=2).encode()


def resign(members: list[Member], key: SigningKey | EvidenceArchive) -> None:
    """Recompute the manifest over the members as they are now and sign it with ``key``, as
    the holder of that key could (the merchant, or a forger with a key of their own)."""
    manifest = json.loads(member(members, "manifest.json").data)
    manifest["members"] = {
        m.name: {"sha256": hashlib.sha256(m.data).hexdigest(), "size": len(m.data)}
        for m in members
        if m.name not in ("manifest.json", "manifest.sig")
    }
    if isinstance(key, SigningKey):
        manifest["key_id"] = key.key_id
    data = canonical_json(manifest)
    member(members, "manifest.json").data = data
    member(members, "manifest.sig").data = key.sign_manifest(data).encode() + b"\n"


def raw_offsets(path: Path, name: str) -> tuple[int, zipfile.ZipInfo]:
    """Where ``name``'s data starts in the zip file, and its directory entry."""
    with zipfile.ZipFile(path) as zf:
        info = zf.getinfo(name)
    with path.open("rb") as f:
        f.seek(info.header_offset)
        header = f.read(30)
    name_len, extra_len = struct.unpack("<HH", header[26:30])
    return info.header_offset + 30 + name_len + extra_len, info


def central_entry(raw: bytes, name: str) -> int:
    """Where ``name``'s central directory entry starts in a zip without zip64 records."""
    count, _, start = struct.unpack("<HLL", raw[-12:-2])  # from the end record
    at = int(start)
    for _ in range(count):
        name_len, extra_len, comment_len = struct.unpack("<HHH", raw[at + 28 : at + 34])
        if raw[at + 46 : at + 46 + name_len] == name.encode():
            return at
        at += 46 + name_len + extra_len + comment_len
    raise AssertionError(f"{name} is not in the central directory")


def patched(path: Path, offset: int, data: bytes) -> Path:
    raw = bytearray(path.read_bytes())
    raw[offset : offset + len(data)] = data
    out = path.with_name("tampered.zip")
    out.write_bytes(bytes(raw))
    return out


# -- the untampered bundle -------------------------------------------------------------------


async def test_the_untampered_bundle_passes_pinned_as_zip_and_as_folder(
    exported: Exported, tmp_path: Path
) -> None:
    e = exported
    result = pinned(e, e.path)
    assert result.code == 0 and result.fails == [], result.out
    assert result.out.rstrip().endswith("RESULT: OK (2 item(s) verified)")
    assert "OK: public key is the one expected (--expect-key-id)" in result.out
    assert "OK: manifest.json: the signature in manifest.sig verifies" in result.out
    assert "OK: the bundle holds exactly the 12 members the manifest lists" in result.out

    folder = tmp_path / "extracted"
    with zipfile.ZipFile(e.path) as zf:
        zf.extractall(folder)
    result = pinned(e, folder)
    assert result.code == 0 and result.fails == [], result.out

    # The copy inside the bundle, run from inside it without a key: every check passes, yet
    # it says that nothing was pinned and that it is not the checker to rely on.
    inside = run_inside(folder)
    assert inside.code == 3, inside.out
    assert "NOTE: this checker is the copy inside the bundle" in inside.out
    assert "\nUNPINNED: the key was not compared with the merchant's" in inside.out
    assert inside.fails == [] and "RESULT: UNPINNED" in inside.out


async def test_the_export_is_logged_with_the_manifest_hash(exported: Exported) -> None:
    e = exported
    with zipfile.ZipFile(e.path) as zf:
        manifest = zf.read("manifest.json")
        signature = zf.read("manifest.sig").decode().strip()
        sth = json.loads(zf.read("tree_head.json"))
    entries = await e.archive.log.entries()
    last = entries[-1]
    assert last.kind is EntryKind.BUNDLE_EXPORTED and last.item_id is None
    assert last.actor == "reviewer" and last.reason == "claim 9"
    assert last.record()["bundle"] == e.path.name
    assert last.record()["manifest_sha256"] == hashlib.sha256(manifest).hexdigest()
    assert last.record()["items"] == [e.a.item_id, e.b.item_id]
    # The bundle's proofs refer to the head taken just before this entry.
    assert last.index == sth["tree_size"] == last.record()["tree_size"]
    assert [x.kind for x in entries[last.index - 2 : last.index]] == [EntryKind.ITEM_EXPORTED] * 2

    doc = json.loads(manifest)
    assert manifest == canonical_json(doc)
    assert doc["version"] == "inspectd-bundle/2" and doc["items"] == [e.a.item_id, e.b.item_id]
    assert (doc["tree_size"], doc["root_hash"]) == (sth["tree_size"], sth["root_hash"])
    assert sorted(doc["members"]) == sorted(
        [
            *(f"items/{e.a.item_id}/{n}" for n in ("clip.webm", "snapshot.jpg")),
            *(f"items/{i}/{n}" for i in (e.a.item_id, e.b.item_id) for n in checker.ITEM_DOCUMENTS),
            f"items/{e.b.item_id}/clip.webm",
            *checker.TOP_LEVEL,
        ]
    )
    key = load_public_key(e.archive.public_key_pem())
    assert verify_manifest(manifest, signature, key)
    # Domain-separated: the same signature over the bare manifest bytes does not verify.
    with pytest.raises(InvalidSignature):
        key.verify(base64.b64decode(signature), manifest)


async def test_summary_and_readme_send_the_recipient_elsewhere(exported: Exported) -> None:
    e = exported
    with zipfile.ZipFile(e.path) as zf:
        summary = zf.read("summary.html").decode()
        readme = zf.read("README.txt").decode()
    for text in (summary, readme):
        assert f"--expect-key-id {e.key_id}" not in text
        assert "the key id the merchant gave you" in text
        assert "inspectd project" in text and "pip install ./inspectd" in text
        assert "inspectd-verify --self-hash" in text and "evidence/verify.py" in text
        assert "SHA-256" in text and "release tag" not in text and "published" not in text
        assert "Do not use the" in text and "inside this bundle" in text
        assert "another channel" in text
    assert "--expect-key-id &lt;the key id the merchant gave you&gt;</code>" in summary
    assert f"The bundle says it was signed by key <code>{e.key_id}</code>" in summary
    assert "manifest.json" in readme and "manifest.sig" in readme
    words = " ".join(readme.split())
    assert "UNPINNED" in words and "3 every check passed but no --expect-key-id" in words


# -- the container ---------------------------------------------------------------------------


@pytest.mark.parametrize("tampered_first", [True, False], ids=["tampered-first", "tampered-second"])
async def test_a_duplicate_member_fails(exported: Exported, tampered_first: bool) -> None:
    e = exported
    name = f"items/{e.b.item_id}/record.json"

    def double(members: list[Member]) -> list[Member]:
        original = member(members, name)
        forged = Member(name, original.data.replace(b"last_mile", b"packing"))
        i = members.index(original)
        members.insert(i if tampered_first else i + 1, forged)
        return members

    result = pinned(e, rewritten(e, double))
    assert result.code == 1
    assert result.failed(f"{name}: appears 2 times in the zip (a duplicate member")
    assert result.failed(f"item {e.b.item_id}: not verified without its record.json")
    assert f"OK: item {e.a.item_id}: inclusion proof verifies" in result.out


@pytest.mark.parametrize(
    ("name", "shown", "why"),
    [
        ("../x", "../x", "a '..' segment, outside the bundle"),
        ("items/{a}/../../x", "items/{a}/../../x", "a '..' segment, outside the bundle"),
        ("/abs", "/abs", "an absolute path"),
        ("items\\{a}\\x.jpg", "'items\\\\{a}\\\\x.jpg'", "a backslash in the name"),
        ("C:/x", "C:/x", "a drive letter or colon in the name"),
        ("items/{a}/x\x01.jpg", "'items/{a}/x\\x01.jpg'", "a control character in the name"),
        ("items//x", "items//x", "an empty or '.' path segment"),
    ],
)
async def test_an_unsafe_name_fails(exported: Exported, name: str, shown: str, why: str) -> None:
    e = exported
    name, shown = name.format(a=e.a.item_id), shown.format(a=e.a.item_id)
    result = pinned(e, rewritten(e, lambda ms: [*ms, Member(name, b"x")]))
    assert result.code == 1
    assert result.fails == [f"FAIL: {shown}: unsafe name: {why}"], result.out


async def test_a_nul_in_a_name_fails(exported: Exported) -> None:
    path = rewritten(exported, lambda ms: [*ms, Member("verify.pyXsuffix", b"x")])
    # zipfile cuts names at NUL when writing, so the byte is put in afterwards.
    raw = path.read_bytes().replace(b"verify.pyXsuffix", b"verify.py\x00suffix")
    path.write_bytes(raw)
    result = pinned(exported, path)
    assert result.code == 1
    assert result.fails == [
        "FAIL: 'verify.py\\x00suffix': unsafe name: a control character in the name"
    ]


async def test_a_symlink_member_fails(exported: Exported) -> None:
    e = exported
    name = f"items/{e.a.item_id}/snapshot.jpg"

    def link(members: list[Member]) -> None:
        m = member(members, name)
        m.data, m.external_attr = b"../../../etc/passwd", (stat.S_IFLNK | 0o777) << 16

    result = pinned(e, rewritten(e, link))
    assert result.code == 1
    assert result.fails == [f"FAIL: {name}: a symbolic link, not a file (not followed)"]


async def test_a_symlink_in_an_extracted_folder_fails(exported: Exported, tmp_path: Path) -> None:
    e = exported
    folder = tmp_path / "extracted"
    with zipfile.ZipFile(e.path) as zf:
        zf.extractall(folder)
    snapshot = folder / "items" / e.a.item_id / "snapshot.jpg"
    snapshot.unlink()
    snapshot.symlink_to(folder / "items" / e.a.item_id / "clip.webm")
    (folder / "items" / "linked").symlink_to(folder / "items" / e.b.item_id)
    result = pinned(e, folder)
    assert result.code == 1
    assert result.failed(f"items/{e.a.item_id}/snapshot.jpg: a symbolic link")
    assert result.failed("items/linked: a symbolic link")


@pytest.mark.parametrize(
    ("name", "why"),
    [
        ("items/{a}/extra.jpg", "not listed in the manifest (added to the bundle)"),
        ("notes.txt", "outside the bundle layout"),
        ("items/{a}/sub/x.jpg", "outside the bundle layout"),
        ("items/0123456789abcdef0123456789abcdef/record.json", "not listed in the manifest"),
    ],
)
async def test_an_added_member_fails(exported: Exported, name: str, why: str) -> None:
    e = exported
    name = name.format(a=e.a.item_id)
    result = pinned(e, rewritten(e, lambda ms: [*ms, Member(name, b"\xff\xd8 more")]))
    assert result.code == 1
    assert result.failed(f"{name}: {why}")
    if name.endswith("extra.jpg"):
        assert result.failed(f"{name}: file is not listed in record.json")


async def test_folder_entries_of_the_layout_pass_and_others_fail(exported: Exported) -> None:
    """A recipient who re-zips the extracted folder gets entries for its folders: those of the
    layout are harmless, any other is not."""
    e = exported
    folders = ["items/", f"items/{e.a.item_id}/", f"items/{e.b.item_id}/"]
    as_folder = (stat.S_IFDIR | 0o755) << 16
    rezipped = rewritten(
        e, lambda ms: [*(Member(f, b"", external_attr=as_folder) for f in folders), *ms]
    )
    result = pinned(e, rezipped)
    assert result.code == 0, result.out

    result = pinned(
        e, rewritten(e, lambda ms: [*ms, Member("hidden/", b"", external_attr=as_folder)])
    )
    assert result.code == 1
    assert result.fails == ["FAIL: hidden/: a folder entry outside the bundle layout"]


@pytest.mark.parametrize("where", ["append", "prepend", "comment"])
async def test_bytes_outside_the_members_fail(exported: Exported, where: str) -> None:
    e = exported
    out = e.path.with_name("tampered.zip")
    raw = e.path.read_bytes()
    if where == "append":
        out.write_bytes(raw + b"\0" * 100)
        expected = "100 byte(s) after the end of the zip (padding)"
    elif where == "prepend":
        out.write_bytes(b"MZ" + b"\0" * 98 + raw)
        expected = f"100 byte(s) of no member before items/{e.a.item_id}/clip.webm"
    else:  # the comment's length is the last field of the end record
        out.write_bytes(raw[:-2] + struct.pack("<H", 5) + b"hello")
        expected = "a 5-byte zip comment, which is no part of the bundle"
    result = pinned(e, out)
    assert result.code == 1
    assert result.failed(f"tampered.zip: {expected}")
    assert f"OK: item {e.a.item_id}: inclusion proof verifies" in result.out


async def test_a_flipped_byte_in_a_stored_member_fails_that_member_only(
    exported: Exported,
) -> None:
    e = exported
    name = f"items/{e.a.item_id}/clip.webm"
    offset, info = raw_offsets(e.path, name)
    assert info.compress_type == zipfile.ZIP_STORED
    raw = e.path.read_bytes()
    at = offset + info.compress_size // 2
    result = pinned(e, patched(e.path, at, bytes([raw[at] ^ 0xFF])))
    assert result.code == 1
    assert result.fails == [f"FAIL: {name}: cannot be read: bad CRC-32: the member is corrupt"]
    # Every other check still ran.
    assert f"OK: items/{e.a.item_id}/snapshot.jpg: SHA-256 matches record.json" in result.out
    assert f"OK: item {e.a.item_id}: inclusion proof verifies" in result.out
    assert f"OK: item {e.b.item_id}: inclusion proof verifies" in result.out


async def test_a_flipped_byte_in_a_deflated_member_fails_that_member(exported: Exported) -> None:
    e = exported
    offset, info = raw_offsets(e.path, "summary.html")
    assert info.compress_type == zipfile.ZIP_DEFLATED
    raw = e.path.read_bytes()
    at = offset + info.compress_size // 2
    result = pinned(e, patched(e.path, at, bytes([raw[at] ^ 0xFF])))
    assert result.code == 1
    assert result.failed("summary.html: cannot be read: ")
    assert f"OK: item {e.b.item_id}: inclusion proof verifies" in result.out


async def test_a_bad_local_header_fails_that_member(exported: Exported) -> None:
    e = exported
    name = f"items/{e.b.item_id}/record.json"
    _, info = raw_offsets(e.path, name)
    result = pinned(e, patched(e.path, info.header_offset, b"XXXX"))
    assert result.code == 1
    assert result.failed(f"{name}: cannot be read: bad local header")
    assert result.failed(f"item {e.b.item_id}: not verified without its record.json")
    assert f"OK: item {e.a.item_id}: inclusion proof verifies" in result.out


async def test_a_truncated_member_fails_that_member(exported: Exported) -> None:
    e = exported
    _, info = raw_offsets(e.path, "summary.html")
    # Shorten the member's compressed size in its central directory entry.
    entry = central_entry(e.path.read_bytes(), "summary.html")
    result = pinned(e, patched(e.path, entry + 20, struct.pack("<L", info.compress_size // 2)))
    assert result.code == 1
    assert result.failed("summary.html: cannot be read: ")
    assert result.failed("tampered.zip: ")  # the bytes cut off belong to no member now


async def test_a_truncated_zip_cannot_be_read(exported: Exported) -> None:
    e = exported
    out = e.path.with_name("tampered.zip")
    out.write_bytes(e.path.read_bytes()[: e.path.stat().st_size // 2])
    result = pinned(e, out)
    assert result.code == 2
    assert result.fails == [
        f"FAIL: cannot read {out}: not a whole zip file (File is not a zip file): truncated?"
    ]


@pytest.mark.parametrize(
    "kind", ["bigger-than-manifest", "zip-bomb"], ids=["oversized", "compression-ratio"]
)
async def test_an_oversized_member_is_not_read(exported: Exported, kind: str) -> None:
    e = exported
    name = f"items/{e.a.item_id}/snapshot.jpg"

    def grow(members: list[Member]) -> None:
        m = member(members, name)
        if kind == "zip-bomb":
            m.data, m.compress_type = b"\0" * (8 << 20), zipfile.ZIP_DEFLATED
        else:
            m.data += b"\0" * 4096

    result = pinned(e, rewritten(e, grow))
    assert result.code == 1
    if kind == "zip-bomb":
        [line] = result.fails
        assert line.startswith(f"FAIL: {name}: expands ")
        assert line.endswith(f"times ({8 << 20} bytes): a zip bomb, not read")
    else:
        size = e.a.files[1].size
        assert result.fails == [
            f"FAIL: {name}: {size + 4096} bytes, more than the {size} the manifest says "
            "(oversized; not read)"
        ]


# -- dropped and edited members --------------------------------------------------------------


async def test_a_dropped_item_fails_by_its_id(exported: Exported) -> None:
    e = exported
    prefix = f"items/{e.b.item_id}/"
    result = pinned(e, rewritten(e, lambda ms: [m for m in ms if not m.name.startswith(prefix)]))
    assert result.code == 1
    assert result.fails == [
        f"FAIL: item {e.b.item_id}: listed in the manifest but missing from the bundle "
        "(all 3 of its members)"
    ]
    assert "RESULT: FAIL (1 check(s) failed)" in result.out


async def test_a_dropped_record_fails(exported: Exported) -> None:
    e = exported
    name = f"items/{e.b.item_id}/record.json"
    result = pinned(e, rewritten(e, lambda ms: [m for m in ms if m.name != name]))
    assert result.code == 1
    assert result.fails == [
        f"FAIL: {name}: listed in the manifest but missing from the bundle",
        f"FAIL: item {e.b.item_id}: not verified without its record.json",
    ]


@pytest.mark.parametrize("name", ["summary.html", "README.txt", "verify.py", "public_key.pem"])
async def test_an_edited_text_member_fails(exported: Exported, name: str) -> None:
    e = exported

    def edit(members: list[Member]) -> None:
        m = member(members, name)
        if name == "verify.py":
            m.data = b'print("RESULT: OK (2 item(s) verified)")\n'
        elif name == "public_key.pem":
            m.data = SigningKey(Ed25519PrivateKey.generate()).public_key_pem().encode()
        else:
            m.data = m.data.replace(b"merchant", b"Merchant", 1)  # the same size

    result = pinned(e, rewritten(e, edit))
    assert result.code == 1
    line = result.failed(f"{name}: SHA-256 is ")
    assert line.endswith("(altered)")


async def test_a_removed_manifest_fails_and_the_rest_is_checked(exported: Exported) -> None:
    e = exported
    result = pinned(e, rewritten(e, lambda ms: [m for m in ms if m.name != "manifest.json"]))
    assert result.code == 1
    assert result.fails == [
        "FAIL: manifest.json: missing from the bundle: no signed list of members covers it "
        "(not an inspectd-bundle/2 bundle, or the manifest was removed)"
    ]
    assert f"OK: item {e.a.item_id}: inclusion proof verifies" in result.out


async def test_an_edited_manifest_fails(exported: Exported) -> None:
    e = exported

    def edit(members: list[Member]) -> None:
        m = member(members, "summary.html")
        m.data = m.data.replace(b"claim 9", b"no claim")
        doc = json.loads(member(members, "manifest.json").data)
        doc["members"]["summary.html"]["sha256"] = hashlib.sha256(m.data).hexdigest()
        doc["members"]["summary.html"]["size"] = len(m.data)
        member(members, "manifest.json").data = canonical_json(doc)

    result = pinned(e, rewritten(e, edit))
    assert result.code == 1
    assert result.fails == [
        "FAIL: manifest.json: the signature in manifest.sig does not verify with "
        "public_key.pem (the manifest was altered, or signed with another key)"
    ]


@pytest.mark.parametrize("how", ["removed", "not-base64", "another-signature", "binary"])
async def test_a_missing_or_garbled_manifest_signature_fails(exported: Exported, how: str) -> None:
    e = exported

    def garble(members: list[Member]) -> list[Member] | None:
        if how == "removed":
            return [m for m in members if m.name != "manifest.sig"]
        sig = member(members, "manifest.sig")
        sig.data = {
            "not-base64": b"not a signature!\n",
            "another-signature": base64.b64encode(b"\x01" * 64) + b"\n",
            "binary": b"\xff\xfe\x00",
        }[how]
        return None

    result = pinned(e, rewritten(e, garble))
    assert result.code == 1
    [line] = result.fails
    if how == "removed":
        assert (
            line == "FAIL: manifest.sig: missing from the bundle: nothing vouches for the manifest"
        )
    elif how == "binary":
        assert line == "FAIL: manifest.sig: not a base64 Ed25519 signature"
    else:
        assert line.startswith("FAIL: manifest.json: the signature in manifest.sig does not verify")


async def test_a_forgery_signed_with_another_key(exported: Exported) -> None:
    """A forger re-signs everything with a key of their own: every check of the bundle alone
    passes, so only the key id obtained from the merchant catches it."""
    e = exported
    forger = SigningKey(Ed25519PrivateKey.generate())

    def forge(members: list[Member]) -> None:
        sth = json.loads(member(members, "tree_head.json").data)
        head = forger.sign_tree_head(sth["tree_size"], bytes.fromhex(sth["root_hash"]), 1)
        member(members, "tree_head.json").data = json.dumps(head.to_json()).encode()
        member(members, "public_key.pem").data = forger.public_key_pem().encode()
        summary = member(members, "summary.html")
        summary.data = summary.data.replace(b"claim 9", b"a claim the forger likes")
        resign(members, forger)

    forged = rewritten(e, forge)
    result = pinned(e, forged)
    assert result.code == 1
    assert result.fails == [f"FAIL: public key id {forger.key_id} is not the expected {e.key_id}"]

    result = verify(forged)
    assert result.code == 3 and result.fails == []
    assert "\nUNPINNED: the key was not compared with the merchant's" in result.out
    assert result.out.rstrip().endswith(
        "RESULT: UNPINNED (2 item(s) checked, but not against the merchant's key)"
    )


# -- documents the signer vouched for, but malformed ----------------------------------------
#
# The manifest is signed again with the archive's own key after each change, so the only
# failures left are those of the document itself: its check names the member and its field.


@pytest.mark.parametrize(
    "target", ["record.json", "inclusion_proof.json", "tree_head.json", "manifest.json"]
)
async def test_malformed_json_fails_naming_the_member(exported: Exported, target: str) -> None:
    e = exported
    name = f"items/{e.a.item_id}/{target}" if target in checker.ITEM_DOCUMENTS else target

    def break_json(members: list[Member]) -> None:
        if name != "manifest.json":
            member(members, name).data = b'{"tree_size": 3, "tree_size": '
            resign(members, e.archive)
        else:
            data = b"{not json"
            member(members, name).data = data
            member(members, "manifest.sig").data = e.archive.sign_manifest(data).encode()

    result = pinned(e, rewritten(e, break_json))
    assert result.code == 1
    assert result.failed(f"{name}: not valid JSON: ")


async def test_a_duplicate_key_in_json_fails(exported: Exported) -> None:
    e = exported
    name = f"items/{e.a.item_id}/inclusion_proof.json"

    def dup(members: list[Member]) -> None:
        m = member(members, name)
        m.data = m.data.replace(b'"leaf_index":', b'"leaf_index": 0, "leaf_index":', 1)
        assert b'"leaf_index": 0, "leaf_index":' in m.data
        resign(members, e.archive)

    result = pinned(e, rewritten(e, dup))
    assert result.fails == [f"FAIL: {name}: not valid JSON: key 'leaf_index' appears twice"]


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        pytest.param(
            "leaf_index",
            "3",
            "leaf_index is '3', not a whole number from 0 to {last}",
            id="index-string",
        ),
        pytest.param(
            "leaf_index",
            True,
            "leaf_index is True, not a whole number from 0 to {last}",
            id="index-bool",
        ),
        pytest.param(
            "leaf_index",
            -1,
            "leaf_index is -1, not a whole number from 0 to {last}",
            id="index-negative",
        ),
        pytest.param(
            "tree_size",
            2**64,
            "tree_size is 18446744073709551616, not a whole number",
            id="size-too-big",
        ),
        pytest.param(
            "leaf_hash",
            "00" * 31,
            "leaf_hash is '" + "00" * 31 + "', not a 32-byte",
            id="leaf-31-bytes",
        ),
        pytest.param("leaf_hash", None, "leaf_hash is None, not a 32-byte hash", id="leaf-null"),
        pytest.param(
            "audit_path",
            ["zz" * 32],
            "audit_path[0] is '" + "zz" * 32 + "', not a",
            id="path-not-hex",
        ),
        pytest.param(
            "audit_path",
            ["00" * 31],
            "audit_path[0] is '" + "00" * 31 + "', not a",
            id="path-31-bytes",
        ),
        pytest.param(
            "audit_path", ["00" * 33], "audit_path[0] is '" + "00" * 33, id="path-33-bytes"
        ),
        pytest.param("audit_path", "00" * 32, "audit_path is '" + "00" * 32, id="path-string"),
        pytest.param("audit_path", [7], "audit_path[0] is 7, not a 32-byte hash", id="path-number"),
    ],
)
async def test_wrong_proof_fields_fail_before_the_record_is_blamed(
    exported: Exported, field: str, value: Any, message: str
) -> None:
    e = exported
    name = f"items/{e.a.item_id}/inclusion_proof.json"
    proof: dict[str, Any] = {}

    def change(members: list[Member]) -> None:
        def set_field(doc: dict[str, Any]) -> None:
            proof.update(doc)
            doc[field] = value

        edit_json(members, name, set_field)
        resign(members, e.archive)

    result = pinned(e, rewritten(e, change))
    assert result.code == 1
    [line] = result.fails
    assert line.startswith(f"FAIL: {name}: {message.format(last=proof['tree_size'] - 1)}"), line
    assert "record.json was edited" not in result.out
    assert f"OK: item {e.b.item_id}: inclusion proof verifies" in result.out


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("tree_size", "4", "tree_head.json: tree_size is '4', not a whole number"),
        ("root_hash", "ab" * 31, "tree_head.json: root_hash is 'abab"),
        ("signature", 12, "tree_head.json: signature is 12, not a string"),
    ],
)
async def test_wrong_tree_head_fields_fail(
    exported: Exported, field: str, value: Any, message: str
) -> None:
    e = exported

    def change(members: list[Member]) -> None:
        edit_json(members, "tree_head.json", lambda doc: doc.update({field: value}))
        resign(members, e.archive)

    result = pinned(e, rewritten(e, change))
    assert result.code == 1
    assert result.failed(message)
    assert result.failed(f"item {e.a.item_id}: inclusion proof not checked")


async def test_wrong_record_fields_fail_naming_the_file(exported: Exported) -> None:
    e = exported
    name = f"items/{e.a.item_id}/record.json"

    def change(members: list[Member]) -> None:
        def files(doc: dict[str, Any]) -> None:
            doc["files"][0]["size"] = "big"
            doc["files"][1]["name"] = "../../x"

        edit_json(members, name, files)
        resign(members, e.archive)

    result = pinned(e, rewritten(e, change))
    assert result.code == 1
    assert result.failed(f"{name}: files[0]: size is 'big', not a whole number")
    assert result.failed(f"{name}: files[1]: name '../../x' is not a plain file name")
    # The first file is listed, if badly; the second one is not, as far as the record goes.
    assert not any(f"{e.a.item_id}/clip.webm: file is not listed" in f for f in result.fails)
    assert result.failed(f"items/{e.a.item_id}/snapshot.jpg: file is not listed in record.json")
    assert result.failed(f"item {e.a.item_id}: record.json hashes to leaf")  # edited, after all


async def test_a_changed_tree_head_root_fails(exported: Exported) -> None:
    e = exported

    def change(members: list[Member]) -> None:
        edit_json(members, "tree_head.json", lambda doc: doc.update(root_hash="ab" * 32))

    result = pinned(e, rewritten(e, change))
    assert result.code == 1
    assert result.failed("tree_head.json: SHA-256 is ").endswith("(altered)")
    assert result.failed("tree head signature (tree size ")
    assert result.failed("tree_head.json is for tree size ")
    for item in (e.a, e.b):
        assert result.failed(f"item {item.item_id}: inclusion proof (leaf ").endswith("ab" * 32)


# -- the checker itself ----------------------------------------------------------------------


async def test_no_exception_escapes_the_checker(
    exported: Exported, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def broken(*_: object) -> None:
        raise RuntimeError("a bug")

    monkeypatch.setattr(checker, "check_container", broken)
    assert checker.main([str(exported.path), "--expect-key-id", exported.key_id]) == 2
    assert capsys.readouterr().out.splitlines()[-1] == "FAIL: internal error: RuntimeError: a bug"


@pytest.mark.parametrize("key_id", ["abc", "zz" * 32, ""])
async def test_a_malformed_expected_key_id_is_refused(exported: Exported, key_id: str) -> None:
    result = verify(exported.path, "--expect-key-id", key_id)
    assert result.code == 2
    assert result.failed(f"--expect-key-id {key_id!r} is not a key id")


async def test_a_missing_bundle_cannot_be_read(tmp_path: Path) -> None:
    result = verify(tmp_path / "nothing.zip")
    assert result.code == 2 and result.failed(f"cannot read {tmp_path / 'nothing.zip'}: ")
