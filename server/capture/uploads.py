"""A resumable upload spool: photos that customers' phones send over flaky mobile networks, in
chunks, resumed from where the network dropped them.

An upload is two files in the spool directory: ``<id>.json`` (its metadata, replaced atomically)
and ``<id>.part`` (the bytes received so far). The part file's length *is* the upload's offset:
nothing else records it, so a server that crashed or restarted resumes every upload from what
reached the disk. Appends are serialised per upload; the bytes of a stream that breaks halfway
are kept, so the client asks where it stands (:meth:`UploadStore.status`) and sends the rest.

One store owns its directory: it reads the metadata once, on first use, and keeps it in memory.
Whoever wires the store calls :meth:`UploadStore.sweep` now and then to drop expired uploads."""

from __future__ import annotations

import asyncio
import errno
import functools
import json
import logging
import math
import os
import re
import secrets
import time
from collections.abc import AsyncIterable, Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any, TypeVar

from server.errors import Conflict, DomainError, DomainErrorCode, InvalidRequest, NotFound

__all__ = ["OffsetMismatch", "StorageFull", "Upload", "UploadStore"]

logger = logging.getLogger(__name__)

_T = TypeVar("_T")

#: What ``secrets.token_urlsafe(12)`` makes; anything else never names a file of the spool.
_ID = re.compile(r"[A-Za-z0-9_-]{16}")
_DISK_FULL = frozenset({errno.ENOSPC, errno.EDQUOT})
_FORMAT = 1
#: One message for an unknown, an expired and someone else's upload: the caller learns nothing
#: about uploads that are not its own.
_NOT_FOUND = "no such upload"


class OffsetMismatch(Conflict):
    """The append does not start where the upload stands; ``offset`` says where it does."""

    def __init__(self, offset: int, message: str = "") -> None:
        super().__init__(message or f"the upload continues at byte {offset}")
        self.offset = offset


class StorageFull(DomainError):
    """The spool's disk is full (or its quota spent); the upload keeps its first ``offset``
    bytes and can be resumed from there later."""

    code = DomainErrorCode.UNAVAILABLE

    def __init__(self, offset: int, message: str = "") -> None:
        super().__init__(
            message
            or (
                f"the server's disk is full: the upload was kept up to byte {offset}; "
                "try again later"
            )
        )
        self.offset = offset


@dataclass(frozen=True, slots=True)
class Upload:
    """One upload as it stands: its declared ``size`` and the ``offset`` received so far."""

    id: str
    #: Who may continue, inspect and take it (for instance a case id and its subject).
    owner: str
    size: int
    offset: int
    content_type: str
    #: JSON values the creator attached (request id, "camera" or "gallery", ...).
    meta: Mapping[str, Any]
    created_at: float
    expires_at: float

    @property
    def complete(self) -> bool:
        return self.offset >= self.size


@dataclass(frozen=True, slots=True)
class _Record:
    """An upload's metadata, as its ``.json`` file holds it (the offset is the part's length)."""

    id: str
    owner: str
    size: int
    content_type: str
    meta: Mapping[str, Any]
    created_at: float
    expires_at: float

    def at(self, offset: int) -> Upload:
        return Upload(
            id=self.id,
            owner=self.owner,
            size=self.size,
            offset=offset,
            content_type=self.content_type,
            meta=self.meta,
            created_at=self.created_at,
            expires_at=self.expires_at,
        )

    def to_json(self) -> bytes:
        return json.dumps(
            {
                "format": _FORMAT,
                "id": self.id,
                "owner": self.owner,
                "size": self.size,
                "content_type": self.content_type,
                "meta": dict(self.meta),
                "created_at": self.created_at,
                "expires_at": self.expires_at,
            },
            allow_nan=False,
        ).encode()

    @classmethod
    def from_json(cls, upload_id: str, data: bytes) -> _Record | None:
        """The record in ``data``, or None when it is not one (a damaged file)."""
        try:
            raw = json.loads(data)
        except ValueError:
            return None
        if not isinstance(raw, dict) or raw.get("format") != _FORMAT or raw.get("id") != upload_id:
            return None
        owner, content_type, meta = raw.get("owner"), raw.get("content_type"), raw.get("meta")
        size = _as_int(raw.get("size"))
        created_at, expires_at = _as_time(raw.get("created_at")), _as_time(raw.get("expires_at"))
        if (
            not isinstance(owner, str)
            or not isinstance(content_type, str)
            or not isinstance(meta, dict)
            or size is None
            or size < 1
            or created_at is None
            or expires_at is None
        ):
            return None
        return cls(
            id=upload_id,
            owner=owner,
            size=size,
            content_type=content_type,
            meta=MappingProxyType(meta),
            created_at=created_at,
            expires_at=expires_at,
        )


class UploadStore:
    """The spool of resumable uploads in ``directory`` (created on the first upload).

    ``max_bytes`` bounds one upload, ``max_open_per_owner`` how many one owner may hold at once
    (until they are discarded or expire), so one owner's disk use is bounded too. An upload
    expires ``ttl_s`` after its creation. ``clock`` gives wall-clock seconds (file ages are
    compared with it)."""

    def __init__(
        self,
        directory: Path,
        *,
        max_bytes: int,
        ttl_s: float = 3600.0,
        max_open_per_owner: int = 8,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if max_bytes < 1:
            raise ValueError("max_bytes must be at least 1")
        if ttl_s < 0:
            raise ValueError("ttl_s must not be negative")
        if max_open_per_owner < 1:
            raise ValueError("max_open_per_owner must be at least 1")
        self._directory = directory
        self._max_bytes = max_bytes
        self._ttl_s = ttl_s
        self._max_open = max_open_per_owner
        self._clock = clock
        self._records: dict[str, _Record] = {}
        self._locks: dict[str, asyncio.Lock] = {}
        self._loaded = False
        self._load_lock = asyncio.Lock()

    @property
    def directory(self) -> Path:
        return self._directory

    def open_count(self, owner: str) -> int:
        """How many live uploads ``owner`` holds (created, neither discarded nor expired), as far
        as the store knows: it reads the directory on its first operation."""
        now = self._clock()
        return sum(
            1
            for record in self._records.values()
            if record.owner == owner and now < record.expires_at
        )

    async def create(
        self, owner: str, *, size: int, content_type: str, meta: Mapping[str, Any]
    ) -> Upload:
        """Starts an upload of ``size`` bytes, empty so far."""
        if size < 1:
            raise InvalidRequest("the upload's size must be at least 1 byte", fields=("size",))
        if size > self._max_bytes:
            raise DomainError(
                f"the upload is larger than the limit of {_megabytes(self._max_bytes)} MB",
                code=DomainErrorCode.TOO_LARGE,
                fields=("size",),
            )
        try:
            # The round trip keeps what a restarted store would read back (tuples become lists).
            meta_copy = json.loads(json.dumps(dict(meta), allow_nan=False))
        except (TypeError, ValueError) as exc:
            raise InvalidRequest(
                "the upload's metadata must be JSON values", fields=("meta",)
            ) from exc
        await self._ensure_loaded()
        if self.open_count(owner) >= self._max_open:
            raise Conflict(
                f"too many unfinished uploads (at most {self._max_open}); finish one or try "
                "again later",
                code=DomainErrorCode.RATE_LIMITED,
            )
        upload_id = secrets.token_urlsafe(12)
        while upload_id in self._records:
            upload_id = secrets.token_urlsafe(12)
        now = self._clock()
        record = _Record(
            id=upload_id,
            owner=owner,
            size=size,
            content_type=content_type,
            meta=MappingProxyType(meta_copy),
            created_at=now,
            expires_at=now + self._ttl_s,
        )
        # Entered before the files are written, so concurrent creates count it against the cap.
        self._records[upload_id] = record
        try:
            await _settled(functools.partial(self._write_new, record))
        except BaseException as exc:
            self._forget(upload_id)
            try:
                await _settled(functools.partial(self._remove_files, upload_id))
            except Exception:
                logger.exception("could not remove a failed upload", extra={"upload_id": upload_id})
            if isinstance(exc, OSError) and exc.errno in _DISK_FULL:
                raise StorageFull(
                    0, "the server's disk is full: the upload could not start; try again later"
                ) from exc
            raise
        logger.debug("upload created", extra={"upload_id": upload_id, "owner": owner})
        return record.at(0)

    async def append(
        self, upload_id: str, owner: str, *, offset: int, chunks: AsyncIterable[bytes]
    ) -> Upload:
        """Writes ``chunks`` (a request body, as it arrives) at ``offset``, which must be where
        the upload stands (:class:`OffsetMismatch` otherwise).

        Data past the declared size refuses the whole append (nothing of it is kept). A stream
        that breaks keeps what reached the disk and re-raises its error; a full disk keeps what
        was written whole and raises :class:`StorageFull`."""
        await self._ensure_loaded()
        self._live(upload_id, owner)
        lock = self._locks.setdefault(upload_id, asyncio.Lock())
        async with lock:
            # Again: it may have been discarded or have expired while this append waited.
            record = self._live(upload_id, owner)
            part = _PartFile(self._part_path(upload_id))
            keep: int | None = None
            try:
                try:
                    await _settled(part.open)
                except FileNotFoundError:
                    self._forget(upload_id)
                    raise NotFound(_NOT_FOUND) from None
                if offset != part.end:
                    raise OffsetMismatch(part.end)
                async for chunk in chunks:
                    if not chunk:
                        continue
                    if part.end + len(chunk) > record.size:
                        keep = offset
                        raise DomainError(
                            f"the data goes past the upload's size of {record.size} bytes; "
                            f"nothing of it was kept (the upload continues at byte {offset})",
                            code=DomainErrorCode.TOO_LARGE,
                        )
                    try:
                        await _settled(functools.partial(part.write, chunk))
                    except FileNotFoundError:
                        self._forget(upload_id)
                        raise NotFound(_NOT_FOUND) from None
                    except OSError as exc:
                        if exc.errno in _DISK_FULL:
                            logger.warning(
                                "disk full: upload kept up to byte %d",
                                part.end,
                                extra={"upload_id": upload_id},
                            )
                            raise StorageFull(part.end) from exc
                        raise
            except BaseException as exc:
                try:
                    await _settled(functools.partial(part.close, keep))
                except Exception:
                    logger.exception("could not save an upload", extra={"upload_id": upload_id})
                if not isinstance(exc, DomainError):
                    logger.info(
                        "upload interrupted at byte %d: %r",
                        part.end if keep is None else keep,
                        exc,
                        extra={"upload_id": upload_id},
                    )
                raise
            await _settled(functools.partial(part.close, None))
            return record.at(part.end)

    async def status(self, upload_id: str, owner: str) -> Upload:
        """The upload as it stands: where its client resumes."""
        await self._ensure_loaded()
        record = self._live(upload_id, owner)
        return record.at(await self._offset(upload_id))

    async def take(self, upload_id: str, owner: str) -> tuple[Upload, Path]:
        """The complete upload and its file (which :meth:`discard` removes)."""
        upload = await self.status(upload_id, owner)
        if not upload.complete:
            raise Conflict(f"the upload is not complete: {upload.offset} of {upload.size} bytes")
        return upload, self._part_path(upload_id)

    async def discard(self, upload_id: str) -> None:
        """Removes the upload and its files; nothing happens when there is none."""
        if not _ID.fullmatch(upload_id):
            return
        self._forget(upload_id)
        await asyncio.to_thread(self._remove_files, upload_id)

    async def sweep(self) -> int:
        """Removes expired uploads, damaged ones and stray files older than the TTL; says how
        many uploads it removed."""
        await self._ensure_loaded()
        now = self._clock()
        expired = [
            upload_id for upload_id, record in self._records.items() if now >= record.expires_at
        ]
        for upload_id in expired:
            self._forget(upload_id)
        for upload_id in expired:
            await asyncio.to_thread(self._remove_files, upload_id)
        strays = await asyncio.to_thread(self._sweep_strays, frozenset(self._records), now)
        removed = len(expired) + strays
        if removed:
            logger.info("swept %d uploads", removed)
        return removed

    # -- internals

    def _live(self, upload_id: str, owner: str) -> _Record:
        record = self._records.get(upload_id)
        if record is None or record.owner != owner or self._clock() >= record.expires_at:
            raise NotFound(_NOT_FOUND)
        return record

    def _forget(self, upload_id: str) -> None:
        self._records.pop(upload_id, None)
        self._locks.pop(upload_id, None)

    async def _offset(self, upload_id: str) -> int:
        try:
            stat = await asyncio.to_thread(self._part_path(upload_id).stat)
        except FileNotFoundError:
            self._forget(upload_id)
            raise NotFound(_NOT_FOUND) from None
        return stat.st_size

    async def _ensure_loaded(self) -> None:
        if self._loaded:
            return
        async with self._load_lock:
            if self._loaded:
                return
            found = await asyncio.to_thread(self._scan)
            for upload_id, record in found.items():
                self._records.setdefault(upload_id, record)
            self._loaded = True

    def _part_path(self, upload_id: str) -> Path:
        return self._directory / f"{upload_id}.part"

    def _json_path(self, upload_id: str) -> Path:
        return self._directory / f"{upload_id}.json"

    def _files(self, upload_id: str) -> tuple[Path, ...]:
        return (
            self._part_path(upload_id),
            self._json_path(upload_id),
            self._directory / f"{upload_id}.json.tmp",
        )

    # -- blocking helpers, run in a thread

    def _write_new(self, record: _Record) -> None:
        self._directory.mkdir(parents=True, exist_ok=True)
        with self._part_path(record.id).open("xb"):
            pass
        path = self._json_path(record.id)
        temporary = path.with_name(path.name + ".tmp")
        with temporary.open("wb") as file:
            file.write(record.to_json())
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
        _fsync_directory(self._directory)

    def _remove_files(self, upload_id: str) -> None:
        for path in self._files(upload_id):
            path.unlink(missing_ok=True)

    def _scan(self) -> dict[str, _Record]:
        records: dict[str, _Record] = {}
        try:
            paths = list(self._directory.glob("*.json"))
        except FileNotFoundError:
            return records
        for path in paths:
            upload_id = path.stem
            if not _ID.fullmatch(upload_id):
                continue
            try:
                record = _Record.from_json(upload_id, path.read_bytes())
            except OSError:
                continue
            if record is not None:
                records[upload_id] = record
        return records

    def _sweep_strays(self, known: frozenset[str], now: float) -> int:
        """Removes the files of uploads the store does not know: at once when their metadata
        is damaged, else once all of them are older than the TTL (one being created is new)."""
        try:
            entries = list(os.scandir(self._directory))
        except FileNotFoundError:
            return 0
        newest: dict[str, float] = {}
        for entry in entries:
            upload_id, _, suffix = entry.name.partition(".")
            if suffix not in ("part", "json", "json.tmp") or not _ID.fullmatch(upload_id):
                continue
            if upload_id in known:
                continue
            try:
                modified = entry.stat().st_mtime
            except FileNotFoundError:
                continue
            newest[upload_id] = max(modified, newest.get(upload_id, -math.inf))
        removed = 0
        for upload_id, modified in newest.items():
            if now - modified > self._ttl_s or self._damaged(upload_id):
                self._remove_files(upload_id)
                removed += 1
        return removed

    def _damaged(self, upload_id: str) -> bool:
        try:
            data = self._json_path(upload_id).read_bytes()
        except FileNotFoundError:
            return False
        return _Record.from_json(upload_id, data) is None


class _PartFile:
    """A part file being appended to, and ``end``: the length of the data known to be written
    whole. Its methods block: they run in a thread, one at a time, and the loop reads ``end``
    only after each has ended."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.end = 0
        self._dirty = False

    def open(self) -> None:
        self.end = self.path.stat().st_size

    def write(self, data: bytes) -> None:
        self._dirty = True
        _write(self.path, data)
        self.end += len(data)

    def close(self, length: int | None) -> None:
        """Cuts the file back to ``length`` (``end`` when None) and flushes it to disk."""
        keep = self.end if length is None else length
        if not self._dirty and keep == self.end:
            return
        try:
            fd = os.open(self.path, os.O_WRONLY)
        except FileNotFoundError:
            return  # discarded meanwhile: nothing left to keep
        try:
            if os.fstat(fd).st_size != keep:
                os.ftruncate(fd, keep)
            os.fsync(fd)
        finally:
            os.close(fd)
        self.end = keep
        self._dirty = False


def _write(path: Path, data: bytes) -> None:
    """Appends all of ``data`` to the file at ``path``, which must exist: one discarded meanwhile
    is not made again."""
    fd = os.open(path, os.O_WRONLY | os.O_APPEND)
    try:
        view = memoryview(data)
        while len(view):
            view = view[os.write(fd, view) :]
    finally:
        os.close(fd)


async def _settled(fn: Callable[[], _T]) -> _T:
    """``fn()`` in a thread, awaited to its end even through a cancellation, which is re-raised
    once it has ended: a thread cannot be stopped, and the files must not change behind the
    caller's back while it cleans up."""
    future = asyncio.get_running_loop().run_in_executor(None, fn)
    cancelled: asyncio.CancelledError | None = None
    while not future.done():
        try:
            await asyncio.wait((future,))
        except asyncio.CancelledError as exc:
            cancelled = exc
    if cancelled is not None:
        if not future.cancelled():
            future.exception()  # retrieved: the cancellation wins, the cleanup sees the files
        raise cancelled
    return future.result()


def _fsync_directory(directory: Path) -> None:
    """Makes a rename in ``directory`` durable (where the platform allows opening one)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _megabytes(count: int) -> str:
    # MiB, as the setting that bounds a photo counts them.
    return f"{count / (1024 * 1024):.1f}".removesuffix(".0")


def _as_int(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _as_time(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        return None
    return float(value)
