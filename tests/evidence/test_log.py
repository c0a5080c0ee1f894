from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from evidence import EntryKind, IntegrityError, SigningKey, TransparencyLog
from evidence._db import Database
from evidence.merkle import leaf_hash, verify_consistency, verify_inclusion
from evidence.signing import verify_tree_head


async def open_log(path: Path) -> tuple[Database, TransparencyLog, SigningKey]:
    key = SigningKey.load_or_create(path)
    db = await Database.open(path / "evidence.db")
    try:
        return db, await TransparencyLog.open(db, key, clock=lambda: 1_700_000_000.5), key
    except BaseException:
        await db.aclose()
        raise


async def test_append_prove_and_persist_across_reopen(tmp_path: Path) -> None:
    db, log, key = await open_log(tmp_path)
    entries = []
    for i in range(5):
        entries.append(
            await log.append(
                EntryKind.ITEM_VIEWED, actor=f"rev-{i}", reason="dispute 12", item_id="x" * 32
            )
        )
    assert [e.index for e in entries] == [0, 1, 2, 3, 4]
    assert entries[0].record() == {
        "kind": "item.viewed",
        "timestamp": 1_700_000_000_500,
        "actor": "rev-0",
        "reason": "dispute 12",
        "item_id": "x" * 32,
    }
    old = log.tree_head()
    assert old.tree_size == 5 and verify_tree_head(old, key.public_key)
    await db.aclose()

    db, log, _ = await open_log(tmp_path)
    assert log.size == 5 and log.root().hex() == old.root_hash
    await log.append(EntryKind.ITEM_HELD, actor="legal", reason="court order", item_id=None)
    new = log.tree_head()
    proof = log.consistency_proof(old.tree_size, new.tree_size)
    assert verify_consistency(
        5, 6, bytes.fromhex(old.root_hash), bytes.fromhex(new.root_hash), proof
    )
    stored = await log.entry(3)
    assert stored is not None and stored.actor == "rev-3"
    assert verify_inclusion(
        3, 6, leaf_hash(stored.data), log.inclusion_proof(3, 6), bytes.fromhex(new.root_hash)
    )
    assert [e.index for e in await log.entries(item_id="x" * 32)] == [0, 1, 2, 3, 4]
    await db.aclose()


async def test_an_edited_or_dropped_row_is_detected_at_open(tmp_path: Path) -> None:
    db, log, _ = await open_log(tmp_path)
    for _ in range(3):
        await log.append(EntryKind.ITEM_VIEWED, actor="a", reason="r", item_id=None)
    await db.aclose()
    with sqlite3.connect(tmp_path / "evidence.db") as conn:
        conn.execute("UPDATE log_entries SET data = replace(data, 'a', 'b') WHERE idx = 1")
    with pytest.raises(IntegrityError, match="entry 1"):
        await open_log(tmp_path)
    with sqlite3.connect(tmp_path / "evidence.db") as conn:
        conn.execute("DELETE FROM log_entries WHERE idx = 1")
    with pytest.raises(IntegrityError, match="missing"):
        await open_log(tmp_path)


async def test_append_requires_an_actor(tmp_path: Path) -> None:
    db, log, _ = await open_log(tmp_path)
    with pytest.raises(ValueError):
        await log.append(EntryKind.ITEM_VIEWED, actor="", reason="r", item_id=None)
    assert log.size == 0
    await db.aclose()
