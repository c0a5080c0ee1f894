"""Stamped tree heads in the archive, with a local ``openssl ts`` authority on loopback: a head
is stamped, kept and logged; a log that has not grown (or grew only by stamps) asks for none; an
authority that is down leaves the head for a later stamp; a wrong answer is refused with its
reason and nothing is kept; an item added after a stamped head is not covered by it."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from evidence import (
    EntryKind,
    EvidenceArchive,
    InvalidRecord,
    InvalidTimestamp,
    SigningKey,
    load_certificates,
    request_for,
)
from tests.fakes.tsa import LocalTsa, TsaError

from .conftest import OpenArchive, make_files, make_record

ARCHIVE_BACKENDS = ("sqlite", "postgres")


@pytest.fixture
async def tsa() -> AsyncIterator[LocalTsa]:
    authority = await LocalTsa().start()
    yield authority
    await authority.aclose()


async def _add(archive: EvidenceArchive, tmp_path: Path, tag: str) -> int:
    item = await archive.add_item(make_files(tmp_path / tag, tag), make_record(), actor="agent-7")
    return item.leaf_index


async def test_a_head_is_stamped_kept_and_logged(
    archive: EvidenceArchive, tsa: LocalTsa, tmp_path: Path
) -> None:
    assert await archive.head_to_stamp() is None  # an empty log has nothing to stamp
    await _add(archive, tmp_path, "a")
    roots = load_certificates(tsa.root_pem)
    stamp = await archive.stamp(tsa.client(), roots)
    assert stamp is not None and stamp.tree_size == 1
    assert stamp.authority == "CN=inspectd test TSA"
    assert stamp.roots_pem == tsa.root_pem
    assert await archive.stamps() == [stamp]

    entry = (await archive.log.entries())[-1]
    assert entry.kind is EntryKind.TREE_HEAD_STAMPED and entry.item_id is None
    logged = entry.record()
    assert logged["tree_size"] == 1 and logged["root_hash"] == stamp.tree_head.root_hash
    assert logged["authority"] == "CN=inspectd test TSA"
    assert logged["gen_time"] == stamp.gen_time.isoformat()

    # Only the stamp's own entry since: nothing new to stamp, and the authority is not asked.
    asked = tsa.requests
    assert await archive.head_to_stamp() is None
    assert await archive.stamp(tsa.client(), roots) is None
    assert tsa.requests == asked
    await _add(archive, tmp_path, "b")
    again = await archive.stamp(tsa.client(), roots)
    assert again is not None and again.tree_size == archive.log.size - 1 == 3
    assert [s.tree_size for s in await archive.stamps()] == [1, 3]


async def test_stamps_survive_a_reopen(
    archive: EvidenceArchive, open_archive: OpenArchive, tsa: LocalTsa, tmp_path: Path
) -> None:
    await _add(archive, tmp_path, "a")
    stamp = await archive.stamp(tsa.client(), load_certificates(tsa.root_pem))
    reopened = await open_archive(archive.data_dir)
    try:
        assert await reopened.stamps() == [stamp]
    finally:
        await reopened.aclose()


async def test_a_tsa_that_is_down_leaves_the_head_for_later(
    archive: EvidenceArchive, tsa: LocalTsa, tmp_path: Path
) -> None:
    await _add(archive, tmp_path, "a")
    roots = load_certificates(tsa.root_pem)
    tsa.down = True
    with pytest.raises(TsaError, match="503"):
        await archive.stamp(tsa.client(), roots)
    assert await archive.stamps() == []
    assert [e.kind for e in await archive.log.entries()] == [EntryKind.ITEM_ADDED]
    await _add(archive, tmp_path, "b")  # nothing waited on the authority

    tsa.down = False
    stamp = await archive.stamp(tsa.client(), roots)
    assert stamp is not None and stamp.tree_size == 2  # one later head covers both


async def test_a_wrong_answer_is_refused_and_nothing_kept(
    archive: EvidenceArchive, tsa: LocalTsa, tmp_path: Path
) -> None:
    await _add(archive, tmp_path, "a")
    roots = load_certificates(tsa.root_pem)
    client = tsa.client()
    sth = await archive.head_to_stamp()
    assert sth is not None
    # The answer to another message (a head of another size).
    other = request_for(archive.log.tree_head(1).signed_message() + b" ")
    wrong = await client.timestamp(other.as_bytes())
    with pytest.raises(InvalidTimestamp, match="does not verify: .*Mismatch between messages"):
        await archive.add_stamp(sth, wrong, roots)
    # The answer to this head, checked against another authority's root.
    request = request_for(sth.signed_message())
    right = await client.timestamp(request.as_bytes())
    other_tsa = await LocalTsa().start()
    try:
        with pytest.raises(InvalidTimestamp, match="unable to get local issuer certificate"):
            await archive.add_stamp(sth, right, load_certificates(other_tsa.root_pem))
    finally:
        await other_tsa.aclose()
    # The answer to another request for the same head (its nonce).
    with pytest.raises(InvalidTimestamp, match="Nonce mismatch"):
        await archive.add_stamp(sth, right, roots, request=request_for(sth.signed_message()))
    with pytest.raises(InvalidTimestamp, match="not an RFC 3161 response"):
        await archive.add_stamp(sth, b"\x30\x03\x02\x01\x00", roots)
    assert await archive.stamps() == []
    assert archive.log.size == 1  # nothing logged either

    kept = await archive.add_stamp(sth, right, roots, request=request)
    assert kept.tree_size == 1
    # A second stamp of the same size keeps the first.
    assert await archive.add_stamp(sth, right, roots) == kept
    assert len(await archive.stamps()) == 1


async def test_only_this_archives_heads_are_stamped(
    archive: EvidenceArchive, tsa: LocalTsa, tmp_path: Path
) -> None:
    await _add(archive, tmp_path, "a")
    roots = load_certificates(tsa.root_pem)
    sth = archive.tree_head()
    stranger = SigningKey(Ed25519PrivateKey.generate())
    forged = stranger.sign_tree_head(sth.tree_size, bytes.fromhex(sth.root_hash), sth.timestamp)
    response = await tsa.client().timestamp(request_for(forged.signed_message()).as_bytes())
    with pytest.raises(InvalidRecord, match="not signed by this archive's key"):
        await archive.add_stamp(forged, response, roots)
    beyond = archive.log.tree_head()
    beyond = type(beyond)(5, beyond.root_hash, beyond.timestamp, beyond.key_id, "")
    with pytest.raises(InvalidRecord, match="not signed"):
        await archive.add_stamp(beyond, response, roots)
    assert await archive.stamps() == []


async def test_a_head_stamped_before_an_item_does_not_cover_it(
    archive: EvidenceArchive, tsa: LocalTsa, tmp_path: Path
) -> None:
    roots = load_certificates(tsa.root_pem)
    first = await _add(archive, tmp_path, "a")
    early = await archive.stamp(tsa.client(), roots)
    later = await _add(archive, tmp_path, "b")
    size = archive.log.size
    covering = await archive.stamps_covering([first, later], size)
    assert early is not None and covering == {first: early}
    item = (await archive.search())[0]
    await archive.get(item.item_id, actor="reviewer", reason="a look")
    late = await archive.stamp(tsa.client(), roots)
    assert late is not None and late.tree_size == size + 1
    covering = await archive.stamps_covering([first, later], archive.log.size)
    assert covering == {first: early, later: late}  # the earliest head holding each leaf
    # A head larger than the tree a bundle refers to cannot be linked to it: not used.
    assert await archive.stamps_covering([first, later], size) == {first: early}
