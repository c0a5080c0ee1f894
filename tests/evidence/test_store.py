from __future__ import annotations

import hashlib
import json
from datetime import timedelta
from pathlib import Path

import pytest

from evidence import (
    EvidenceArchive,
    EvidenceItem,
    InvalidRecord,
    NotFound,
    verify_inclusion,
    verify_tree_head,
)
from evidence.merkle import leaf_hash
from evidence.signing import load_public_key

from .conftest import T0, FakeClock, OpenArchive, make_files, make_record

#: Every archive test here runs on SQLite and on PostgreSQL (conftest).
ARCHIVE_BACKENDS = ("sqlite", "postgres")


async def test_add_item_moves_hashes_logs_and_indexes(
    archive: EvidenceArchive, tmp_path: Path
) -> None:
    files = make_files(tmp_path / "capture")
    contents = {name: path.read_bytes() for name, path in files}
    item = await archive.add_item(files, make_record(), actor="agent-7")

    assert all(not path.exists() for _, path in files)  # moved
    item_dir = archive.data_dir / "evidence" / "2025" / "03" / item.item_id
    for f in item.files:
        data = (item_dir / f.name).read_bytes()
        assert data == contents[f.name]
        assert f.sha256 == hashlib.sha256(data).hexdigest() and f.size == len(data)
    assert item.retain_until == T0 + timedelta(days=180)

    trail = await archive.log_entries(item.item_id)
    assert [e.kind.value for e in trail] == ["item.added"]
    leaf = json.loads(trail[0].data)
    assert leaf["item_id"] == item.item_id
    assert leaf["record"] == make_record().to_json()
    assert leaf["files"] == [f.to_json() for f in item.files]
    assert leaf["added_at"] == "2025-03-01T10:00:00+00:00"
    assert leaf["actor"] == "agent-7"

    sth = archive.tree_head()
    assert verify_tree_head(sth, load_public_key(archive.public_key_pem()))
    proof = archive.log.inclusion_proof(item.leaf_index, sth.tree_size)
    root = bytes.fromhex(sth.root_hash)
    assert verify_inclusion(item.leaf_index, sth.tree_size, leaf_hash(trail[0].data), proof, root)


async def test_copy_keeps_the_sources(archive: EvidenceArchive, tmp_path: Path) -> None:
    files = make_files(tmp_path / "capture")
    await archive.add_item(files, make_record(), actor="agent-7", move=False)
    assert all(path.exists() for _, path in files)


async def test_get_and_download_are_logged_with_who_and_why(
    archive: EvidenceArchive, tmp_path: Path
) -> None:
    item = await archive.add_item(make_files(tmp_path / "c"), make_record(), actor="agent-7")
    got = await archive.get(item.item_id, actor="reviewer-1", reason="carrier claim 55")
    assert got == item
    path = await archive.file_path(
        item.item_id, "clip.webm", actor="reviewer-2", reason="export to carrier"
    )
    assert path.read_bytes().startswith(b"\x1a\x45\xdf\xa3")
    trail = await archive.log_entries(item.item_id)
    assert [(e.kind.value, e.actor, e.reason) for e in trail[1:]] == [
        ("item.viewed", "reviewer-1", "carrier claim 55"),
        ("item.downloaded", "reviewer-2", "export to carrier"),
    ]
    assert trail[2].record()["file"] == "clip.webm"

    with pytest.raises(InvalidRecord):
        await archive.get(item.item_id, actor="reviewer-1", reason=" ")
    with pytest.raises(NotFound):
        await archive.file_path(item.item_id, "other.jpg", actor="r", reason="why")
    with pytest.raises(NotFound):
        await archive.get("../etc/passwd", actor="r", reason="why")
    assert len(await archive.log_entries(item.item_id)) == 3


async def test_search_filters_and_tracking_order(
    archive: EvidenceArchive, clock: FakeClock, tmp_path: Path
) -> None:
    def at(minutes: int) -> dict[str, object]:
        start = T0 + timedelta(minutes=minutes)
        return {"started_at": start, "ended_at": start + timedelta(seconds=30)}

    receipt = await archive.add_item(
        make_files(tmp_path / "1", "1"),
        make_record(logistics_stage="return_receipt", **at(0)),
        actor="a",
    )
    packing = await archive.add_item(
        make_files(tmp_path / "2", "2"),
        make_record(
            logistics_stage="packing",
            use="packing",
            kind="snapshot",
            grading=None,
            retention_class="packing",
            **at(5),
        ),
        actor="a",
    )
    last_mile = await archive.add_item(
        make_files(tmp_path / "3", "3"),
        make_record(logistics_stage="last_mile", grading={"agent": {"grade": "D"}}, **at(1)),
        actor="a",
    )
    other = await archive.add_item(
        make_files(tmp_path / "4", "4"),
        make_record(
            order_id="ORD-2", tracking_number="JD0002", case_id="case-2", unit_id="U2", **at(9)
        ),
        actor="a",
    )

    def ids(items: list[EvidenceItem]) -> list[str]:
        return [i.item_id for i in items]

    assert ids(await archive.search(tracking_number="1Z999")) == ids([packing, last_mile, receipt])
    assert ids(await archive.search(order_id="ORD-1")) == ids([packing, last_mile, receipt])
    assert ids(await archive.search(case_id="case-2")) == ids([other])
    assert ids(await archive.search(unit_id="U2")) == ids([other])
    assert ids(await archive.search(grade="D")) == ids([last_mile])
    assert ids(await archive.search(grade="B")) == ids([other, receipt])
    assert ids(await archive.search(stage="packing")) == ids([packing])
    assert ids(await archive.search(use="packing")) == ids([packing])
    window = await archive.search(since=T0 + timedelta(minutes=1), until=T0 + timedelta(minutes=6))
    assert ids(window) == ids([packing, last_mile])
    assert ids(await archive.search(limit=1)) == ids([other])
    assert await archive.search(order_id="nope") == []
    # Searching shows no media and is not an access to any one item.
    assert len(await archive.log_entries(receipt.item_id)) == 1


async def test_verify_reports_each_file(archive: EvidenceArchive, tmp_path: Path) -> None:
    item = await archive.add_item(make_files(tmp_path / "c"), make_record(), actor="a")
    report = await archive.verify(item.item_id)
    assert report.ok and report.inclusion_ok and report.signature_ok and report.record_ok
    assert [c.status for c in report.files] == ["ok", "ok"]

    directory = archive.data_dir / "evidence" / "2025" / "03" / item.item_id
    clip = directory / "clip.webm"
    data = bytearray(clip.read_bytes())
    data[100] ^= 0x01
    clip.write_bytes(bytes(data))
    (directory / "snapshot.jpg").unlink()
    report = await archive.verify(item.item_id)
    assert not report.ok
    assert {c.name: c.status for c in report.files} == {
        "clip.webm": "mismatch",
        "snapshot.jpg": "missing",
    }
    assert report.problems == ("file clip.webm: mismatch", "file snapshot.jpg: missing")
    assert report.inclusion_ok  # the log is intact; the media is not
    assert len(await archive.log_entries(item.item_id)) == 1  # verify never logs


async def test_index_survives_reopen(
    open_archive: OpenArchive, tmp_path: Path, clock: FakeClock
) -> None:
    archive = await open_archive(tmp_path / "data", clock=clock)
    item = await archive.add_item(make_files(tmp_path / "c"), make_record(), actor="a")
    head = archive.tree_head()
    key = archive.public_key_pem()
    await archive.aclose()
    await archive.aclose()  # idempotent

    archive = await open_archive(tmp_path / "data", clock=clock)
    try:
        assert archive.public_key_pem() == key
        assert archive.tree_head().root_hash == head.root_hash
        assert (await archive.search(order_id="ORD-1"))[0] == item
        assert (await archive.verify(item.item_id)).ok
    finally:
        await archive.aclose()


async def test_bad_input_is_refused_before_anything_is_stored(
    archive: EvidenceArchive, tmp_path: Path
) -> None:
    files = make_files(tmp_path / "c")
    for bad in ([], [("../x.webm", files[0][1])], [files[0], ("clip.webm", files[1][1])]):
        with pytest.raises(InvalidRecord):
            await archive.add_item(bad, make_record(), actor="a")
    with pytest.raises(InvalidRecord):
        await archive.add_item(files, make_record(retention_class="forever"), actor="a")
    with pytest.raises(InvalidRecord):
        make_record(logistics_stage="teleport")
    with pytest.raises(InvalidRecord):
        make_record(ended_at=T0 - timedelta(hours=1))
    assert archive.log.size == 0
    assert all(path.exists() for _, path in files)


def test_record_json_roundtrip() -> None:
    record = make_record()
    assert type(record).from_json(json.loads(json.dumps(record.to_json()))) == record
    assert record.grade == "B"
    assert make_record(grading=None, logistics_stage=None).to_json()["logistics_stage"] is None
