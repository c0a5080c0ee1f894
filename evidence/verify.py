#!/usr/bin/env python3
"""Verify an inspectd evidence bundle offline::

    inspectd-verify BUNDLE.zip --expect-key-id <the key id the merchant gave you>
    python verify.py BUNDLE.zip --expect-key-id <the key id the merchant gave you>

Use a copy obtained from the inspectd project itself, never the copy inside the bundle it
checks (a forged bundle can carry a forged checker): the ``inspectd-verify`` command that the
project installs (from a clone of its repository), or the file ``evidence/verify.py`` of that
repository. ``--self-hash`` prints the SHA-256 of the checker that runs, to compare with the
SHA-256 of another copy (docs/verifier.md). Needs Python 3.9+ and the ``cryptography``
package, and for a bundle with outside timestamps ``rfc3161-client`` too; nothing else.

It reads bundles of format ``inspectd-bundle/2``, as a zip or as the folder they were extracted
to, and prints one line per check, ``OK: ...`` or ``FAIL: ...`` naming the member or item:

1. the container: every member has a safe name inside the bundle layout, appears once, and is
   a plain file within its limits (no symbolic link, no zip bomb); no bytes hide before,
   between or after the members. A corrupt member (bad CRC, truncated, bad local header) fails
   by name and the other checks go on;
2. the key: the key id of ``public_key.pem`` (SHA-256 of the raw Ed25519 key) against
   ``--expect-key-id``;
3. the manifest: ``manifest.sig`` is the Ed25519 signature of ``b"inspectd-bundle-manifest/1\\n"``
   followed by ``manifest.json``; the bundle holds exactly the members the manifest lists, each
   with its SHA-256 and size, and every item it lists;
4. the tree head: the Ed25519 signature of ``tree_head.json`` over the canonical JSON (sorted
   keys, no spaces, UTF-8) of ``key_id``, ``root_hash``, ``timestamp``, ``tree_size`` and
   ``version``;
5. the outside timestamps, if any: for each ``timestamps/<size>.json``, the Ed25519 signature
   of its earlier tree head (the same key), the consistency proof (RFC 9162 section 2.1.4.2)
   from that head to ``tree_head.json``, and its RFC 3161 response over the head's signed
   message, against the authority's root certificate(s): ``--tsa-roots`` (obtained from the
   authority itself), else the bundle's ``timestamps/tsa_roots.pem``. This check needs the
   ``rfc3161-client`` package (``pip install rfc3161-client``), and only for such bundles;
6. each item: every media file's SHA-256 and size against ``record.json``; the RFC 9162 leaf
   hash SHA-256(0x00 || record.json) against ``inclusion_proof.json``; the inclusion proof
   (RFC 9162 section 2.1.3.2) from that leaf to the signed root; then, when a checked
   timestamp's head contains the item's leaf, ``OK: item <id> existed by <time> (<authority>)``.

Copies with content credentials (``credentials/``) are checked only as members of the manifest:
their C2PA manifests are for C2PA tools (README.txt says how).

Exit status: 0 every check passed and the key is the expected one; 1 a check failed; 2 the
bundle cannot be read, or the checker itself failed; 3 every check passed but no
``--expect-key-id`` was given (UNPINNED: the key was not compared with the merchant's, and a
bundle forged with another key passes every other check).
"""

from __future__ import annotations

import argparse
import base64
import binascii
import hashlib
import json
import os
import re
import stat
import struct
import sys
import zipfile
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

BUNDLE_VERSION = "inspectd-bundle/2"
STH_VERSION = "inspectd-sth/1"
MANIFEST_DOMAIN = b"inspectd-bundle-manifest/1\n"
MANIFEST = "manifest.json"
SIGNATURE = "manifest.sig"
TOP_LEVEL = ("tree_head.json", "public_key.pem", "summary.html", "README.txt", "verify.py")
ITEM_DOCUMENTS = ("record.json", "inclusion_proof.json")
TIMESTAMP_VERSION = "inspectd-timestamp/1"
TSA_ROOTS = "timestamps/tsa_roots.pem"
TRUST_ANCHOR = "credentials/trust_anchor.pem"
#: Folders of one entry per item: the item's own files, and its credentialed copies.
ITEM_FOLDERS = ("items", "credentials")

EXIT_OK, EXIT_FAILED, EXIT_UNREADABLE, EXIT_UNPINNED = 0, 1, 2, 3

# A bundle comes from someone else: nothing in it may make the checker read without end or
# run out of memory.
MAX_MEMBERS = 100_000
MAX_MEMBER_SIZE = 1 << 40  # whatever the manifest says
MAX_DOCUMENT_SIZE = 64 << 20  # JSON, PEM and signature members are read into memory
MAX_RATIO = 100  # a deflated member expanding more than this...
RATIO_FLOOR = 1 << 20  # ...to more than this is taken for a zip bomb and not read
MAX_TREE_SIZE = (1 << 63) - 1
MAX_AUDIT_PATH = 64
MAX_CONSISTENCY_PATH = 128
CHUNK = 1 << 20

_SEGMENT = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}\Z")
_HEX64 = re.compile(r"[0-9a-f]{64}\Z")
_STAMP = re.compile(r"timestamps/([1-9][0-9]{0,18})\.json\Z")
_READ_ERRORS = (
    zipfile.BadZipFile,
    zlib.error,
    EOFError,
    OSError,
    NotImplementedError,
    RuntimeError,
    ValueError,
    struct.error,
)


class MemberError(Exception):
    """A member that cannot be read or trusted; the message says why."""


class FieldError(ValueError):
    """A JSON document whose fields are not what the format says."""


def shown(name: str) -> str:
    """A member name as printed: as it is when plain, escaped when it holds odd characters."""
    return name if name.isascii() and name.isprintable() and "\\" not in name else ascii(name)


def brief(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 70 else text[:67] + "..."


def name_problem(name: str) -> str | None:
    """Why a member name is unsafe to extract, or None."""
    if not name:
        return "an empty name"
    if any(ord(ch) < 0x20 or ord(ch) == 0x7F for ch in name):
        return "a control character in the name"
    if "\\" in name:
        return "a backslash in the name"
    if name.startswith("/"):
        return "an absolute path"
    if ":" in name:
        return "a drive letter or colon in the name"
    segments = name.rstrip("/").split("/")
    if ".." in segments:
        return "a '..' segment, outside the bundle"
    if any(s in ("", ".") for s in segments):
        return "an empty or '.' path segment"
    return None


def in_layout(name: str) -> bool:
    """Whether ``name`` is a file of the bundle layout (see the module docstring)."""
    if name in TOP_LEVEL or name in (MANIFEST, SIGNATURE, TSA_ROOTS, TRUST_ANCHOR):
        return True
    if _STAMP.match(name):
        return True
    segments = name.split("/")
    return (
        len(segments) == 3
        and segments[0] in ITEM_FOLDERS
        and all(_SEGMENT.match(s) and ".." not in s for s in segments[1:])
    )


def layout_folder(name: str) -> bool:
    """Folder entries a zip tool may add: ``items/``, ``items/<item>/``, the same under
    ``credentials/``, and ``timestamps/``."""
    segments = name.rstrip("/").split("/")
    if segments == ["timestamps"]:
        return True
    return segments[0] in ITEM_FOLDERS and (
        len(segments) == 1 or (len(segments) == 2 and bool(_SEGMENT.match(segments[1])))
    )


def parse_json(data: bytes) -> Any:
    """Strict JSON: UTF-8, no key twice, no NaN or Infinity; ValueError otherwise."""

    def pairs(items: list[tuple[str, Any]]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for key, value in items:
            if key in out:
                raise ValueError(f"key {key!r} appears twice")
            out[key] = value
        return out

    def constant(word: str) -> Any:
        raise ValueError(f"{word} is not JSON")

    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ValueError(f"not UTF-8 ({exc.reason} at byte {exc.start})") from None
    try:
        return json.loads(text, object_pairs_hook=pairs, parse_constant=constant)
    except RecursionError:
        raise ValueError("nested too deeply") from None


def need_object(value: Any, what: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise FieldError(f"{what} is {brief(value)}, not a JSON object")
    return value


def need_int(doc: dict[str, Any], key: str, low: int, high: int) -> int:
    value = doc.get(key)
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise FieldError(f"{key} is {brief(value)}, not a whole number from {low} to {high}")
    return value


def need_str(doc: dict[str, Any], key: str) -> str:
    value = doc.get(key)
    if not isinstance(value, str):
        raise FieldError(f"{key} is {brief(value)}, not a string")
    return value


def need_hex(value: Any, what: str) -> str:
    """A SHA-256 value (or key id) as 64 lowercase hex digits."""
    if not isinstance(value, str) or not _HEX64.match(value):
        raise FieldError(f"{what} is {brief(value)}, not a 32-byte hash (64 lowercase hex digits)")
    return value


class Checker:
    """Prints the result lines and counts the failures."""

    def __init__(self) -> None:
        self.failures = 0
        self._reported: set[str] = set()

    def ok(self, message: str) -> None:
        print(f"OK: {message}")

    def fail(self, message: str) -> None:
        self.failures += 1
        print(f"FAIL: {message}")

    def member_fail(self, name: str, message: str) -> None:
        """A FAIL line about one member, printed once however many checks stumble on it."""
        if name not in self._reported:
            self._reported.add(name)
            self.fail(f"{shown(name)}: {message}")


# -- the container: a zip file or an extracted folder ---------------------------------------


class Entry:
    """One member as the container lists it; ``problem`` says why it must not be read."""

    def __init__(
        self, name: str, size: int, *, folder: bool = False, problem: str | None = None
    ) -> None:
        self.name = name
        self.size = size
        self.folder = folder
        self.problem = problem
        self.info: zipfile.ZipInfo | None = None


def describe(exc: BaseException) -> str:
    """What a read error means for the member."""
    text = str(exc)
    if isinstance(exc, zipfile.BadZipFile) and "CRC" in text:
        return "bad CRC-32: the member is corrupt"
    if isinstance(exc, zipfile.BadZipFile) and ("magic number" in text or "header" in text):
        return f"bad local header: the member is corrupt ({text})"
    if isinstance(exc, EOFError):
        return "truncated: the member's data ends early"
    if isinstance(exc, zlib.error):
        return f"its compressed data is corrupt ({text})"
    return f"{type(exc).__name__}: {text}"


class ZipSource:
    """A bundle zip. Members are opened by their directory entry, never by name, so that of
    two members of one name neither stands in for the other."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._zip = zipfile.ZipFile(path)
        self.label = path.name

    def close(self) -> None:
        self._zip.close()

    def entries(self) -> list[Entry]:
        out = []
        for info in self._zip.infolist():
            entry = Entry(
                info.orig_filename,
                info.file_size,
                folder=info.orig_filename.endswith("/"),
                problem=self._problem(info),
            )
            entry.info = info
            out.append(entry)
        return out

    @staticmethod
    def _problem(info: zipfile.ZipInfo) -> str | None:
        kind = stat.S_IFMT(info.external_attr >> 16)
        if kind == stat.S_IFLNK:
            return "a symbolic link, not a file (not followed)"
        if kind not in (0, stat.S_IFREG, stat.S_IFDIR):
            return "not a regular file"
        if info.flag_bits & 0x1:
            return "encrypted"
        if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
            return f"compressed with method {info.compress_type}, not stored or deflated"
        if info.file_size > MAX_MEMBER_SIZE:
            return f"{info.file_size} bytes, more than the {MAX_MEMBER_SIZE} this checker reads"
        if (
            info.compress_type == zipfile.ZIP_DEFLATED
            and info.file_size > RATIO_FLOOR
            and info.file_size > MAX_RATIO * max(info.compress_size, 1)
        ):
            ratio = info.file_size // max(info.compress_size, 1)
            return f"expands {ratio} times ({info.file_size} bytes): a zip bomb, not read"
        return None

    def open(self, entry: Entry) -> IO[bytes]:
        assert entry.info is not None
        return self._zip.open(entry.info)

    def layout_problems(self) -> list[str]:
        """Bytes of the file that belong to no member: before, between or after them."""
        with self.path.open("rb") as f:
            return _zip_layout(f, os.fstat(f.fileno()).st_size, self._zip.infolist())


def _zip_layout(f: IO[bytes], size: int, infos: list[zipfile.ZipInfo]) -> list[str]:
    # The end record is found as zipfile finds it: at the very end, else the last signature.
    window = min(size, 22 + 0xFFFF)
    f.seek(size - window)
    tail = f.read(window)
    at = len(tail) - 22
    if not (at >= 0 and tail[at : at + 4] == b"PK\x05\x06" and tail[-2:] == b"\0\0"):
        at = tail.rfind(b"PK\x05\x06")
    if at < 0 or len(tail) - at < 22:
        return ["no end of central directory record"]
    _, _, _, _, total, cd_size, _, comment = struct.unpack("<4s4H2LH", tail[at : at + 22])
    eocd = size - window + at
    problems = []
    if comment:
        problems.append(f"a {comment}-byte zip comment, which is no part of the bundle")
    if eocd + 22 + comment < size:
        problems.append(f"{size - eocd - 22 - comment} byte(s) after the end of the zip (padding)")
    cd_end = eocd
    if eocd >= 76:
        f.seek(eocd - 20)
        if f.read(4) == b"PK\x06\x07":  # zip64: its end record sits before the locator
            f.seek(eocd - 76)
            record = f.read(56)
            if record[:4] == b"PK\x06\x06":
                total, cd_size = struct.unpack("<QQ", record[32:48])
                cd_end = eocd - 76
    if total != len(infos):
        problems.append(f"the end record counts {total} members, the directory lists {len(infos)}")
    cd_start = cd_end - cd_size
    expected: int | None = 0
    previous: str | None = None
    for info in sorted(infos, key=lambda i: i.header_offset):
        name = shown(info.orig_filename)
        if expected is not None and info.header_offset > expected:
            where = f"before {name}" if previous is None else f"between {previous} and {name}"
            problems.append(f"{info.header_offset - expected} byte(s) of no member {where}")
        elif expected is not None and info.header_offset < expected:
            problems.append(f"{name} overlaps {previous} (members sharing bytes: a zip bomb)")
        f.seek(info.header_offset)
        header = f.read(30)
        previous = name
        if len(header) < 30 or header[:4] != b"PK\x03\x04":
            expected = None  # reported when the member is read
            continue
        name_len, extra_len = struct.unpack("<HH", header[26:30])
        end = info.header_offset + 30 + name_len + extra_len + info.compress_size
        if info.flag_bits & 0x8:  # a data descriptor follows the data
            f.seek(end)
            zip64 = max(info.file_size, info.compress_size) >= 0xFFFFFFFF
            end += (16 if f.read(4) == b"PK\x07\x08" else 12) + (8 if zip64 else 0)
        expected = end if expected is None else max(expected, end)
    if expected is not None and expected < cd_start:
        problems.append(f"{cd_start - expected} byte(s) of no member after {previous}")
    elif expected is not None and expected > cd_start:
        problems.append(f"{previous} runs into the zip's central directory")
    return problems


class DirSource:
    """An extracted bundle folder; symbolic links are listed, never followed."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.label = f"{root.name}/"

    def close(self) -> None:
        pass

    def entries(self) -> list[Entry]:
        out: list[Entry] = []

        def failed(exc: OSError) -> None:
            raise exc

        for top, folders, files in os.walk(self.root, onerror=failed):
            rel = Path(top).relative_to(self.root).parts
            for folder in sorted(folders):
                if (Path(top) / folder).is_symlink():
                    out.append(Entry("/".join((*rel, folder)), 0, problem="a symbolic link"))
            for file in sorted(files):
                st = (Path(top) / file).lstat()
                problem = None
                if stat.S_ISLNK(st.st_mode):
                    problem = "a symbolic link, not a file (not followed)"
                elif not stat.S_ISREG(st.st_mode):
                    problem = "not a regular file"
                out.append(Entry("/".join((*rel, file)), st.st_size, problem=problem))
        return out

    def open(self, entry: Entry) -> IO[bytes]:
        flags = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_BINARY", 0)
        return os.fdopen(os.open(self.root.joinpath(*entry.name.split("/")), flags), "rb")

    def layout_problems(self) -> list[str]:
        return []


class Bundle:
    """The bundle's members by name; each is read at most as far as a limit, and a member
    found unusable once (duplicate, unsafe, corrupt) is never read again."""

    def __init__(self, source: ZipSource | DirSource) -> None:
        self.source = source
        self.entries = source.entries()
        self.by_name: dict[str, list[Entry]] = {}
        for entry in self.entries:
            self.by_name.setdefault(entry.name, []).append(entry)
        self.blocked: dict[str, str] = {}
        self._digests: dict[str, tuple[str, int]] = {}

    def file_names(self) -> list[str]:
        return [n for n, es in self.by_name.items() if not all(e.folder for e in es)]

    def has(self, name: str) -> bool:
        return any(not e.folder for e in self.by_name.get(name, ()))

    def block(self, name: str, why: str) -> MemberError:
        self.blocked.setdefault(name, why)
        return MemberError(self.blocked[name])

    def digest(self, name: str, limit: int, limit_from: str) -> tuple[str, int]:
        """SHA-256 (hex) and size; MemberError when missing, unusable or over ``limit``."""
        if name not in self._digests:
            h = hashlib.sha256()
            size = self._read(name, limit, limit_from, h.update)
            self._digests[name] = (h.hexdigest(), size)
        return self._digests[name]

    def read(self, name: str, limit: int = MAX_DOCUMENT_SIZE) -> bytes:
        chunks: list[bytes] = []
        self._read(name, limit, "this checker reads", chunks.append)
        return b"".join(chunks)

    def _read(self, name: str, limit: int, limit_from: str, sink: Callable[[bytes], Any]) -> int:
        if name in self.blocked:
            raise MemberError(self.blocked[name])
        found = [e for e in self.by_name.get(name, ()) if not e.folder]
        if not found:
            raise MemberError("missing from the bundle")
        entry = found[0]
        if entry.size > limit:
            raise self.block(
                name,
                f"{entry.size} bytes, more than the {limit} {limit_from} (oversized; not read)",
            )
        total = 0
        try:
            with self.source.open(entry) as f:
                while True:
                    chunk = f.read(min(CHUNK, limit + 1 - total))
                    if not chunk:
                        return total
                    total += len(chunk)
                    if total > limit:
                        raise self.block(
                            name, f"more than the {limit} bytes {limit_from} (oversized)"
                        )
                    sink(chunk)
        except _READ_ERRORS as exc:
            raise self.block(name, f"cannot be read: {describe(exc)}") from None


def member_problem(name: str, entries: list[Entry]) -> str | None:
    """Why a member of the container must not be read, or None."""
    problem = name_problem(name)
    if len(entries) > 1:
        return (
            f"appears {len(entries)} times in the zip (a duplicate member: extractors "
            "disagree on which copy they keep)"
        )
    if problem is not None:
        return f"unsafe name: {problem}"
    if entries[0].problem is not None:
        return entries[0].problem
    if entries[0].folder:
        if layout_folder(name) and entries[0].size == 0:
            return None
        return "a folder entry outside the bundle layout"
    return None if in_layout(name) else "outside the bundle layout"


def check_container(bundle: Bundle, c: Checker) -> None:
    """Unsafe, duplicated, special and out-of-layout members, and bytes of no member."""
    for problem in bundle.source.layout_problems():
        c.fail(f"{bundle.source.label}: {problem}")
    if len(bundle.entries) > MAX_MEMBERS:
        c.fail(f"{bundle.source.label}: {len(bundle.entries)} members, more than {MAX_MEMBERS}")
    for name, entries in bundle.by_name.items():
        why = member_problem(name, entries)
        if why is not None:
            bundle.block(name, why)
            c.member_fail(name, why)


# -- the key, the manifest and the tree head ------------------------------------------------


def check_key(
    bundle: Bundle, c: Checker, expect: str | None
) -> tuple[Ed25519PublicKey | None, str | None]:
    """The bundle's public key and its id, compared with the expected id when given."""
    from cryptography.exceptions import UnsupportedAlgorithm
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    try:
        key = serialization.load_pem_public_key(bundle.read("public_key.pem", 1 << 16))
    except MemberError as exc:
        c.member_fail("public_key.pem", str(exc))
        return None, None
    except (ValueError, TypeError, UnsupportedAlgorithm) as exc:
        c.fail(f"public_key.pem cannot be read: {exc}")
        return None, None
    if not isinstance(key, Ed25519PublicKey):
        c.fail("public_key.pem is not an Ed25519 key")
        return None, None
    raw = key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    kid = hashlib.sha256(raw).hexdigest()
    print(f"key id (SHA-256 of the public key): {kid}")
    if expect is not None:
        if kid == expect:
            c.ok("public key is the one expected (--expect-key-id)")
        else:
            c.fail(f"public key id {kid} is not the expected {expect}")
    return key, kid


def verify_signature(key: Ed25519PublicKey, signature: str, message: bytes) -> bool:
    from cryptography.exceptions import InvalidSignature

    try:
        key.verify(base64.b64decode(signature, validate=True), message)
    except (InvalidSignature, binascii.Error, ValueError):
        return False
    return True


class Manifest:
    """A parsed ``manifest.json``; FieldError when it is not what the format says."""

    def __init__(self, doc: Any) -> None:
        doc = need_object(doc, "the manifest")
        if doc.get("version") != BUNDLE_VERSION:
            raise FieldError(
                f"format {brief(doc.get('version'))} is not {BUNDLE_VERSION}, which this checker "
                "reads"
            )
        self.bundle = need_str(doc, "bundle")
        self.key_id = need_hex(doc.get("key_id"), "key_id")
        self.tree_size = need_int(doc, "tree_size", 1, MAX_TREE_SIZE)
        self.root_hash = need_hex(doc.get("root_hash"), "root_hash")
        items = doc.get("items")
        if (
            not isinstance(items, list)
            or not items
            or not all(isinstance(i, str) and _SEGMENT.match(i) and ".." not in i for i in items)
            or len(set(items)) != len(items)
        ):
            raise FieldError(f"items is {brief(items)}, not a list of distinct item ids")
        self.items: list[str] = items
        self.members: dict[str, tuple[str, int]] = {}
        for name, meta in need_object(doc.get("members"), "members").items():
            problem = name_problem(name) or (
                None if in_layout(name) and name not in (MANIFEST, SIGNATURE) else "not in layout"
            )
            if problem is not None:
                raise FieldError(f"lists member {shown(name)}: {problem}")
            segments = name.split("/")
            if len(segments) == 3 and segments[0] in ITEM_FOLDERS and segments[1] not in items:
                raise FieldError(f"lists member {shown(name)} of an item it does not list")
            meta = need_object(meta, f"member {name}")
            sha = need_hex(meta.get("sha256"), f"member {name}: sha256")
            self.members[name] = (sha, need_int(meta, "size", 0, MAX_MEMBER_SIZE))
        needed = [*TOP_LEVEL, *(f"items/{i}/{d}" for i in items for d in ITEM_DOCUMENTS)]
        for name in needed:
            if name not in self.members:
                raise FieldError(f"does not list {name}")

    def members_of(self, item_id: str) -> list[str]:
        return [n for n in self.members if n.startswith(f"items/{item_id}/")]


def check_manifest(
    bundle: Bundle, c: Checker, key: Ed25519PublicKey | None, kid: str | None
) -> Manifest | None:
    """The manifest's signature and fields; None when there is no usable manifest."""
    try:
        data = bundle.read(MANIFEST)
    except MemberError as exc:
        if not bundle.has(MANIFEST):
            c.member_fail(
                MANIFEST,
                "missing from the bundle: no signed list of members covers it (not an "
                f"{BUNDLE_VERSION} bundle, or the manifest was removed)",
            )
        else:
            c.member_fail(MANIFEST, str(exc))
        return None
    try:
        signature = bundle.read(SIGNATURE, 1024).decode("ascii").strip()
    except MemberError as exc:
        c.member_fail(SIGNATURE, f"{exc}: nothing vouches for the manifest")
    except UnicodeDecodeError:
        c.fail(f"{SIGNATURE}: not a base64 Ed25519 signature")
    else:
        if key is None:
            c.fail(f"{MANIFEST}: signature not checked (no usable public_key.pem)")
        elif verify_signature(key, signature, MANIFEST_DOMAIN + data):
            c.ok(f"{MANIFEST}: the signature in {SIGNATURE} verifies with public_key.pem")
        else:
            c.fail(
                f"{MANIFEST}: the signature in {SIGNATURE} does not verify with public_key.pem "
                "(the manifest was altered, or signed with another key)"
            )
    try:
        manifest = Manifest(parse_json(data))
    except FieldError as exc:
        c.fail(f"{MANIFEST}: {exc}")
        return None
    except ValueError as exc:
        c.fail(f"{MANIFEST}: not valid JSON: {exc}")
        return None
    if kid is not None and manifest.key_id != kid:
        c.fail(f"{MANIFEST} names key {manifest.key_id} but public_key.pem is key {kid}")
    print(f"bundle: {shown(manifest.bundle)}, {len(manifest.items)} item(s) ({BUNDLE_VERSION})")
    return manifest


def check_members(bundle: Bundle, c: Checker, manifest: Manifest) -> tuple[set[str], set[str]]:
    """The bundle holds exactly the members of the manifest, with their SHA-256 and size.
    Returns the items of which no member is left (named once, not member by member), and the
    members that match."""
    gone: set[str] = set()
    matched: set[str] = set()
    for item_id in manifest.items:
        names = manifest.members_of(item_id)
        if not any(bundle.has(n) for n in names):
            gone.add(item_id)
            c.fail(
                f"item {item_id}: listed in the manifest but missing from the bundle "
                f"(all {len(names)} of its members)"
            )
            for name in names:
                bundle.block(name, "missing from the bundle")
    matching = 0
    for name, (sha, size) in manifest.members.items():
        if name in bundle.blocked:
            continue
        if not bundle.has(name):
            c.member_fail(name, "listed in the manifest but missing from the bundle")
            continue
        try:
            got_sha, got_size = bundle.digest(name, size, "the manifest says")
        except MemberError as exc:
            c.member_fail(name, str(exc))
            continue
        if got_sha != sha:
            c.fail(f"{shown(name)}: SHA-256 is {got_sha}, the manifest says {sha} (altered)")
        elif got_size != size:
            c.fail(f"{shown(name)}: {got_size} bytes, the manifest says {size}")
        else:
            matching += 1
            matched.add(name)
    unlisted = 0
    for name in bundle.file_names():
        if name not in manifest.members and name not in (MANIFEST, SIGNATURE):
            unlisted += 1
            c.member_fail(name, "not listed in the manifest (added to the bundle)")
    listed = len(manifest.members)
    if matching == listed and not unlisted:
        c.ok(f"the bundle holds exactly the {listed} members the manifest lists, as it lists them")
    elif matching:
        c.ok(f"{matching} of the {listed} members the manifest lists match its SHA-256 and size")
    return gone, matched


class TreeHead:
    """A parsed ``tree_head.json``; FieldError when it is not what the format says."""

    def __init__(self, doc: Any) -> None:
        doc = need_object(doc, "the tree head")
        self.version = doc.get("version")
        self.tree_size = need_int(doc, "tree_size", 1, MAX_TREE_SIZE)
        self.root_hash = need_hex(doc.get("root_hash"), "root_hash")
        self.timestamp = need_int(doc, "timestamp", 0, MAX_TREE_SIZE)
        self.key_id = need_hex(doc.get("key_id"), "key_id")
        self.signature = need_str(doc, "signature")

    def message(self) -> bytes:
        return sth_message(
            {
                "key_id": self.key_id,
                "root_hash": self.root_hash,
                "timestamp": self.timestamp,
                "tree_size": self.tree_size,
            }
        )


def sth_message(sth: dict[str, Any]) -> bytes:
    body = {
        "key_id": sth["key_id"],
        "root_hash": sth["root_hash"],
        "timestamp": sth["timestamp"],
        "tree_size": sth["tree_size"],
        "version": STH_VERSION,
    }
    return json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def check_tree_head(
    bundle: Bundle,
    c: Checker,
    key: Ed25519PublicKey | None,
    kid: str | None,
    manifest: Manifest | None,
) -> TreeHead | None:
    try:
        sth = TreeHead(parse_json(bundle.read("tree_head.json")))
    except MemberError as exc:
        c.member_fail("tree_head.json", str(exc))
        return None
    except FieldError as exc:
        c.fail(f"tree_head.json: {exc}")
        return None
    except ValueError as exc:
        c.fail(f"tree_head.json: not valid JSON: {exc}")
        return None
    if sth.version != STH_VERSION:
        c.fail(f"tree_head.json has unknown version {brief(sth.version)}")
    if kid is not None and sth.key_id != kid:
        c.fail(f"tree_head.json names key {sth.key_id} but public_key.pem is key {kid}")
    if key is None:
        c.fail("tree head signature not checked (no usable public_key.pem)")
    elif verify_signature(key, sth.signature, sth.message()):
        c.ok(f"tree head signature verifies (tree size {sth.tree_size}, root {sth.root_hash})")
    else:
        c.fail(
            f"tree head signature (tree size {sth.tree_size}) does not verify with public_key.pem"
        )
    if manifest is not None and (manifest.tree_size, manifest.root_hash) != (
        sth.tree_size,
        sth.root_hash,
    ):
        c.fail(
            f"tree_head.json is for tree size {sth.tree_size}, root {sth.root_hash}, but the "
            f"manifest says tree size {manifest.tree_size}, root {manifest.root_hash}"
        )
    return sth


# -- the items -------------------------------------------------------------------------------


def node_hash(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(b"\x01" + left + right).digest()


def root_from_path(index: int, size: int, leaf: bytes, path: list[bytes]) -> bytes | None:
    """RFC 9162 section 2.1.3.2; None when the path is malformed for (index, size) or a hash
    is not 32 bytes."""
    if not 0 <= index < size or len(leaf) != 32 or any(len(p) != 32 for p in path):
        return None
    fn, sn = index, size - 1
    r = leaf
    for p in path:
        if sn == 0:
            return None
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            if not fn & 1:
                while fn and not fn & 1:
                    fn >>= 1
                    sn >>= 1
        else:
            r = node_hash(r, p)
        fn >>= 1
        sn >>= 1
    return r if sn == 0 else None


class Proof:
    """A parsed ``inclusion_proof.json``; FieldError when a field is not what it must be."""

    def __init__(self, doc: Any, item_id: str) -> None:
        doc = need_object(doc, "the proof")
        if doc.get("item_id", item_id) != item_id:
            raise FieldError(f"item_id is {brief(doc.get('item_id'))}, not {item_id}")
        self.tree_size = need_int(doc, "tree_size", 1, MAX_TREE_SIZE)
        self.leaf_index = need_int(doc, "leaf_index", 0, self.tree_size - 1)
        self.leaf_hash = need_hex(doc.get("leaf_hash"), "leaf_hash")
        path = doc.get("audit_path")
        if not isinstance(path, list) or len(path) > MAX_AUDIT_PATH:
            raise FieldError(f"audit_path is {brief(path)}, not a list of at most 64 hashes")
        self.audit_path = [
            bytes.fromhex(need_hex(h, f"audit_path[{i}]")) for i, h in enumerate(path)
        ]


def document(bundle: Bundle, c: Checker, item_id: str, doc: str) -> bytes | None:
    name = f"items/{item_id}/{doc}"
    try:
        return bundle.read(name)
    except MemberError as exc:
        c.member_fail(name, str(exc))
        c.fail(f"item {item_id}: not verified without its {doc}")
        return None


def check_files(bundle: Bundle, c: Checker, item_id: str, record: Any) -> None:
    """Every media file against the SHA-256 and size in ``record.json``, and no other file."""
    base = f"items/{item_id}"
    files = record.get("files") if isinstance(record, dict) else None
    if not isinstance(record, dict):
        c.fail(f"{base}/record.json is {brief(record)}, not a JSON object")
    elif record.get("item_id") != item_id:
        c.fail(f"item {item_id}: record.json names item {brief(record.get('item_id'))}")
    if isinstance(record, dict) and not isinstance(files, list):
        c.fail(f"{base}/record.json: files is {brief(files)}, not a list")
    known = {f"{base}/{d}" for d in ITEM_DOCUMENTS}
    for i, meta in enumerate(files if isinstance(files, list) else []):
        try:
            meta = need_object(meta, f"files[{i}]")
            file_name = need_str(meta, "name")
            if not _SEGMENT.match(file_name) or ".." in file_name or file_name in ITEM_DOCUMENTS:
                raise FieldError(f"name {brief(file_name)} is not a plain file name")
            name = f"{base}/{file_name}"
            known.add(name)  # listed, even where its other fields are wrong
            sha = need_hex(meta.get("sha256"), "sha256")
            size = need_int(meta, "size", 0, MAX_MEMBER_SIZE)
        except FieldError as exc:
            c.fail(f"{base}/record.json: files[{i}]: {exc}")
            continue
        if not bundle.has(name):
            c.fail(f"{name}: file is missing from the bundle (record.json lists it)")
            continue
        try:
            digest, got = bundle.digest(name, size, "record.json says")
        except MemberError as exc:
            c.member_fail(name, str(exc))
            continue
        if digest != sha:
            c.fail(f"{name}: SHA-256 is {digest}, record.json says {sha} (altered)")
        elif got != size:
            c.fail(f"{name}: size is {got} bytes, record.json says {size}")
        else:
            c.ok(f"{name}: SHA-256 matches record.json")
    for name in bundle.file_names():
        if name.startswith(base + "/") and name not in known and name not in bundle.blocked:
            c.fail(f"{shown(name)}: file is not listed in record.json")


def check_item(bundle: Bundle, c: Checker, item_id: str, sth: TreeHead | None) -> int | None:
    """The item's files, record and inclusion; its leaf index when all of that verifies."""
    base = f"items/{item_id}"
    record_bytes = document(bundle, c, item_id, "record.json")
    proof_bytes = document(bundle, c, item_id, "inclusion_proof.json")
    failures = c.failures
    if record_bytes is not None:
        try:
            record = parse_json(record_bytes)
        except ValueError as exc:
            c.fail(f"{base}/record.json: not valid JSON: {exc}")
        else:
            check_files(bundle, c, item_id, record)
    if record_bytes is None or proof_bytes is None:
        return None
    try:
        proof = Proof(parse_json(proof_bytes), item_id)
    except FieldError as exc:
        c.fail(f"{base}/inclusion_proof.json: {exc}")
        return None
    except ValueError as exc:
        c.fail(f"{base}/inclusion_proof.json: not valid JSON: {exc}")
        return None
    leaf = hashlib.sha256(b"\x00" + record_bytes).digest()
    if leaf.hex() == proof.leaf_hash:
        c.ok(f"item {item_id}: record.json matches leaf hash {leaf.hex()}")
    else:
        c.fail(
            f"item {item_id}: record.json hashes to leaf {leaf.hex()}, but the logged leaf is "
            f"{proof.leaf_hash} (record.json was edited)"
        )
    index, size = proof.leaf_index, proof.tree_size
    if sth is None:
        c.fail(f"item {item_id}: inclusion proof not checked (no usable tree_head.json)")
        return None
    if size != sth.tree_size:
        c.fail(
            f"item {item_id}: inclusion proof is for tree size {size}, "
            f"but tree_head.json is for size {sth.tree_size}"
        )
        return None
    root = root_from_path(index, size, leaf, proof.audit_path)
    if root is None or root.hex() != sth.root_hash:
        c.fail(
            f"item {item_id}: inclusion proof (leaf {index} of {size}) does not lead to the "
            f"signed root {sth.root_hash}"
        )
        return None
    c.ok(f"item {item_id}: inclusion proof verifies (leaf {index} of {size})")
    return index if c.failures == failures else None


def found_items(bundle: Bundle) -> list[str]:
    """Item ids by the members' names, for a bundle without a usable manifest."""
    return sorted(
        {n.split("/")[1] for n in bundle.file_names() if in_layout(n) and n.startswith("items/")}
    )


# -- outside timestamps ----------------------------------------------------------------------


def consistent(size1: int, size2: int, root1: bytes, root2: bytes, path: list[bytes]) -> bool:
    """RFC 9162 section 2.1.4.2: the tree of ``size1`` and ``root1`` is a prefix of the tree of
    ``size2`` and ``root2`` (equal sizes: an empty proof and equal roots)."""
    if not 0 < size1 <= size2 or any(len(h) != 32 for h in (root1, root2, *path)):
        return False
    if size1 == size2:
        return not path and root1 == root2
    if not path:
        return False
    if size1 & (size1 - 1) == 0:
        path = [root1, *path]
    fn, sn = size1 - 1, size2 - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    fr = sr = path[0]
    for p in path[1:]:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            fr = node_hash(p, fr)
            sr = node_hash(p, sr)
            if not fn & 1:
                while fn and not fn & 1:
                    fn >>= 1
                    sn >>= 1
        else:
            sr = node_hash(sr, p)
        fn >>= 1
        sn >>= 1
    return fr == root1 and sr == root2 and sn == 0


class Stamp:
    """A parsed ``timestamps/<size>.json``; FieldError when it is not what the format says."""

    def __init__(self, doc: Any) -> None:
        doc = need_object(doc, "the timestamp")
        if doc.get("version") != TIMESTAMP_VERSION:
            raise FieldError(f"version is {brief(doc.get('version'))}, not {TIMESTAMP_VERSION}")
        try:
            self.head = TreeHead(doc.get("tree_head"))
        except FieldError as exc:
            raise FieldError(f"tree_head: {exc}") from None
        response = need_str(doc, "response")
        try:
            self.response = base64.b64decode(response, validate=True)
        except (binascii.Error, ValueError):
            raise FieldError("response is not base64") from None
        self.to_tree_size = need_int(doc, "to_tree_size", 1, MAX_TREE_SIZE)
        path = doc.get("consistency_proof")
        if not isinstance(path, list) or len(path) > MAX_CONSISTENCY_PATH:
            raise FieldError(
                f"consistency_proof is {brief(path)}, not a list of at most "
                f"{MAX_CONSISTENCY_PATH} hashes"
            )
        self.path = [
            bytes.fromhex(need_hex(h, f"consistency_proof[{i}]")) for i, h in enumerate(path)
        ]
        # What the response says, for readers of the file: checked against the response.
        self.said = (doc.get("gen_time"), doc.get("authority"))


def load_roots(data: bytes) -> list[Any]:
    """The certificates of a PEM file, each once; ValueError when there is none."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes

    certificates = x509.load_pem_x509_certificates(data)
    return list({cert.fingerprint(hashes.SHA256()): cert for cert in certificates}.values())


def authority_of(parsed: Any) -> str:
    """The authority's name: the token's, else the subject of its time-stamping certificate."""
    from cryptography import x509
    from cryptography.x509.oid import ExtendedKeyUsageOID

    value = getattr(parsed.tst_info.name, "value", None)
    if isinstance(value, x509.Name):
        return value.rfc4514_string()
    for der in parsed.signed_data.certificates:
        cert = x509.load_der_x509_certificate(der)
        try:
            usage = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
        except x509.ExtensionNotFound:
            continue
        if ExtendedKeyUsageOID.TIME_STAMPING in usage:
            return cert.subject.rfc4514_string()
    return "an unnamed authority"


def rfc3161_check(response: bytes, message: bytes, roots: list[Any]) -> tuple[str, str]:
    """(time, authority) of a granted RFC 3161 timestamp of ``message`` whose signer chains to
    one of ``roots``; ValueError with the reason otherwise."""
    import rfc3161_client

    # The library parses hostile bytes in native code: whatever it raises means "not valid".
    try:
        parsed = rfc3161_client.decode_timestamp_response(response)
    except Exception as exc:
        raise ValueError(f"not an RFC 3161 response ({exc})") from None
    if parsed.status not in (0, 1):  # granted, granted with modifications
        raise ValueError(f"the authority refused to timestamp (status {parsed.status})")
    builder = rfc3161_client.VerifierBuilder()
    for root in roots:
        builder = builder.add_root_certificate(root)
    try:
        builder.build().verify_message(parsed, message)
        return parsed.tst_info.gen_time.isoformat(), authority_of(parsed)
    except Exception as exc:
        raise ValueError(str(exc) or type(exc).__name__) from None


def tsa_roots(bundle: Bundle, c: Checker, given: Path | None) -> tuple[list[Any] | None, str]:
    """The authorities' roots to check timestamps with: the file given (obtained from the
    authority), else the bundle's own copy; None (after a FAIL line) when unusable."""
    if given is not None:
        label = f"--tsa-roots {given}"
        try:
            data = given.read_bytes()
        except OSError as exc:
            c.fail(f"{label}: cannot be read: {exc.strerror or exc}")
            return None, label
    else:
        label = TSA_ROOTS
        try:
            data = bundle.read(TSA_ROOTS, 1 << 20)
        except MemberError as exc:
            c.member_fail(TSA_ROOTS, f"{exc}: the timestamps cannot be checked")
            return None, label
        print(
            f"NOTE: the timestamps are checked against {TSA_ROOTS}, the bundle's own copy of the "
            "authority's root: compare it with the root the authority publishes, or run again "
            "with --tsa-roots <that root> (README.txt)"
        )
    try:
        return load_roots(data), label
    except ValueError as exc:
        c.fail(f"{label}: not PEM certificates ({exc})")
        return None, label


def check_stamp(
    bundle: Bundle,
    c: Checker,
    name: str,
    key: Ed25519PublicKey | None,
    sth: TreeHead | None,
    roots: tuple[list[Any] | None, str],
    library: bool,
) -> tuple[int, str, str] | None:
    """One ``timestamps/<size>.json``: (its head's size, the time, the authority) when the
    head's signature, its consistency with ``tree_head.json`` and the timestamp all verify."""
    try:
        stamp = Stamp(parse_json(bundle.read(name)))
    except MemberError as exc:
        c.member_fail(name, str(exc))
        return None
    except FieldError as exc:
        c.fail(f"{name}: {exc}")
        return None
    except ValueError as exc:
        c.fail(f"{name}: not valid JSON: {exc}")
        return None
    head, failures = stamp.head, c.failures
    match = _STAMP.match(name)
    if match is None or int(match.group(1)) != head.tree_size:
        c.fail(f"{name}: holds a tree head of size {head.tree_size}, not the one it is named for")
    if key is None:
        c.fail(f"{name}: tree head signature not checked (no usable public_key.pem)")
    elif not verify_signature(key, head.signature, head.message()):
        c.fail(f"{name}: the signature of its tree head does not verify with public_key.pem")
    if sth is None:
        c.fail(f"{name}: consistency not checked (no usable tree_head.json)")
    elif stamp.to_tree_size != sth.tree_size:
        c.fail(f"{name}: its proof is to tree size {stamp.to_tree_size}, not {sth.tree_size}")
    elif not consistent(
        head.tree_size,
        sth.tree_size,
        bytes.fromhex(head.root_hash),
        bytes.fromhex(sth.root_hash),
        stamp.path,
    ):
        c.fail(
            f"{name}: the consistency proof from tree size {head.tree_size} does not link it to "
            f"tree_head.json (size {sth.tree_size}, root {sth.root_hash})"
        )
    certificates, label = roots
    if not library:
        c.fail(f"{name}: cannot check RFC 3161 timestamps: pip install rfc3161-client")
        return None
    if certificates is None:
        c.fail(f"{name}: RFC 3161 timestamp not checked (no usable root certificate)")
        return None
    try:
        when, authority = rfc3161_check(stamp.response, head.message(), certificates)
    except ValueError as exc:
        c.fail(f"{name}: the RFC 3161 timestamp does not verify with {label}: {exc}")
        return None
    if stamp.said != (when, authority):
        c.fail(
            f"{name}: says {brief(stamp.said[0])} by {brief(stamp.said[1])}, but its RFC 3161 "
            f"response says {when} by {authority}"
        )
    if c.failures != failures:
        return None
    c.ok(
        f"{name}: tree head of size {head.tree_size} timestamped {when} by {authority} "
        "(RFC 3161), consistent with tree_head.json"
    )
    return head.tree_size, when, authority


def check_timestamps(
    bundle: Bundle,
    c: Checker,
    key: Ed25519PublicKey | None,
    sth: TreeHead | None,
    given_roots: Path | None,
) -> list[tuple[int, str, str]]:
    """Every ``timestamps/<size>.json``; returns those that verify, smallest head first."""
    found = {}
    for name in bundle.file_names():
        match = _STAMP.match(name)
        if match is not None and name not in bundle.blocked:
            found[int(match.group(1))] = name
    if not found:
        return []
    try:
        import rfc3161_client  # noqa: F401
    except ImportError:
        library = False
    else:
        library = True
    roots = tsa_roots(bundle, c, given_roots) if library else (None, "")
    checked = [check_stamp(bundle, c, found[n], key, sth, roots, library) for n in sorted(found)]
    return [stamp for stamp in checked if stamp is not None]


# -- running ---------------------------------------------------------------------------------


def open_source(location: Path) -> ZipSource | DirSource:
    if location.is_dir():
        return DirSource(location)
    return ZipSource(location)


def self_hash() -> str:
    """The SHA-256 (hex) of this checker's own file; raises OSError when it cannot be read."""
    return hashlib.sha256(Path(__file__).resolve().read_bytes()).hexdigest()


def about_checker(location: Path) -> None:
    """Which checker runs, so that its SHA-256 can be compared with another copy's."""
    me = Path(__file__).resolve()
    try:
        print(f"checker: {me.name} SHA-256 {self_hash()}")
    except OSError:
        print(f"checker: {me} (cannot be read to show its SHA-256)")
    if location.is_dir() and location.resolve() in me.parents:
        print(
            "NOTE: this checker is the copy inside the bundle, and a forged bundle can carry a "
            "forged checker: use a verify.py obtained from the inspectd project (README.txt)"
        )


def run(location: Path, expect_key_id: str | None = None, tsa_roots: Path | None = None) -> int:
    """Check the bundle at ``location`` (a zip or a folder); returns the exit status.
    ``tsa_roots``: a PEM file of the time-stamping authorities' roots, obtained from them."""
    try:
        import cryptography  # noqa: F401
    except ImportError:
        print("FAIL: the 'cryptography' package is needed: pip install cryptography")
        return EXIT_UNREADABLE
    expect = None if expect_key_id is None else expect_key_id.strip().lower()
    if expect is not None and not _HEX64.match(expect):
        print(f"FAIL: --expect-key-id {brief(expect_key_id)} is not a key id (64 hex digits)")
        return EXIT_UNREADABLE
    try:
        source = open_source(location)
    except zipfile.BadZipFile as exc:
        print(f"FAIL: cannot read {location}: not a whole zip file ({exc}): truncated?")
        return EXIT_UNREADABLE
    except (OSError, *_READ_ERRORS) as exc:
        print(f"FAIL: cannot read {location}: {describe(exc)}")
        return EXIT_UNREADABLE
    c = Checker()
    try:
        about_checker(location)
        bundle = Bundle(source)
        check_container(bundle, c)
        key, kid = check_key(bundle, c, expect)
        manifest = check_manifest(bundle, c, key, kid)
        gone, matched = (set(), set()) if manifest is None else check_members(bundle, c, manifest)
        sth = check_tree_head(bundle, c, key, kid, manifest)
        stamps = check_timestamps(bundle, c, key, sth, tsa_roots)
        ids = manifest.items if manifest is not None else found_items(bundle)
        if not ids:
            c.fail("the bundle holds no items")
        for item_id in ids:
            if item_id in gone:
                continue
            leaf = check_item(bundle, c, item_id, sth)
            # The earliest stamped head that holds the item's leaf: it existed by that time.
            covering = [s for s in stamps if leaf is not None and leaf < s[0]]
            if covering:
                _, when, authority = covering[0]
                c.ok(f"item {item_id} existed by {when} ({authority})")
        for name in sorted(matched):
            if name.startswith("credentials/") and name != TRUST_ANCHOR:
                c.ok(
                    f"{name}: a copy with content credentials, as the manifest lists it (its "
                    "C2PA manifest is for C2PA tools: README.txt)"
                )
    finally:
        source.close()
    if expect is None:
        print(
            "UNPINNED: the key was not compared with the merchant's (no --expect-key-id): a "
            "bundle forged and signed with another key passes every check above. Run again "
            "with --expect-key-id <the key id the merchant gave you>."
        )
    if c.failures:
        print(f"RESULT: FAIL ({c.failures} check(s) failed)")
        return EXIT_FAILED
    if expect is None:
        print(f"RESULT: UNPINNED ({len(ids)} item(s) checked, but not against the merchant's key)")
        return EXIT_UNPINNED
    print(f"RESULT: OK ({len(ids)} item(s) verified)")
    return EXIT_OK


def _installed() -> bool:
    """This checker runs from the inspectd package (``evidence/verify.py``, the
    ``inspectd-verify`` command), not from a folder of its own such as an extracted bundle."""
    return Path(__file__).with_name("__init__.py").is_file()


def main(argv: list[str] | None = None) -> int:
    reconfigure = getattr(sys.stdout, "reconfigure", None)
    if reconfigure is not None:
        reconfigure(errors="backslashreplace")  # odd names never stop the report
    parser = argparse.ArgumentParser(description="Verify an inspectd evidence bundle offline.")
    parser.add_argument(
        "bundle",
        nargs="?",
        help="bundle .zip or extracted folder (default: this script's folder, for the copy "
        "inside an extracted bundle)",
    )
    parser.add_argument(
        "--self-hash",
        action="store_true",
        help="print the SHA-256 of this checker's own file (as sha256sum prints it) and exit",
    )
    parser.add_argument(
        "--expect-key-id",
        help="the merchant's key id (64 hex digits), obtained from the merchant, not the bundle",
    )
    parser.add_argument(
        "--tsa-roots",
        type=Path,
        help="PEM file of the time-stamping authority's root certificate, obtained from the "
        "authority (default: the bundle's timestamps/tsa_roots.pem)",
    )
    args = parser.parse_args(argv)
    if args.self_hash:
        me = Path(__file__).resolve()
        try:
            print(f"{self_hash()}  {me}")
        except OSError as exc:
            print(f"FAIL: cannot read {me}: {describe(exc)}")
            return EXIT_UNREADABLE
        return EXIT_OK
    if not args.bundle and _installed():
        parser.error("name the bundle: a .zip or the folder it was extracted to")
    location = Path(args.bundle) if args.bundle else Path(__file__).resolve().parent
    try:
        return run(location, args.expect_key_id, args.tsa_roots)
    except KeyboardInterrupt:
        message = "FAIL: interrupted"
    except Exception as exc:  # the last resort: a checker must never end in a traceback
        message = f"FAIL: internal error: {type(exc).__name__}: {exc}"
    try:
        print(message)
    except OSError:  # stdout itself is gone (a closed pipe)
        pass
    return EXIT_UNREADABLE


if __name__ == "__main__":
    sys.exit(main())
