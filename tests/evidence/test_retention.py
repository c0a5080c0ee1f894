from __future__ import annotations

import errno
import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from evidence import (
    EvidenceArchive,
    InvalidRecord,
    NotFound,
    OnLegalHold,
    RetentionActive,
    StorageFull,
    _files,
    claim_deadlines,
    retain_until,
)
from evidence._db import Database

from .conftest import T0, FakeClock, make_files, make_record


async def test_retention_and_legal_hold(
    archive: EvidenceArchive, clock: FakeClock, tmp_path: Path
) -> None:
    held = await archive.add_item(make_files(tmp_path / "1", "1"), make_record(), actor="a")
    free = await archive.add_item(make_files(tmp_path / "2", "2"), make_record(), actor="a")
    long = await archive.add_item(
        make_files(tmp_path / "3", "3"), make_record(retention_class="dispute"), actor="a"
    )
    await archive.hold(held.item_id, actor="legal-1", reason="litigation 2025-17")

    with pytest.raises(RetentionActive):
        await archive.delete(free.item_id, actor="admin", reason="cleanup")

    clock.advance(timedelta(days=181))
    with pytest.raises(OnLegalHold):
        await archive.delete(held.item_id, actor="admin", reason="cleanup")
    assert await archive.purge_expired() == [free.item_id]
    free_dir = archive.data_dir / "evidence" / "2025" / "03" / free.item_id
    assert not free_dir.exists()
    with pytest.raises(NotFound):
        await archive.get(free.item_id, actor="r", reason="why")
    assert (await archive.get(held.item_id, actor="r", reason="why")).legal_hold
    assert (await archive.verify(long.item_id)).ok

    # The deleted item's custody trail stays in the log.
    trail = await archive.log_entries(free.item_id)
    assert [e.kind.value for e in trail] == ["item.added", "item.expired"]
    assert trail[1].actor == "system:retention"

    await archive.release(held.item_id, actor="legal-1", reason="case closed")
    await archive.delete(held.item_id, actor="admin", reason="retention over")
    assert [e.kind.value for e in await archive.log_entries(held.item_id)] == [
        "item.added",
        "item.held",
        "item.viewed",
        "item.released",
        "item.deleted",
    ]
    assert [i.item_id for i in await archive.search()] == [long.item_id]


async def test_set_retention_is_logged(archive: EvidenceArchive, tmp_path: Path) -> None:
    item = await archive.add_item(make_files(tmp_path / "1"), make_record(), actor="a")
    updated = await archive.set_retention(
        item.item_id, "legal", actor="legal-1", reason="regulator request"
    )
    assert updated.retain_until == T0 + timedelta(days=7 * 365)
    last = (await archive.log_entries(item.item_id))[-1]
    assert last.kind.value == "retention.changed" and last.record()["retention_class"] == "legal"
    with pytest.raises(InvalidRecord):
        await archive.set_retention(item.item_id, "eternal", actor="x", reason="y")


def test_retain_until_per_class() -> None:
    for cls, days in (("standard", 180), ("packing", 120), ("dispute", 1095), ("legal", 2555)):
        assert retain_until(make_record(retention_class=cls), T0) == T0 + timedelta(days=days)


def test_claim_deadlines() -> None:
    shipped = datetime(2025, 3, 1, tzinfo=UTC)
    delivered = datetime(2025, 3, 5, tzinfo=UTC)
    now = datetime(2025, 3, 20, tzinfo=UTC)
    found = claim_deadlines(
        delivered_at=delivered,
        shipped_at=shipped,
        carriers=["UPS", "DHL Express", "dpd", "ebay_mbg"],
        now=now,
    )
    assert [(d.name, d.deadline, d.days_left, d.basis.value) for d in found] == [
        ("DPD", delivered + timedelta(days=7), -8, "delivery"),
        ("DHL Express", shipped + timedelta(days=30), 11, "shipment"),
        ("eBay Money Back Guarantee", delivered + timedelta(days=30), 15, "delivery"),
        ("UPS", delivered + timedelta(days=60), 45, "delivery"),
    ]
    assert all("contract" in d.source for d in found)
    # Without a delivery date only shipment-based rules apply; a prefix names a family.
    fedex_and_usps = claim_deadlines(shipped_at=shipped, carriers=["fedex", "USPS"], now=now)
    assert [d.name for d in fedex_and_usps] == ["USPS"]
    assert len(claim_deadlines(delivered_at=delivered, carriers=["fedex"], now=now)) == 2
    everything = claim_deadlines(delivered_at=delivered, shipped_at=shipped, now=now)
    assert {"Amazon A-to-z Guarantee", "PayPal Purchase Protection", "Royal Mail"} <= {
        d.name for d in everything
    }
    with pytest.raises(InvalidRecord):
        claim_deadlines(delivered_at=delivered, carriers=["Pony Express"])


async def _state(archive: EvidenceArchive) -> tuple[int, str, int]:
    return archive.log.size, archive.tree_head().root_hash, len(await archive.search())


async def test_full_disk_while_copying_leaves_nothing_behind(
    archive: EvidenceArchive, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    await archive.add_item(make_files(tmp_path / "ok", "0"), make_record(), actor="a")
    before = await _state(archive)
    real_copy = _files.copy_and_hash

    def copy_until_full(src: Path, dst: Path) -> tuple[str, int]:
        if dst.name == "snapshot.jpg":
            dst.write_bytes(b"partial")  # the disk filled mid-file
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_copy(src, dst)

    monkeypatch.setattr(_files, "copy_and_hash", copy_until_full)
    files = make_files(tmp_path / "capture", "1")
    with pytest.raises(StorageFull) as caught:
        await archive.add_item(files, make_record(), actor="a", move=False)
    assert caught.value.code == "storage_full" and isinstance(caught.value, OSError)
    assert await _state(archive) == before
    month = archive.data_dir / "evidence" / "2025" / "03"
    assert len(list(month.iterdir())) == 1  # only the first item's directory
    assert all(path.exists() for _, path in files)


async def test_full_disk_in_the_database_puts_moved_files_back(
    archive: EvidenceArchive, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    before = await _state(archive)
    files = make_files(tmp_path / "capture", "1")
    originals = {path: path.read_bytes() for _, path in files}

    async def full(self: Database, fn: Any, **_: Any) -> Any:
        def write(conn: sqlite3.Connection) -> None:
            error = sqlite3.OperationalError("database or disk is full")
            error.sqlite_errorcode = sqlite3.SQLITE_FULL
            raise error

        return await self.run(write)

    monkeypatch.setattr(Database, "transaction", full)
    with pytest.raises(StorageFull):
        await archive.add_item(files, make_record(), actor="a", move=True)
    monkeypatch.undo()
    assert await _state(archive) == before
    assert {path: path.read_bytes() for _, path in files} == originals
    assert not (archive.data_dir / "evidence" / "2025").exists()
