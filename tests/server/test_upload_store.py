"""The photo upload spool on its own: pieces, a piece cut off halfway and resumed, the offset a
restart finds, the limits, and a full disk."""

from __future__ import annotations

import asyncio
import errno
from collections.abc import AsyncIterator, Iterable
from pathlib import Path

import pytest

from server.capture import uploads
from server.capture.uploads import OffsetMismatch, StorageFull, UploadStore
from server.errors import Conflict, DomainError, DomainErrorCode, InvalidRequest, NotFound

DATA = bytes(range(256)) * 64  # 16 KiB
OWNER = "case-1:customer:case-1"


async def pieces(chunks: Iterable[bytes], fail_after: int | None = None) -> AsyncIterator[bytes]:
    for i, chunk in enumerate(chunks):
        if fail_after is not None and i == fail_after:
            raise ConnectionResetError("the phone lost its network")
        yield chunk
        await asyncio.sleep(0)


def split(data: bytes, n: int) -> list[bytes]:
    size = -(-len(data) // n)
    return [data[i : i + size] for i in range(0, len(data), size)]


def store(tmp_path: Path, **kwargs: object) -> UploadStore:
    return UploadStore(tmp_path / "uploads", max_bytes=1 << 20, **kwargs)  # type: ignore[arg-type]


async def test_pieces_make_the_exact_file(tmp_path: Path) -> None:
    spool = store(tmp_path)
    upload = await spool.create(OWNER, size=len(DATA), content_type="image/jpeg", meta={"a": 1})
    offset = 0
    for chunk in split(DATA, 3):
        upload = await spool.append(upload.id, OWNER, offset=offset, chunks=pieces([chunk]))
        offset = upload.offset
    assert upload.complete
    taken, path = await spool.take(upload.id, OWNER)
    assert path.read_bytes() == DATA and taken.meta == {"a": 1}
    await spool.discard(upload.id)
    with pytest.raises(NotFound):
        await spool.status(upload.id, OWNER)


async def test_a_piece_cut_off_keeps_what_arrived_and_resumes(tmp_path: Path) -> None:
    spool = store(tmp_path)
    upload = await spool.create(OWNER, size=len(DATA), content_type="image/png", meta={})
    chunks = split(DATA, 4)
    with pytest.raises(ConnectionResetError):
        await spool.append(upload.id, OWNER, offset=0, chunks=pieces(chunks, fail_after=2))
    kept = (await spool.status(upload.id, OWNER)).offset
    assert kept == len(chunks[0]) + len(chunks[1])
    with pytest.raises(OffsetMismatch) as wrong:
        await spool.append(upload.id, OWNER, offset=0, chunks=pieces([DATA]))
    assert wrong.value.offset == kept
    # A restarted server finds the same offset in the files.
    again = store(tmp_path)
    assert (await again.status(upload.id, OWNER)).offset == kept
    done = await again.append(upload.id, OWNER, offset=kept, chunks=pieces([DATA[kept:]]))
    assert done.complete
    _, path = await again.take(upload.id, OWNER)
    assert path.read_bytes() == DATA


async def test_a_cancelled_piece_keeps_what_was_written(tmp_path: Path) -> None:
    spool = store(tmp_path)
    upload = await spool.create(OWNER, size=len(DATA), content_type="image/png", meta={})
    gate = asyncio.Event()

    async def slow() -> AsyncIterator[bytes]:
        yield DATA[:1000]
        gate.set()
        await asyncio.sleep(60)
        yield DATA[1000:]

    task = asyncio.create_task(spool.append(upload.id, OWNER, offset=0, chunks=slow()))
    await gate.wait()
    await asyncio.sleep(0.05)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert (await spool.status(upload.id, OWNER)).offset == 1000


async def test_limits_owners_and_expiry(tmp_path: Path) -> None:
    now = [1000.0]
    spool = store(tmp_path, ttl_s=60.0, max_open_per_owner=2, clock=lambda: now[0])
    with pytest.raises(DomainError) as big:
        await spool.create(OWNER, size=(1 << 20) + 1, content_type="image/jpeg", meta={})
    assert big.value.code is DomainErrorCode.TOO_LARGE and "MB" in big.value.message
    with pytest.raises(InvalidRequest):
        await spool.create(OWNER, size=0, content_type="image/jpeg", meta={})
    upload = await spool.create(OWNER, size=10, content_type="image/jpeg", meta={})
    with pytest.raises(DomainError) as past:
        await spool.append(upload.id, OWNER, offset=0, chunks=pieces([b"x" * 11]))
    assert past.value.code is DomainErrorCode.TOO_LARGE
    assert (await spool.status(upload.id, OWNER)).offset == 0, "nothing past the size is kept"
    with pytest.raises(NotFound):
        await spool.status(upload.id, "someone-else")
    with pytest.raises(Conflict):
        await spool.take(upload.id, OWNER)
    await spool.create(OWNER, size=10, content_type="image/jpeg", meta={})
    with pytest.raises(Conflict):
        await spool.create(OWNER, size=10, content_type="image/jpeg", meta={})
    now[0] += 61
    with pytest.raises(NotFound):
        await spool.status(upload.id, OWNER)
    assert await spool.sweep() == 2
    assert not list((tmp_path / "uploads").iterdir())


async def test_a_full_disk_keeps_the_upload_up_to_its_last_whole_chunk(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    spool = store(tmp_path)
    upload = await spool.create(OWNER, size=len(DATA), content_type="image/jpeg", meta={})
    real = uploads._write
    calls = []

    def write(path: Path, data: bytes) -> None:
        calls.append(len(data))
        if len(calls) == 2:
            real(path, data[:100])  # part of it reached the disk before it filled up
            raise OSError(errno.ENOSPC, "No space left on device")
        real(path, data)

    monkeypatch.setattr(uploads, "_write", write)
    chunks = split(DATA, 4)
    with pytest.raises(StorageFull) as full:
        await spool.append(upload.id, OWNER, offset=0, chunks=pieces(chunks))
    assert full.value.offset == len(chunks[0])
    assert "disk is full" in full.value.message
    assert (await spool.status(upload.id, OWNER)).offset == len(chunks[0])


async def test_a_corrupt_record_is_no_upload_and_is_swept(tmp_path: Path) -> None:
    spool = store(tmp_path, ttl_s=0.0)
    upload = await spool.create(OWNER, size=10, content_type="image/jpeg", meta={})
    (tmp_path / "uploads" / f"{upload.id}.json").write_text("{not json")
    with pytest.raises(NotFound):
        await spool.status(upload.id, OWNER)
    assert await spool.sweep() == 1
