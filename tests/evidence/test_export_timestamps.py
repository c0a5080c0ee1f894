"""Outside timestamps in bundles, end to end with a local ``openssl ts`` authority on loopback:
stamped heads go into ``timestamps/`` with their consistency proofs and the authority's root,
the project's verify.py checks them offline and says which item existed by when; an authority
that was down leaves a bundle that still verifies (without that line); a changed head, a proof
that does not link, another root or another response fail naming the file; without
rfc3161-client the checker says what to install."""

from __future__ import annotations

import base64
import hashlib
import json
import subprocess
import sys
import zipfile
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from evidence import (
    EvidenceArchive,
    EvidenceItem,
    StampedHead,
    canonical_json,
    export_bundle,
    load_certificates,
    request_for,
)
from tests.fakes.tsa import LocalTsa, TsaError

from .conftest import make_files, make_record

VERIFY_SOURCE = Path(__file__).parents[2] / "evidence" / "verify.py"
AUTHORITY = "CN=inspectd test TSA"


@dataclass
class Outcome:
    code: int
    out: str

    @property
    def fails(self) -> list[str]:
        return [line for line in self.out.splitlines() if line.startswith("FAIL")]


def verify(target: Path, *args: str, block_rfc3161: bool = False) -> Outcome:
    """The project's verify.py on ``target``; ``block_rfc3161``: as if rfc3161-client were not
    installed."""
    code = (
        "import runpy, sys\n"
        + ("sys.modules['rfc3161_client'] = None\n" if block_rfc3161 else "")
        + f"sys.argv = {[str(VERIFY_SOURCE), str(target), *args]!r}\n"
        + f"runpy.run_path({str(VERIFY_SOURCE)!r}, run_name='__main__')\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    outcome = Outcome(done.returncode, done.stdout + done.stderr)
    assert "Traceback" not in outcome.out, outcome.out
    return outcome


@pytest.fixture
async def tsa() -> AsyncIterator[LocalTsa]:
    authority = await LocalTsa().start()
    yield authority
    await authority.aclose()


@dataclass
class Stamped:
    path: Path
    archive: EvidenceArchive
    items: list[EvidenceItem]  # a, b stamped (by two heads), c added after the last stamp
    stamps: list[StampedHead]

    def pinned(self, target: Path | None = None, *args: str) -> Outcome:
        return verify(target or self.path, "--expect-key-id", self.archive.key_id, *args)


@pytest.fixture
async def stamped(archive: EvidenceArchive, tsa: LocalTsa, tmp_path: Path) -> Stamped:
    roots = load_certificates(tsa.root_pem)
    items, stamps = [], []
    for tag in ("a", "b", "c"):
        files = make_files(tmp_path / tag, tag)
        items.append(await archive.add_item(files, make_record(), actor="agent-7"))
        if tag != "c":
            stamp = await archive.stamp(tsa.client(), roots)
            assert stamp is not None
            stamps.append(stamp)
    path = await export_bundle(
        archive, [i.item_id for i in items], actor="reviewer", reason="claim 9", dest_dir=tmp_path
    )
    return Stamped(path, archive, items, stamps)


def existed(item: EvidenceItem, stamp: StampedHead) -> str:
    return f"OK: item {item.item_id} existed by {stamp.gen_time.isoformat()} ({AUTHORITY})"


async def test_stamped_items_verify_with_the_time_they_existed_by(
    stamped: Stamped, tsa: LocalTsa, tmp_path: Path
) -> None:
    (a, b, c), (first, second) = stamped.items, stamped.stamps
    assert (first.tree_size, second.tree_size) == (1, 3)
    with zipfile.ZipFile(stamped.path) as zf:
        names = set(zf.namelist())
        manifest = json.loads(zf.read("manifest.json"))
        document = json.loads(zf.read("timestamps/1.json"))
        summary = zf.read("summary.html").decode()
        readme = zf.read("README.txt").decode()
        sth = json.loads(zf.read("tree_head.json"))
        assert zf.read("timestamps/tsa_roots.pem") == tsa.root_pem
    stamp_members = {"timestamps/1.json", "timestamps/3.json", "timestamps/tsa_roots.pem"}
    assert stamp_members <= names and stamp_members <= set(manifest["members"])
    assert document["tree_head"] == first.tree_head.to_json()
    assert base64.b64decode(document["response"]) == first.response
    assert document["to_tree_size"] == sth["tree_size"]

    result = stamped.pinned()
    assert result.code == 0 and result.fails == [], result.out
    assert result.out.rstrip().endswith("RESULT: OK (3 item(s) verified)")
    lines = result.out.splitlines()
    assert existed(a, first) in lines and existed(b, second) in lines
    assert not any(f"item {c.item_id} existed by" in line for line in lines)
    assert any(
        line.startswith("OK: timestamps/3.json: tree head of size 3 timestamped ")
        and line.endswith(f"by {AUTHORITY} (RFC 3161), consistent with tree_head.json")
        for line in lines
    )
    assert "NOTE: the timestamps are checked against timestamps/tsa_roots.pem" in result.out

    folder = tmp_path / "extracted"  # the same, extracted
    with zipfile.ZipFile(stamped.path) as zf:
        zf.extractall(folder)
    result = stamped.pinned(folder)
    assert result.code == 0 and existed(b, second) in result.out.splitlines(), result.out

    # With the root obtained from the authority itself: no note, the same result.
    root_file = tmp_path / "tsa-root.pem"
    root_file.write_bytes(tsa.root_pem)
    result = stamped.pinned(None, "--tsa-roots", str(root_file))
    assert result.code == 0 and existed(a, first) in result.out.splitlines()
    assert "NOTE: the timestamps" not in result.out

    assert f"existed by {first.gen_time.isoformat()} ({AUTHORITY}, RFC 3161" in summary
    assert "no RFC 3161 timestamp covers its log entry yet" in summary  # item c
    assert "obtain the TSA's root certificate from the TSA itself" in " ".join(readme.split())
    assert "--tsa-roots" in readme and "pip install rfc3161-client" in readme


async def test_a_root_from_another_authority_fails_every_timestamp(
    stamped: Stamped, tmp_path: Path
) -> None:
    other = await LocalTsa().start()
    try:
        root_file = tmp_path / "other-root.pem"
        root_file.write_bytes(other.root_pem)
    finally:
        await other.aclose()
    result = stamped.pinned(None, "--tsa-roots", str(root_file))
    assert result.code == 1
    assert len(result.fails) == 2 and all(
        f.startswith(f"FAIL: timestamps/{n}.json: the RFC 3161 timestamp does not verify with ")
        for f, n in zip(result.fails, (1, 3), strict=True)
    ), result.out
    assert "existed by" not in result.out


async def test_without_rfc3161_client_the_checker_says_what_to_install(
    stamped: Stamped, archive: EvidenceArchive, tmp_path: Path
) -> None:
    result = verify(stamped.path, "--expect-key-id", archive.key_id, block_rfc3161=True)
    assert result.code == 1
    assert result.fails == [
        f"FAIL: timestamps/{n}.json: cannot check RFC 3161 timestamps: pip install rfc3161-client"
        for n in (1, 3)
    ]
    # A bundle without timestamps needs no such package.
    plain = await archive.add_item(make_files(tmp_path / "d", "d"), make_record(), actor="a")
    path = await export_bundle(
        archive, [plain.item_id], actor="reviewer", reason="claim", dest_dir=tmp_path / "plain"
    )
    result = verify(path, "--expect-key-id", archive.key_id, block_rfc3161=True)
    assert result.code == 0 and result.fails == [], result.out


async def test_a_tsa_that_was_down_leaves_a_bundle_without_timestamps(
    archive: EvidenceArchive, tsa: LocalTsa, tmp_path: Path
) -> None:
    item = await archive.add_item(make_files(tmp_path / "a", "a"), make_record(), actor="agent")
    roots = load_certificates(tsa.root_pem)
    tsa.down = True
    with pytest.raises(TsaError):
        await archive.stamp(tsa.client(), roots)
    path = await export_bundle(
        archive, [item.item_id], actor="reviewer", reason="claim", dest_dir=tmp_path / "1"
    )
    with zipfile.ZipFile(path) as zf:
        assert not [n for n in zf.namelist() if n.startswith("timestamps/")]
        assert "timestamps/" not in zf.read("README.txt").decode()
    result = verify(path, "--expect-key-id", archive.key_id)
    assert result.code == 0 and "existed by" not in result.out and "NOTE: the" not in result.out

    tsa.down = False  # back: the next round stamps a later head, which covers the item
    stamp = await archive.stamp(tsa.client(), roots)
    assert stamp is not None and stamp.tree_size > item.leaf_index
    path = await export_bundle(
        archive, [item.item_id], actor="reviewer", reason="claim", dest_dir=tmp_path / "2"
    )
    result = verify(path, "--expect-key-id", archive.key_id)
    assert result.code == 0 and existed(item, stamp) in result.out.splitlines(), result.out


# -- tampered timestamps ---------------------------------------------------------------------


def rewritten(
    stamped: Stamped, change: Callable[[dict[str, bytes]], None], *, resign: bool = True
) -> Path:
    """The bundle with ``change`` made to its members; ``resign``: the manifest recomputed and
    signed again by the archive (so that only the timestamp checks can object)."""
    with zipfile.ZipFile(stamped.path) as zf:
        members = {name: zf.read(name) for name in zf.namelist()}
    change(members)
    if resign:
        manifest = json.loads(members["manifest.json"])
        manifest["members"] = {
            name: {"sha256": hashlib.sha256(data).hexdigest(), "size": len(data)}
            for name, data in members.items()
            if name not in ("manifest.json", "manifest.sig")
        }
        members["manifest.json"] = canonical_json(manifest)
        signature = stamped.archive.sign_manifest(members["manifest.json"])
        members["manifest.sig"] = signature.encode() + b"\n"
    out = stamped.path.with_name("tampered.zip")
    with zipfile.ZipFile(out, "w") as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return out


def edit_stamp(name: str, change: Callable[[dict[str, Any]], None]) -> Callable[..., None]:
    def edit(members: dict[str, bytes]) -> None:
        document = json.loads(members[name])
        change(document)
        members[name] = json.dumps(document).encode()

    return edit


def fails_of(result: Outcome, name: str) -> list[str]:
    assert result.code == 1, result.out
    return [
        f.removeprefix(f"FAIL: {name}: ") for f in result.fails if f.startswith(f"FAIL: {name}")
    ]


async def test_a_changed_stamped_head_fails_naming_the_file(stamped: Stamped) -> None:
    def change(document: dict[str, Any]) -> None:
        document["tree_head"]["timestamp"] += 1  # a head "signed" a moment later

    result = stamped.pinned(rewritten(stamped, edit_stamp("timestamps/3.json", change)))
    assert fails_of(result, "timestamps/3.json") == [
        "the signature of its tree head does not verify with public_key.pem",
        "the RFC 3161 timestamp does not verify with timestamps/tsa_roots.pem: Mismatch "
        "between messages",
    ]
    a, b, _ = stamped.items
    assert existed(a, stamped.stamps[0]) in result.out  # the other timestamp still holds
    assert f"item {b.item_id} existed by" not in result.out
    assert len(result.fails) == 2


async def test_a_time_in_the_file_other_than_the_responses_fails(stamped: Stamped) -> None:
    def change(document: dict[str, Any]) -> None:
        document["gen_time"] = "2020-01-01T00:00:00+00:00"

    result = stamped.pinned(rewritten(stamped, edit_stamp("timestamps/1.json", change)))
    [failed] = fails_of(result, "timestamps/1.json")
    first = stamped.stamps[0].gen_time.isoformat()
    assert failed == (
        f"says '2020-01-01T00:00:00+00:00' by '{AUTHORITY}', but its RFC 3161 response says "
        f"{first} by {AUTHORITY}"
    )


async def test_a_consistency_proof_that_does_not_link_fails_naming_the_file(
    stamped: Stamped,
) -> None:
    def change(document: dict[str, Any]) -> None:
        document["consistency_proof"][0] = "00" * 32

    result = stamped.pinned(rewritten(stamped, edit_stamp("timestamps/1.json", change)))
    [failed] = fails_of(result, "timestamps/1.json")
    assert failed.startswith("the consistency proof from tree size 1 does not link it to ")
    assert len(result.fails) == 1 and "existed by" not in result.out.split("timestamps/3")[0]


async def test_another_root_or_response_fails_naming_the_file(
    stamped: Stamped, tsa: LocalTsa
) -> None:
    other = await LocalTsa().start()
    try:
        other_root = other.root_pem
        # A genuine response of the same authority, for another message.
        foreign = await tsa.client().timestamp(request_for(b"another message").as_bytes())
    finally:
        await other.aclose()

    def swap_root(members: dict[str, bytes]) -> None:
        members["timestamps/tsa_roots.pem"] = other_root

    result = stamped.pinned(rewritten(stamped, swap_root))
    for n in (1, 3):
        [failed] = fails_of(result, f"timestamps/{n}.json")
        assert failed.startswith("the RFC 3161 timestamp does not verify with timestamps/tsa_")
        assert "unable to get local issuer certificate" in failed

    def swap_response(document: dict[str, Any]) -> None:
        document["response"] = base64.b64encode(foreign).decode()

    result = stamped.pinned(rewritten(stamped, edit_stamp("timestamps/1.json", swap_response)))
    assert fails_of(result, "timestamps/1.json") == [
        "the RFC 3161 timestamp does not verify with timestamps/tsa_roots.pem: Mismatch "
        "between messages"
    ]


async def test_a_timestamp_file_out_of_the_manifest_or_misnamed_fails(stamped: Stamped) -> None:
    def add(members: dict[str, bytes]) -> None:
        members["timestamps/2.json"] = members["timestamps/1.json"]

    result = stamped.pinned(rewritten(stamped, add, resign=False))
    assert "FAIL: timestamps/2.json: not listed in the manifest (added to the bundle)" in (
        result.fails
    )
    assert "FAIL: timestamps/2.json: holds a tree head of size 1, not the one it is named for" in (
        result.fails
    )

    def drop(members: dict[str, bytes]) -> None:
        del members["timestamps/3.json"]

    result = stamped.pinned(rewritten(stamped, drop, resign=False))
    assert result.fails == [
        "FAIL: timestamps/3.json: listed in the manifest but missing from the bundle"
    ]

    def garble(members: dict[str, bytes]) -> None:
        members["timestamps/3.json"] = b'{"version": "inspectd-timestamp/1"}'

    result = stamped.pinned(rewritten(stamped, garble))
    assert fails_of(result, "timestamps/3.json") == [
        "tree_head: the tree head is None, not a JSON object"
    ]
