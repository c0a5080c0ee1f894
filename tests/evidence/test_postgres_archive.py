"""The archive on PostgreSQL: its index, log and stamps are tables of the database the nodes
share, appends of several processes are serialised by an advisory lock (no file lock), a row
edited in the database is found at the next open, a lost connection is opened again, and an
embedded archive is copied in with its root hash equal."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import psycopg
import pytest

from evidence import EvidenceArchive, IntegrityError, verify_consistency, verify_inclusion
from evidence._postgres import APPLICATION_NAME
from evidence.merkle import leaf_hash
from evidence.migrate import ArchiveCopyError, copy_archive
from tests.postgres_server import create_schema, drop_schemas

from .conftest import FakeClock, make_files, make_record

REPO = Path(__file__).resolve().parents[2]

#: Each writer process appends as fast as it can through its own archive on the database.
WRITER = """
import asyncio, sys
from pathlib import Path
from evidence import EntryKind, EvidenceArchive

async def main(data_dir, url, schema, tag, count):
    archive = await EvidenceArchive.open(Path(data_dir), database_url=url, schema=schema)
    try:
        for i in range(count):
            entry = await archive.log.append(
                EntryKind.LIVE_VIEWED, actor=tag, reason="watching", item_id=None,
                fields={"case_id": f"case-{tag}", "n": i},
            )
            print(entry.index, entry.leaf_hash.hex(), flush=True)
    finally:
        await archive.aclose()

asyncio.run(main(*sys.argv[1:5], int(sys.argv[5])))
"""


@pytest.fixture
async def schema(postgres_url: str) -> AsyncIterator[str]:
    name = await create_schema(postgres_url)
    yield name
    await drop_schemas(postgres_url, [name])


async def _writer(data_dir: Path, url: str, schema: str, tag: str, count: int) -> list[str]:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        WRITER,
        str(data_dir),
        url,
        schema,
        tag,
        str(count),
        cwd=REPO,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await process.communicate()
    assert process.returncode == 0, err.decode()
    return out.decode().splitlines()


async def test_four_processes_append_to_one_log_without_forking_it(
    tmp_path: Path, postgres_url: str, schema: str
) -> None:
    data_dir = tmp_path / "evidence"
    archive = await EvidenceArchive.open(data_dir, database_url=postgres_url, schema=schema)
    try:
        first = await archive.add_item(make_files(tmp_path / "in"), make_record(), actor="n0")
        old_head = archive.tree_head()
        count = 200
        written = await asyncio.gather(
            *(_writer(data_dir, postgres_url, schema, tag, count) for tag in "abcd")
        )
        lines = [line.split() for batch in written for line in batch]
        assert len(lines) == 4 * count
        indices = [int(index) for index, _ in lines]
        # Every append took its own index, and together they fill the log without a gap.
        assert sorted(indices) == list(range(1, 1 + 4 * count))
        assert not (data_dir / "evidence.lock").exists()  # the database serialised them

        size = await archive.refresh()
        assert size == 1 + 4 * count
        head = archive.tree_head()
        root = bytes.fromhex(head.root_hash)
        for index, hashed in lines:
            leaf = bytes.fromhex(hashed)
            assert archive.log.leaf_hash(int(index)) == leaf
            proof = archive.log.inclusion_proof(int(index), size)
            assert verify_inclusion(int(index), size, leaf, proof, root)
        # Every earlier size of the log is a prefix of this one.
        for old in range(1, size):
            proof = archive.consistency_proof(old, size)
            assert verify_consistency(old, size, archive.log.root(old), root, proof), old
        proof = archive.consistency_proof(old_head.tree_size, size)
        assert verify_consistency(
            old_head.tree_size, size, bytes.fromhex(old_head.root_hash), root, proof
        )
        assert (await archive.verify(first.item_id)).ok
    finally:
        await archive.aclose()

    # Another node opening now rebuilds the same tree from the database, checking every row.
    reopened = await EvidenceArchive.open(data_dir, database_url=postgres_url, schema=schema)
    try:
        assert reopened.log.size == 1 + 4 * count
        assert reopened.log.root() == archive.log.root()
    finally:
        await reopened.aclose()


async def test_an_edited_log_row_is_found_at_the_next_open(
    tmp_path: Path, postgres_url: str, schema: str
) -> None:
    archive = await EvidenceArchive.open(tmp_path, database_url=postgres_url, schema=schema)
    try:
        item = await archive.add_item(make_files(tmp_path / "in"), make_record(), actor="a")
        await archive.get(item.item_id, actor="r", reason="claim 55")
    finally:
        await archive.aclose()
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        conn.execute(
            f"UPDATE {schema}.log_entries SET data = convert_to("
            "replace(convert_from(data, 'UTF8'), 'claim 55', 'claim 56'), 'UTF8') WHERE idx = 1"
        )
    with pytest.raises(IntegrityError, match="log entry 1 does not match its leaf hash"):
        await EvidenceArchive.open(tmp_path, database_url=postgres_url, schema=schema)


async def test_a_lost_connection_is_opened_again(
    tmp_path: Path, postgres_url: str, schema: str
) -> None:
    archive = await EvidenceArchive.open(tmp_path, database_url=postgres_url, schema=schema)
    try:
        await archive.add_item(make_files(tmp_path / "a", "a"), make_record(), actor="a")
        # The server ends the archive's session, as a restart or a failover would.
        with psycopg.connect(postgres_url, autocommit=True) as conn:
            ended = conn.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                " WHERE application_name = %s",
                (APPLICATION_NAME,),
            ).fetchall()
        assert ended
        again = await archive.add_item(make_files(tmp_path / "b", "b"), make_record(), actor="a")
        assert again.leaf_index == 1
        assert (await archive.verify(again.item_id)).ok
    finally:
        await archive.aclose()


async def test_an_embedded_archive_is_copied_with_its_root(
    tmp_path: Path, postgres_url: str, schema: str
) -> None:
    clock = FakeClock()
    data_dir = tmp_path / "data"
    embedded = await EvidenceArchive.open(data_dir, clock=clock)
    target = await EvidenceArchive.open(data_dir, database_url=postgres_url, schema=schema)
    try:
        items = [
            await embedded.add_item(make_files(tmp_path / t, t), make_record(), actor="a")
            for t in "abc"
        ]
        await embedded.hold(items[0].item_id, actor="admin", reason="carrier claim")
        size = await embedded.refresh()
        copied = await copy_archive(embedded, target)
        assert copied.tree_size == size and copied.root == embedded.log.root()
        assert copied.rows == {"log_entries": size, "items": 3, "tree_head_stamps": 0}
        assert copied.items_verified == 3
        assert copied.root.hex() in copied.describe()
        held = await target.peek(items[0].item_id)
        assert held.legal_hold and held == await embedded.peek(items[0].item_id)
        entry = await target.log.entry(0)
        assert entry is not None and leaf_hash(entry.data) == embedded.log.leaf_hash(0)
        # A second copy into the same database is refused, and changes nothing.
        with pytest.raises(ArchiveCopyError, match="already holds evidence"):
            await copy_archive(embedded, target)
        assert await target.refresh() == size
    finally:
        await embedded.aclose()
        await target.aclose()
