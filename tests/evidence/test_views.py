"""Views of live media: custody entries that name no stored item, in the same signed log."""

from __future__ import annotations

from pathlib import Path

import pytest

from evidence import (
    EntryKind,
    EvidenceArchive,
    InvalidRecord,
    verify_inclusion,
    verify_tree_head,
)
from evidence.merkle import leaf_hash
from evidence.signing import load_public_key

from .conftest import T0, FakeClock, make_files, make_record


async def test_a_live_view_is_a_signed_leaf_with_who_what_and_why(
    archive: EvidenceArchive, tmp_path: Path, clock: FakeClock
) -> None:
    item = await archive.add_item(make_files(tmp_path / "in"), make_record(), actor="u_agent")
    entry = await archive.log_view(
        actor="u_admin",
        reason="complaint 4711",
        subject="case:c1",
        what="frame:1800000000250",
        fields={"actor_name": "Ada Admin", "kind": "item.deleted", "actor": "someone else"},
    )
    assert entry.kind is EntryKind.LIVE_VIEWED and entry.item_id is None
    assert entry.index == item.leaf_index + 1
    assert entry.timestamp == int(T0.timestamp() * 1000)
    record = entry.record()
    # Details sit beside the entry's own keys and never replace them.
    assert record == {
        "kind": "live.viewed",
        "timestamp": entry.timestamp,
        "actor": "u_admin",
        "actor_name": "Ada Admin",
        "reason": "complaint 4711",
        "item_id": None,
        "subject": "case:c1",
        "what": "frame:1800000000250",
    }

    sth = archive.tree_head()
    assert verify_tree_head(sth, load_public_key(archive.public_key_pem()))
    proof = archive.log.inclusion_proof(entry.index, sth.tree_size)
    assert verify_inclusion(
        entry.index, sth.tree_size, leaf_hash(entry.data), proof, bytes.fromhex(sth.root_hash)
    )
    # A view is no part of any item's custody trail, but is in the whole log.
    assert [e.kind for e in await archive.log_entries(item.item_id)] == [EntryKind.ITEM_ADDED]
    assert (await archive.log.entries())[-1] == entry


async def test_a_view_after_reopening_the_archive_still_reads(tmp_path: Path) -> None:
    archive = await EvidenceArchive.open(tmp_path / "data")
    try:
        await archive.log_view(actor="u1", reason="holds the call", subject="case:c1", what="f:1")
    finally:
        await archive.aclose()
    reopened = await EvidenceArchive.open(tmp_path / "data")
    try:
        [entry] = await reopened.log.entries()
        assert entry.kind is EntryKind.LIVE_VIEWED and entry.actor == "u1"
    finally:
        await reopened.aclose()


@pytest.mark.parametrize(
    ("actor", "reason", "subject", "what"),
    [
        ("", "why", "case:c1", "frame:1"),
        ("u1", " ", "case:c1", "frame:1"),
        ("u1", "why", "", "frame:1"),
        ("u1", "why", "case:c1", ""),
    ],
)
async def test_a_view_needs_who_why_and_what(
    archive: EvidenceArchive, actor: str, reason: str, subject: str, what: str
) -> None:
    with pytest.raises(InvalidRecord):
        await archive.log_view(actor=actor, reason=reason, subject=subject, what=what)
    assert archive.log.size == 0
