from __future__ import annotations

import ast
import base64
import hashlib
import json
import subprocess
import sys
import tomllib
import zipfile
from collections.abc import Callable
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from evidence import EvidenceArchive, EvidenceItem, InvalidRecord, SigningKey, export_bundle

from .conftest import make_files, make_record

VERIFY_SOURCE = Path(__file__).parents[2] / "evidence" / "verify.py"


def run_verify(target: Path, *extra: str) -> tuple[int, str]:
    done = subprocess.run(
        [
            sys.executable,
            str(target / "verify.py") if target.is_dir() else str(VERIFY_SOURCE),
            *([] if target.is_dir() else [str(target)]),
            *extra,
        ],
        capture_output=True,
        text=True,
        timeout=30,
    )
    return done.returncode, done.stdout + done.stderr


def fails(output: str) -> list[str]:
    return [line for line in output.splitlines() if line.startswith("FAIL")]


@pytest.fixture
async def bundle(archive: EvidenceArchive, tmp_path: Path) -> tuple[Path, list[EvidenceItem]]:
    a = await archive.add_item(make_files(tmp_path / "a", "a"), make_record(), actor="agent-7")
    b = await archive.add_item(
        make_files(tmp_path / "b", "b", snapshot=False),
        make_record(order_id="ORD-1", logistics_stage="last_mile"),
        actor="agent-8",
    )
    for _ in range(5):  # the items are not at the end of the log
        await archive.get(a.item_id, actor="reviewer", reason="prepare claim")
    path = await export_bundle(
        archive,
        [a.item_id, b.item_id],
        actor="reviewer",
        reason="UPS claim 778",
        dest_dir=tmp_path / "out",
    )
    target = tmp_path / "bundle"
    with zipfile.ZipFile(path) as zf:
        zf.extractall(target)
    return target, [a, b]


async def test_clean_bundle_verifies_and_export_is_logged(
    archive: EvidenceArchive, bundle: tuple[Path, list[EvidenceItem]], tmp_path: Path
) -> None:
    target, (a, b) = bundle
    zips = list((tmp_path / "out").glob("*.zip"))
    assert len(zips) == 1 and not list((tmp_path / "out").glob("*.part"))
    with zipfile.ZipFile(zips[0]) as zf:
        assert sorted(zf.namelist()) == sorted(
            [
                f"items/{a.item_id}/clip.webm",
                f"items/{a.item_id}/snapshot.jpg",
                f"items/{a.item_id}/record.json",
                f"items/{a.item_id}/inclusion_proof.json",
                f"items/{b.item_id}/clip.webm",
                f"items/{b.item_id}/record.json",
                f"items/{b.item_id}/inclusion_proof.json",
                "tree_head.json",
                "public_key.pem",
                "summary.html",
                "verify.py",
                "README.txt",
                "manifest.json",
                "manifest.sig",
            ]
        )
    assert (target / "verify.py").read_bytes() == VERIFY_SOURCE.read_bytes()

    code, out = run_verify(zips[0], "--expect-key-id", archive.key_id)
    assert code == 0, out
    assert fails(out) == [] and out.rstrip().endswith("RESULT: OK (2 item(s) verified)")
    assert f"key id (SHA-256 of the public key): {archive.key_id}" in out
    code, out = run_verify(target)  # extracted, run from inside, no key: all OK, yet unpinned
    assert code == 3, out
    assert fails(out) == [] and "\nUNPINNED: " in out

    summary = (target / "summary.html").read_text()
    assert a.item_id in summary and "1Z999" in summary and a.files[0].sha256 in summary
    assert "http" not in summary.lower().replace("http-equiv", "")
    for item in (a, b):
        kinds = [e.kind.value for e in await archive.log_entries(item.item_id)]
        assert kinds[-1] == "item.exported"
    sth = json.loads((target / "tree_head.json").read_text())
    # The proofs cover the item.exported entries; bundle.exported (its manifest's hash) follows.
    assert sth["tree_size"] == archive.log.size - 1
    last = (await archive.log.entries())[-1]
    assert last.kind.value == "bundle.exported" and last.index == sth["tree_size"]


def flip_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))


def edit_json(path: Path, change: Callable[[dict[str, object]], None]) -> None:
    document = json.loads(path.read_bytes())
    change(document)
    path.write_text(json.dumps(document))


async def test_flipped_byte_names_the_file(bundle: tuple[Path, list[EvidenceItem]]) -> None:
    target, (a, _) = bundle
    flip_byte(target / "items" / a.item_id / "clip.webm")
    code, out = run_verify(target)
    assert code == 1
    # Named twice: it differs from the signed manifest and from the logged record.
    against_manifest, against_record = fails(out)
    assert against_manifest.startswith(f"FAIL: items/{a.item_id}/clip.webm: SHA-256 is ")
    assert against_manifest.endswith("the manifest says " + a.files[0].sha256 + " (altered)")
    assert against_record.startswith(f"FAIL: items/{a.item_id}/clip.webm: SHA-256 is ")
    assert against_record.endswith(f"record.json says {a.files[0].sha256} (altered)")
    assert f"OK: items/{a.item_id}/snapshot.jpg" in out


async def test_edited_record_fails_leaf_and_inclusion(
    bundle: tuple[Path, list[EvidenceItem]],
) -> None:
    target, (_, b) = bundle
    record = target / "items" / b.item_id / "record.json"
    record.write_bytes(record.read_bytes().replace(b"last_mile", b"packing"))
    code, out = run_verify(target)
    assert code == 1
    failed = fails(out)
    assert len(failed) == 3
    assert failed[0].startswith(f"FAIL: items/{b.item_id}/record.json: SHA-256 is ")
    assert f"item {b.item_id}: record.json hashes to leaf" in failed[1]
    assert "record.json was edited" in failed[1]
    assert f"item {b.item_id}: inclusion proof" in failed[2]


@pytest.mark.parametrize("how", ["drop", "alter", "swap_index"])
async def test_broken_proof_fails_inclusion(
    bundle: tuple[Path, list[EvidenceItem]], how: str
) -> None:
    target, (a, _) = bundle

    def change(proof: dict[str, object]) -> None:
        path = proof["audit_path"]
        assert isinstance(path, list) and len(path) >= 2
        if how == "drop":
            path.pop(0)
        elif how == "alter":
            path[1] = "00" * 32
        else:
            proof["leaf_index"] = int(str(proof["leaf_index"])) + 1

    edit_json(target / "items" / a.item_id / "inclusion_proof.json", change)
    code, out = run_verify(target)
    assert code == 1
    against_manifest, failed = fails(out)
    assert against_manifest.startswith(f"FAIL: items/{a.item_id}/inclusion_proof.json: SHA-256")
    assert failed.startswith(f"FAIL: item {a.item_id}: inclusion proof (leaf ")
    assert failed.endswith(
        "does not lead to the signed root "
        + json.loads((target / "tree_head.json").read_text())["root_hash"]
    )


async def test_tree_head_of_another_size_fails(
    archive: EvidenceArchive, bundle: tuple[Path, list[EvidenceItem]]
) -> None:
    target, (a, b) = bundle
    sth_root = json.loads((target / "tree_head.json").read_text())["root_hash"]
    await archive.get(a.item_id, actor="reviewer", reason="one more look")
    newer = archive.tree_head()  # validly signed, but for a larger log
    (target / "tree_head.json").write_text(json.dumps(newer.to_json()))
    code, out = run_verify(target)
    assert code == 1
    old_size = newer.tree_size - 2  # bundle.exported, then the look above
    failed = fails(out)
    assert failed[0].startswith("FAIL: tree_head.json: SHA-256 is ")
    assert failed[1].startswith(f"FAIL: tree_head.json is for tree size {newer.tree_size}")
    assert failed[1].endswith(f"but the manifest says tree size {old_size}, root {sth_root}")
    assert sorted(failed[2:]) == sorted(
        f"FAIL: item {item.item_id}: inclusion proof is for tree size {old_size}, "
        f"but tree_head.json is for size {newer.tree_size}"
        for item in (a, b)
    )
    assert "OK: tree head signature verifies" in out


async def test_signature_from_another_key_fails(
    archive: EvidenceArchive, bundle: tuple[Path, list[EvidenceItem]]
) -> None:
    target, _ = bundle
    sth_path = target / "tree_head.json"
    original = sth_path.read_text()
    intruder = SigningKey(Ed25519PrivateKey.generate())
    sth = json.loads(original)
    manifest_altered = "FAIL: tree_head.json: SHA-256 is "

    # Signed by another key, claiming the merchant's key id: the signature fails.
    forged = intruder.sign_tree_head(sth["tree_size"], bytes.fromhex(sth["root_hash"]), 1)
    sth_forged = {**forged.to_json(), "key_id": sth["key_id"]}
    sth_path.write_text(json.dumps(sth_forged))
    code, out = run_verify(target)
    assert code == 1
    assert fails(out)[0].startswith(manifest_altered)
    assert fails(out)[1:] == [
        f"FAIL: tree head signature (tree size {sth['tree_size']}) does not verify with "
        "public_key.pem"
    ]

    # Re-signed with another key and that key's public key swapped in: the tree head is
    # self-consistent, but the manifest, signed by the merchant, no longer verifies (a forger
    # must sign it too: test_tamper.test_a_forgery_signed_with_another_key).
    sth_path.write_text(json.dumps(forged.to_json()))
    (target / "public_key.pem").write_text(intruder.public_key_pem())
    code, out = run_verify(target, "--expect-key-id", archive.key_id)
    assert code == 1
    assert intruder.key_id in out
    failed = fails(out)
    assert (
        failed[0] == f"FAIL: public key id {intruder.key_id} is not the expected {archive.key_id}"
    )
    assert failed[1].startswith("FAIL: manifest.json: the signature in manifest.sig does not")
    assert failed[2] == (
        f"FAIL: manifest.json names key {archive.key_id} but public_key.pem is key "
        f"{intruder.key_id}"
    )

    # Only the public key swapped: key id and signature both fail.
    sth_path.write_text(original)
    code, out = run_verify(target)
    assert code == 1
    assert any("names key" in line and "tree_head.json" in line for line in fails(out))
    assert any(line.startswith("FAIL: tree head signature") for line in fails(out))


async def test_bad_signature_encoding_and_missing_file(
    bundle: tuple[Path, list[EvidenceItem]],
) -> None:
    target, (a, _) = bundle
    edit_json(
        target / "tree_head.json",
        lambda sth: sth.update(signature=base64.b64encode(b"x" * 64).decode()),
    )
    (target / "items" / a.item_id / "snapshot.jpg").unlink()
    code, out = run_verify(target)
    assert code == 1
    assert any("signature" in line for line in fails(out))
    assert f"FAIL: items/{a.item_id}/snapshot.jpg: file is missing from the bundle" in out


def test_verify_is_standalone() -> None:
    # It runs on the recipient's Python: 3.9 grammar (no match, no parenthesised withs).
    tree = ast.parse(VERIFY_SOURCE.read_text(), feature_version=(3, 9))
    imported = {
        (node.module or "") if isinstance(node, ast.ImportFrom) else alias.name
        for node in ast.walk(tree)
        if isinstance(node, ast.Import | ast.ImportFrom)
        for alias in node.names
    }
    roots = {name.split(".")[0] for name in imported}
    assert roots - set(sys.stdlib_module_names) == {"cryptography", "rfc3161_client"}
    # rfc3161-client only where a bundle has timestamps: never at the top of the module.
    top = {alias.name for node in tree.body if isinstance(node, ast.Import) for alias in node.names}
    top |= {node.module or "" for node in tree.body if isinstance(node, ast.ImportFrom)}
    assert not {name for name in top if name.startswith(("rfc3161_client", "cryptography"))}


def test_the_checker_is_a_console_script_that_prints_its_own_sha256(
    bundle: tuple[Path, list[EvidenceItem]],
) -> None:
    """README.txt and summary.html name ``inspectd-verify`` and ``--self-hash``: they exist,
    and every copy of the checker prints the same SHA-256, that of evidence/verify.py."""
    target, _ = bundle
    digest = hashlib.sha256(VERIFY_SOURCE.read_bytes()).hexdigest()
    pyproject = tomllib.loads((VERIFY_SOURCE.parents[1] / "pyproject.toml").read_text())
    assert pyproject["project"]["scripts"]["inspectd-verify"] == "evidence.verify:main"
    script = Path(sys.executable).with_name("inspectd-verify")
    assert script.is_file(), "inspectd-verify is not installed: make .venv/.installed-dev"
    for command in (
        [str(script), "--self-hash"],
        [sys.executable, str(VERIFY_SOURCE), "--self-hash"],
        [sys.executable, str(target / "verify.py"), "--self-hash"],  # the bundle's copy
    ):
        done = subprocess.run(command, capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stderr
        printed, _, where = done.stdout.rstrip("\n").partition("  ")
        assert printed == digest and where.endswith("verify.py"), done.stdout
    done = subprocess.run([str(script), "--help"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "--expect-key-id" in done.stdout and "--self-hash" in done.stdout
    # The installed checker with no bundle named: a usage error, not a check of its own folder.
    done = subprocess.run([str(script)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and "name the bundle" in done.stderr, done.stdout
    code, out = run_verify(target)  # the bundle's copy, with no argument, checks its folder
    assert code == 3 and f"checker: verify.py SHA-256 {digest}" in out, out


async def test_a_media_file_named_like_a_bundle_document_is_refused(
    archive: EvidenceArchive, tmp_path: Path
) -> None:
    files = make_files(tmp_path / "a", "a", snapshot=False)
    item = await archive.add_item([("record.json", files[0][1])], make_record(), actor="agent-7")
    size = archive.log.size
    with pytest.raises(InvalidRecord, match="reserves"):
        await export_bundle(
            archive, [item.item_id], actor="reviewer", reason="claim", dest_dir=tmp_path / "out"
        )
    assert archive.log.size == size  # refused before anything was logged
    assert not (tmp_path / "out").exists()


async def test_a_bundle_whose_export_cannot_be_logged_is_not_left_behind(
    archive: EvidenceArchive, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    item = await archive.add_item(make_files(tmp_path / "a", "a"), make_record(), actor="agent-7")

    async def refuse(*_: object, **__: object) -> None:
        raise OSError("the log is gone")

    monkeypatch.setattr(archive, "record_bundle", refuse)
    with pytest.raises(OSError, match="the log is gone"):
        await export_bundle(
            archive, [item.item_id], actor="reviewer", reason="claim", dest_dir=tmp_path / "out"
        )
    assert list((tmp_path / "out").iterdir()) == []
