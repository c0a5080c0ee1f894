#!/usr/bin/env python3
"""Verify an inspectd evidence bundle offline: ``python verify.py bundle.zip`` (or a folder).

Needs Python 3.9+ and the ``cryptography`` package; nothing else. It checks, and prints one
line per check ("OK: ..." or "FAIL: ..."):

1. every media file's SHA-256 and size against the item's ``record.json``;
2. the RFC 9162 leaf hash SHA-256(0x00 || record.json bytes) against ``inclusion_proof.json``;
3. the inclusion proof (RFC 9162 section 2.1.3.2) from that leaf to the root in
   ``tree_head.json``;
4. the Ed25519 signature of ``tree_head.json`` with ``public_key.pem``. The signed message is
   the canonical JSON (sorted keys, no spaces, UTF-8) of ``key_id``, ``root_hash``,
   ``timestamp``, ``tree_size`` and ``version``. The key id (SHA-256 of the raw public key)
   is printed: compare it with the one the merchant publishes (or pass ``--expect-key-id``).

Exit status: 0 when every check passes, 1 when any fails, 2 when the bundle cannot be read.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import sys
import zipfile
from pathlib import Path
from typing import IO, Any

STH_VERSION = "inspectd-sth/1"


class Bundle:
    """Read access to a zip file or an extracted folder, by '/'-separated member name."""

    def __init__(self, location: Path) -> None:
        self._zip: zipfile.ZipFile | None = None
        self._dir: Path | None = None
        if location.is_dir():
            self._dir = location
        else:
            self._zip = zipfile.ZipFile(location)

    def names(self) -> list[str]:
        if self._zip is not None:
            return [n for n in self._zip.namelist() if not n.endswith("/")]
        assert self._dir is not None
        return sorted(
            p.relative_to(self._dir).as_posix() for p in self._dir.rglob("*") if p.is_file()
        )

    def exists(self, name: str) -> bool:
        return name in set(self.names())

    def read(self, name: str) -> bytes:
        with self.open(name) as f:
            return f.read()

    def open(self, name: str) -> IO[bytes]:
        if self._zip is not None:
            return self._zip.open(name)
        assert self._dir is not None
        return (self._dir / name).open("rb")


class Checker:
    def __init__(self) -> None:
        self.failures = 0

    def ok(self, message: str) -> None:
        print(f"OK: {message}")

    def fail(self, message: str) -> None:
        self.failures += 1
        print(f"FAIL: {message}")


def sha256_stream(f: IO[bytes]) -> tuple[str, int]:
    digest = hashlib.sha256()
    size = 0
    while True:
        chunk = f.read(1 << 20)
        if not chunk:
            return digest.hexdigest(), size
        digest.update(chunk)
        size += len(chunk)


def node_hash(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(b"\x01" + left + right).digest()


def root_from_path(index: int, size: int, leaf: bytes, path: list[bytes]) -> bytes | None:
    """RFC 9162 section 2.1.3.2; None when the path is malformed for (index, size)."""
    if not 0 <= index < size:
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


def sth_message(sth: dict[str, Any]) -> bytes:
    body = {
        "key_id": sth["key_id"],
        "root_hash": sth["root_hash"],
        "timestamp": sth["timestamp"],
        "tree_size": sth["tree_size"],
        "version": STH_VERSION,
    }
    return json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def item_ids(bundle: Bundle) -> list[str]:
    ids = {n.split("/")[1] for n in bundle.names() if n.startswith("items/") and n.count("/") >= 2}
    return sorted(ids)


def check_tree_head(bundle: Bundle, c: Checker, expect_key_id: str | None) -> dict[str, Any]:
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    sth: dict[str, Any] = json.loads(bundle.read("tree_head.json"))
    try:
        key = serialization.load_pem_public_key(bundle.read("public_key.pem"))
    except ValueError as exc:
        c.fail(f"public_key.pem cannot be read: {exc}")
        return sth
    if not isinstance(key, Ed25519PublicKey):
        c.fail("public_key.pem is not an Ed25519 key")
        return sth
    raw = key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    kid = hashlib.sha256(raw).hexdigest()
    print(f"key id (SHA-256 of the public key): {kid}")
    if expect_key_id is not None:
        if kid == expect_key_id.lower():
            c.ok("public key is the one expected (--expect-key-id)")
        else:
            c.fail(f"public key id {kid} is not the expected {expect_key_id}")
    if sth.get("version") != STH_VERSION:
        c.fail(f"tree_head.json has unknown version {sth.get('version')!r}")
    if sth.get("key_id") != kid:
        c.fail(f"tree_head.json names key {sth.get('key_id')} but public_key.pem is key {kid}")
    try:
        key.verify(base64.b64decode(sth["signature"], validate=True), sth_message(sth))
    except (InvalidSignature, ValueError, KeyError):
        c.fail(
            f"tree head signature (tree size {sth.get('tree_size')}) does not verify with "
            f"public_key.pem"
        )
    else:
        c.ok(
            f"tree head signature verifies (tree size {sth['tree_size']}, root {sth['root_hash']})"
        )
    return sth


def check_item(bundle: Bundle, item_id: str, sth: dict[str, Any], c: Checker) -> None:
    base = f"items/{item_id}"
    try:
        record_bytes = bundle.read(f"{base}/record.json")
        record: dict[str, Any] = json.loads(record_bytes)
        proof: dict[str, Any] = json.loads(bundle.read(f"{base}/inclusion_proof.json"))
    except (KeyError, FileNotFoundError, ValueError) as exc:
        c.fail(f"item {item_id}: record.json or inclusion_proof.json missing or unreadable: {exc}")
        return
    if record.get("item_id") != item_id:
        c.fail(f"item {item_id}: record.json names item {record.get('item_id')!r}")
    listed = {f"{base}/{f['name']}": f for f in record.get("files", [])}
    for name, meta in listed.items():
        try:
            with bundle.open(name) as f:
                digest, size = sha256_stream(f)
        except (KeyError, FileNotFoundError):
            c.fail(f"{name}: file is missing from the bundle")
            continue
        if digest != meta["sha256"]:
            c.fail(f"{name}: SHA-256 is {digest}, record.json says {meta['sha256']} (altered)")
        elif size != meta["size"]:
            c.fail(f"{name}: size is {size} bytes, record.json says {meta['size']}")
        else:
            c.ok(f"{name}: SHA-256 matches record.json")
    known = set(listed) | {f"{base}/record.json", f"{base}/inclusion_proof.json"}
    for name in bundle.names():
        if name.startswith(base + "/") and name not in known:
            c.fail(f"{name}: file is not listed in record.json")

    leaf = hashlib.sha256(b"\x00" + record_bytes).digest()
    if leaf.hex() == proof.get("leaf_hash"):
        c.ok(f"item {item_id}: record.json matches leaf hash {leaf.hex()}")
    else:
        c.fail(
            f"item {item_id}: record.json hashes to leaf {leaf.hex()}, but the logged leaf is "
            f"{proof.get('leaf_hash')} (record.json was edited)"
        )
    index, size = int(proof.get("leaf_index", -1)), int(proof.get("tree_size", -1))
    if size != sth.get("tree_size"):
        c.fail(
            f"item {item_id}: inclusion proof is for tree size {size}, "
            f"but tree_head.json is for size {sth.get('tree_size')}"
        )
        return
    try:
        path = [bytes.fromhex(h) for h in proof.get("audit_path", [])]
        root = root_from_path(index, size, leaf, path)
    except ValueError:
        root = None
    if root is not None and root.hex() == sth.get("root_hash"):
        c.ok(f"item {item_id}: inclusion proof verifies (leaf {index} of {size})")
    else:
        c.fail(
            f"item {item_id}: inclusion proof (leaf {index} of {size}) does not lead to the "
            f"signed root {sth.get('root_hash')}"
        )


def run(location: Path, expect_key_id: str | None = None) -> int:
    try:
        bundle = Bundle(location)
        for required in ("tree_head.json", "public_key.pem"):
            if not bundle.exists(required):
                print(f"FAIL: {required} is missing from the bundle")
                return 1
    except (OSError, zipfile.BadZipFile) as exc:
        print(f"FAIL: cannot read {location}: {exc}")
        return 2
    c = Checker()
    sth = check_tree_head(bundle, c, expect_key_id)
    ids = item_ids(bundle)
    if not ids:
        c.fail("the bundle holds no items")
    for item_id in ids:
        check_item(bundle, item_id, sth, c)
    if c.failures:
        print(f"RESULT: FAIL ({c.failures} check(s) failed)")
        return 1
    print(f"RESULT: OK ({len(ids)} item(s) verified)")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Verify an inspectd evidence bundle offline.")
    parser.add_argument(
        "bundle", nargs="?", help="bundle .zip or extracted folder (default: this script's folder)"
    )
    parser.add_argument("--expect-key-id", help="the merchant's published key id (hex)")
    args = parser.parse_args(argv)
    location = Path(args.bundle) if args.bundle else Path(__file__).resolve().parent
    return run(location, args.expect_key_id)


if __name__ == "__main__":
    sys.exit(main())
