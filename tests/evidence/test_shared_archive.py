"""One evidence archive written by several processes at once (the nodes of
``inspectd serve --workers N`` share the data directory): the Merkle log must not fork."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

from evidence import EvidenceArchive, verify_consistency
from tests.evidence.conftest import make_files, make_record

REPO = Path(__file__).resolve().parents[2]

#: Each writer process adds items and logs views of them, as fast as it can.
WRITER = """
import asyncio, sys
from pathlib import Path
from evidence import EvidenceArchive
from tests.evidence.conftest import make_files, make_record

async def main(data_dir, tag, count):
    archive = await EvidenceArchive.open(Path(data_dir))
    try:
        for i in range(count):
            files = make_files(Path(data_dir).parent / f"in-{tag}-{i}", f"{tag}{i}")
            item = await archive.add_item(files, make_record(note=f"{tag} {i}"), actor=tag)
            await archive.get(item.item_id, actor=tag, reason="looked at it")
            report = await archive.verify(item.item_id)
            assert report.ok, report.problems
            print(item.item_id, item.leaf_index, flush=True)
    finally:
        await archive.aclose()

asyncio.run(main(sys.argv[1], sys.argv[2], int(sys.argv[3])))
"""


async def _writer(data_dir: Path, tag: str, count: int) -> list[tuple[str, int]]:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        WRITER,
        str(data_dir),
        tag,
        str(count),
        cwd=REPO,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await process.communicate()
    assert process.returncode == 0, err.decode()
    return [(line.split()[0], int(line.split()[1])) for line in out.decode().splitlines()]


async def test_two_processes_append_to_one_log_without_forking_it(tmp_path: Path) -> None:
    data_dir = tmp_path / "evidence"
    # This process holds the archive open throughout, as a third node would.
    archive = await EvidenceArchive.open(data_dir)
    try:
        first = await archive.add_item(make_files(tmp_path / "in-0"), make_record(), actor="node-0")
        old_head = archive.tree_head()
        count = 15
        written = await asyncio.gather(_writer(data_dir, "a", count), _writer(data_dir, "b", count))
        items = [entry for batch in written for entry in batch]
        assert len(items) == 2 * count
        # Every append (item.added and item.viewed) took its own index: no two share one.
        indices = [index for _, index in items]
        assert len(set(indices)) == len(indices)

        # This process has not appended since: it catches up before verifying.
        assert archive.log.size == 1
        for item_id, _ in items:
            report = await archive.verify(item_id)
            assert report.ok, report.problems
        assert archive.log.size == 1 + 2 * 2 * count
        # The log only grew: the head signed before the writers is a prefix of the new one.
        new_head = archive.tree_head()
        proof = archive.consistency_proof(old_head.tree_size, new_head.tree_size)
        assert verify_consistency(
            old_head.tree_size,
            new_head.tree_size,
            bytes.fromhex(old_head.root_hash),
            bytes.fromhex(new_head.root_hash),
            proof,
        )
        # Its own next append lands after everything the others wrote.
        again = await archive.add_item(
            make_files(tmp_path / "in-1", "z"), make_record(), actor="n0"
        )
        assert again.leaf_index == new_head.tree_size
        assert (await archive.verify(first.item_id)).ok
    finally:
        await archive.aclose()

    # A fresh open rebuilds the same tree from SQLite, checking every row.
    reopened = await EvidenceArchive.open(data_dir)
    try:
        assert reopened.log.size == 2 + 2 * 2 * count
        assert reopened.log.root() == archive.log.root()
    finally:
        await reopened.aclose()


def test_processes_creating_the_signing_key_together_agree_on_one(tmp_path: Path) -> None:
    import concurrent.futures
    import multiprocessing

    from evidence.signing import SigningKey

    context = multiprocessing.get_context("spawn")
    with concurrent.futures.ProcessPoolExecutor(4, mp_context=context) as pool:
        ids = list(pool.map(_key_id_of, [tmp_path] * 8))
    assert len(set(ids)) == 1
    assert SigningKey.load_or_create(tmp_path).key_id == ids[0]
    assert [p.name for p in tmp_path.iterdir()] == ["signing_key.pem"]


def _key_id_of(directory: Path) -> str:
    from evidence.signing import SigningKey

    return SigningKey.load_or_create(directory).key_id
