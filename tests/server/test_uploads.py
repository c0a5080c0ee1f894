"""The resumable photo upload spool over real files: chunks make the exact file, a stream that
breaks keeps what arrived and resumes, a restart finds the offset in the file, and the limits,
owners, expiry, a full disk and damaged files behave as a phone's client needs."""

from __future__ import annotations

import asyncio
import errno
import os
import time
from collections.abc import AsyncIterator, Callable, Iterable
from pathlib import Path

import pytest

from server.capture import uploads
from server.capture.uploads import OffsetMismatch, StorageFull, Upload, UploadStore
from server.errors import Conflict, DomainError, DomainErrorCode, InvalidRequest, NotFound

PHOTO = bytes(range(256)) * 40  # 10 KiB, every byte value, so a misplaced chunk shows
OWNER = "case-7:customer"
MAX_BYTES = 1 << 20


class Clock:
    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now


async def stream(chunks: Iterable[bytes], *, fail_after: int | None = None) -> AsyncIterator[bytes]:
    """A request body arriving in ``chunks``; with ``fail_after`` the network drops after that
    many."""
    for index, chunk in enumerate(chunks):
        if index == fail_after:
            raise ConnectionResetError("the phone lost its network")
        yield chunk


def split(data: bytes, count: int) -> list[bytes]:
    step = -(-len(data) // count)
    return [data[start : start + step] for start in range(0, len(data), step)]


def spool_in(tmp_path: Path, **options: object) -> UploadStore:
    return UploadStore(tmp_path / "spool", max_bytes=MAX_BYTES, **options)  # type: ignore[arg-type]


async def new_photo(store: UploadStore, size: int = len(PHOTO), owner: str = OWNER) -> Upload:
    return await store.create(owner, size=size, content_type="image/jpeg", meta={})


def spool_files(tmp_path: Path) -> list[str]:
    return sorted(path.name for path in (tmp_path / "spool").iterdir())


async def test_chunks_make_the_exact_file(tmp_path: Path) -> None:
    store = spool_in(tmp_path)
    upload = await store.create(
        OWNER,
        size=len(PHOTO),
        content_type="image/jpeg",
        meta={"request_id": "r-1", "source": "camera", "at": (1, 2)},
    )
    assert upload.offset == 0 and not upload.complete
    assert spool_files(tmp_path) == [f"{upload.id}.json", f"{upload.id}.part"]

    done = await store.append(upload.id, OWNER, offset=0, chunks=stream(split(PHOTO, 3)))

    assert done.complete and done.offset == len(PHOTO)
    taken, path = await store.take(upload.id, OWNER)
    assert path.read_bytes() == PHOTO
    assert taken.content_type == "image/jpeg"
    assert dict(taken.meta) == {"request_id": "r-1", "source": "camera", "at": [1, 2]}
    await store.discard(upload.id)
    await store.discard(upload.id)  # the edge may discard twice after a failure
    assert spool_files(tmp_path) == []
    with pytest.raises(NotFound):
        await store.status(upload.id, OWNER)


async def test_pieces_in_separate_requests_follow_the_offset(tmp_path: Path) -> None:
    store = spool_in(tmp_path)
    upload = await new_photo(store)
    for piece in split(PHOTO, 3):
        upload = await store.append(upload.id, OWNER, offset=upload.offset, chunks=stream([piece]))
    _, path = await store.take(upload.id, OWNER)
    assert path.read_bytes() == PHOTO


async def test_a_wrong_offset_says_where_the_upload_stands(tmp_path: Path) -> None:
    store = spool_in(tmp_path)
    upload = await new_photo(store)
    await store.append(upload.id, OWNER, offset=0, chunks=stream([PHOTO[:100]]))

    for wrong in (0, 50, 200):
        with pytest.raises(OffsetMismatch) as mismatch:
            await store.append(upload.id, OWNER, offset=wrong, chunks=stream([PHOTO[100:300]]))
        assert mismatch.value.offset == 100
        assert isinstance(mismatch.value, Conflict)

    assert (tmp_path / "spool" / f"{upload.id}.part").read_bytes() == PHOTO[:100]


async def test_an_upload_interrupted_and_resumed_is_exact(tmp_path: Path) -> None:
    store = spool_in(tmp_path)
    upload = await new_photo(store)
    chunks = split(PHOTO, 4)

    with pytest.raises(ConnectionResetError):
        await store.append(upload.id, OWNER, offset=0, chunks=stream(chunks, fail_after=2))

    kept = len(chunks[0]) + len(chunks[1])
    status = await store.status(upload.id, OWNER)
    assert status.offset == kept and not status.complete
    done = await store.append(upload.id, OWNER, offset=kept, chunks=stream(chunks[2:]))
    assert done.complete
    _, path = await store.take(upload.id, OWNER)
    assert path.read_bytes() == PHOTO


async def test_a_cancelled_append_keeps_what_was_written(tmp_path: Path) -> None:
    store = spool_in(tmp_path)
    upload = await new_photo(store)
    waiting = asyncio.Event()

    async def stalls() -> AsyncIterator[bytes]:
        yield PHOTO[:1000]
        yield PHOTO[1000:3000]
        waiting.set()  # asked for a third chunk: the first two are on disk
        await asyncio.Event().wait()
        yield PHOTO[3000:]

    task = asyncio.create_task(store.append(upload.id, OWNER, offset=0, chunks=stalls()))
    async with asyncio.timeout(5):
        await waiting.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task

    assert (await store.status(upload.id, OWNER)).offset == 3000
    assert (tmp_path / "spool" / f"{upload.id}.part").read_bytes() == PHOTO[:3000]


async def test_too_large_or_empty_at_create(tmp_path: Path) -> None:
    store = spool_in(tmp_path)
    with pytest.raises(DomainError) as too_large:
        await new_photo(store, size=MAX_BYTES + 1)
    assert too_large.value.code is DomainErrorCode.TOO_LARGE
    assert "1 MB" in too_large.value.message and too_large.value.fields == ("size",)
    for size in (0, -5):
        with pytest.raises(InvalidRequest) as invalid:
            await new_photo(store, size=size)
        assert invalid.value.fields == ("size",)
    with pytest.raises(InvalidRequest) as not_json:
        await store.create(OWNER, size=10, content_type="image/jpeg", meta={"x": object()})
    assert not_json.value.fields == ("meta",)
    assert store.open_count(OWNER) == 0
    assert not (tmp_path / "spool").exists() or spool_files(tmp_path) == []
    assert (await new_photo(store, size=MAX_BYTES)).size == MAX_BYTES


async def test_data_past_the_size_refuses_the_whole_append(tmp_path: Path) -> None:
    store = spool_in(tmp_path)
    upload = await new_photo(store, size=10)
    await store.append(upload.id, OWNER, offset=0, chunks=stream([b"012345"]))

    with pytest.raises(DomainError) as too_large:
        await store.append(upload.id, OWNER, offset=6, chunks=stream([b"67", b"89ab"]))

    assert too_large.value.code is DomainErrorCode.TOO_LARGE
    part = tmp_path / "spool" / f"{upload.id}.part"
    assert part.read_bytes() == b"012345", "nothing of the refused append is kept"
    assert (await store.status(upload.id, OWNER)).offset == 6
    done = await store.append(upload.id, OWNER, offset=6, chunks=stream([b"67", b"89"]))
    assert done.complete and part.read_bytes() == b"0123456789"


async def test_another_owner_finds_nothing(tmp_path: Path) -> None:
    store = spool_in(tmp_path)
    upload = await new_photo(store, size=4)
    with pytest.raises(NotFound) as unknown:
        await store.status("AAAAAAAAAAAAAAAA", OWNER)

    stranger = "case-8:customer"
    for attempt in (
        store.status(upload.id, stranger),
        store.append(upload.id, stranger, offset=0, chunks=stream([b"evil"])),
        store.take(upload.id, stranger),
    ):
        with pytest.raises(NotFound) as other:
            await attempt
        assert other.value.message == unknown.value.message

    assert (await store.status(upload.id, OWNER)).offset == 0


async def test_ids_never_reach_outside_the_spool(tmp_path: Path) -> None:
    store = spool_in(tmp_path)
    await new_photo(store)
    victim = tmp_path / "victim.part"
    victim.write_bytes(b"keep me")
    await store.discard("../victim")
    with pytest.raises(NotFound):
        await store.status("../victim", OWNER)
    assert victim.read_bytes() == b"keep me"


async def test_an_expired_upload_is_not_found_and_swept(tmp_path: Path) -> None:
    clock = Clock()
    store = spool_in(tmp_path, ttl_s=60.0, clock=clock)
    upload = await new_photo(store)
    await store.append(upload.id, OWNER, offset=0, chunks=stream([PHOTO[:10]]))
    clock.now += 59
    assert await store.sweep() == 0
    assert (await store.status(upload.id, OWNER)).offset == 10

    clock.now += 2
    with pytest.raises(NotFound):
        await store.status(upload.id, OWNER)
    with pytest.raises(NotFound):
        await store.append(upload.id, OWNER, offset=10, chunks=stream([PHOTO[10:]]))
    assert store.open_count(OWNER) == 0
    assert await store.sweep() == 1
    assert spool_files(tmp_path) == []


async def test_a_restarted_store_resumes_from_the_file(tmp_path: Path) -> None:
    first = spool_in(tmp_path)
    upload = await first.create(
        OWNER, size=len(PHOTO), content_type="image/png", meta={"source": "gallery"}
    )
    await first.append(upload.id, OWNER, offset=0, chunks=stream([PHOTO[:4000]]))

    again = spool_in(tmp_path)
    status = await again.status(upload.id, OWNER)
    assert status.offset == 4000
    assert (status.size, status.content_type, dict(status.meta)) == (
        len(PHOTO),
        "image/png",
        {"source": "gallery"},
    )
    assert status.expires_at == upload.expires_at
    assert again.open_count(OWNER) == 1
    await again.append(upload.id, OWNER, offset=4000, chunks=stream([PHOTO[4000:]]))
    _, path = await again.take(upload.id, OWNER)
    assert path.read_bytes() == PHOTO


async def test_a_full_disk_keeps_the_upload_up_to_its_last_whole_chunk(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = spool_in(tmp_path)
    upload = await new_photo(store)
    chunks = split(PHOTO, 4)
    real_write: Callable[[Path, bytes], None] = uploads._write
    calls = 0

    def fills_up(path: Path, data: bytes) -> None:
        nonlocal calls
        calls += 1
        if calls == 2:
            real_write(path, data[:100])  # part of the chunk got out before the disk filled
            raise OSError(errno.ENOSPC, "No space left on device")
        real_write(path, data)

    monkeypatch.setattr(uploads, "_write", fills_up)
    with pytest.raises(StorageFull) as full:
        await store.append(upload.id, OWNER, offset=0, chunks=stream(chunks))

    assert full.value.offset == len(chunks[0])
    assert full.value.code is DomainErrorCode.UNAVAILABLE
    assert f"kept up to byte {len(chunks[0])}" in full.value.message
    part = tmp_path / "spool" / f"{upload.id}.part"
    assert part.stat().st_size == len(chunks[0])
    assert (await store.status(upload.id, OWNER)).offset == len(chunks[0])

    monkeypatch.undo()  # space was freed: the client resumes
    await store.append(upload.id, OWNER, offset=len(chunks[0]), chunks=stream(chunks[1:]))
    assert part.read_bytes() == PHOTO


async def test_take_refuses_an_incomplete_upload(tmp_path: Path) -> None:
    store = spool_in(tmp_path)
    upload = await new_photo(store, size=10)
    await store.append(upload.id, OWNER, offset=0, chunks=stream([b"abc"]))
    with pytest.raises(Conflict) as incomplete:
        await store.take(upload.id, OWNER)
    assert "3 of 10 bytes" in incomplete.value.message


async def test_one_owner_holds_a_bounded_number_of_uploads(tmp_path: Path) -> None:
    clock = Clock()
    store = spool_in(tmp_path, max_open_per_owner=2, ttl_s=60.0, clock=clock)
    first = await new_photo(store)
    await new_photo(store)
    with pytest.raises(Conflict) as capped:
        await new_photo(store)
    assert capped.value.code is DomainErrorCode.RATE_LIMITED
    assert store.open_count(OWNER) == 2
    await new_photo(store, owner="case-8:customer")  # others are not held back

    await store.discard(first.id)
    await new_photo(store)
    with pytest.raises(Conflict):
        await new_photo(store)
    clock.now += 61  # expired uploads no longer count
    assert store.open_count(OWNER) == 0
    await new_photo(store)


async def test_concurrent_creates_respect_the_cap(tmp_path: Path) -> None:
    store = spool_in(tmp_path, max_open_per_owner=3)
    results = await asyncio.gather(*(new_photo(store) for _ in range(6)), return_exceptions=True)
    assert sum(isinstance(result, Upload) for result in results) == 3
    assert sum(isinstance(result, Conflict) for result in results) == 3


async def test_concurrent_appends_are_serialised(tmp_path: Path) -> None:
    store = spool_in(tmp_path)
    upload = await new_photo(store, size=2000)
    started, go = asyncio.Event(), asyncio.Event()

    async def slow() -> AsyncIterator[bytes]:
        started.set()
        await go.wait()
        yield PHOTO[:1000]
        yield PHOTO[1000:2000]

    first = asyncio.create_task(store.append(upload.id, OWNER, offset=0, chunks=slow()))
    async with asyncio.timeout(5):
        await started.wait()
    # Also from offset 0, while the first has not written anything yet.
    second = asyncio.create_task(
        store.append(upload.id, OWNER, offset=0, chunks=stream([b"x" * 2000]))
    )
    go.set()
    async with asyncio.timeout(5):
        done = await first
        with pytest.raises(OffsetMismatch) as moved:
            await second
    assert done.complete and moved.value.offset == 2000
    _, path = await store.take(upload.id, OWNER)
    assert path.read_bytes() == PHOTO[:2000]


async def test_a_corrupt_record_is_not_found_and_swept(tmp_path: Path) -> None:
    store = spool_in(tmp_path)
    upload = await new_photo(store)
    await store.append(upload.id, OWNER, offset=0, chunks=stream([PHOTO[:10]]))
    (tmp_path / "spool" / f"{upload.id}.json").write_text('{"format": 1, "id": ')

    restarted = spool_in(tmp_path)
    with pytest.raises(NotFound):
        await restarted.status(upload.id, OWNER)
    assert restarted.open_count(OWNER) == 0
    assert await restarted.sweep() == 1
    assert spool_files(tmp_path) == []


async def test_stray_files_are_swept_once_older_than_the_ttl(tmp_path: Path) -> None:
    store = spool_in(tmp_path, ttl_s=60.0)
    live = await new_photo(store)
    spool = tmp_path / "spool"
    old, fresh = spool / "OLDOLDOLDOLDOLD_.part", spool / "NEWNEWNEWNEWNEW_.part"
    old.write_bytes(b"left by a crash")
    fresh.write_bytes(b"being created")
    an_hour_ago = time.time() - 3600
    os.utime(old, (an_hour_ago, an_hour_ago))
    os.utime(spool / f"{live.id}.part", (an_hour_ago, an_hour_ago))  # age alone: it is live

    assert await store.sweep() == 1
    assert spool_files(tmp_path) == sorted([fresh.name, f"{live.id}.json", f"{live.id}.part"])
