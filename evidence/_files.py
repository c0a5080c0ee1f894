"""Blocking file helpers for the archive (run in its IO executor): place, hash, roll back."""

from __future__ import annotations

import errno
import hashlib
import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path

__all__ = ["PlacedFile", "copy_and_hash", "hash_file", "place_files", "remove_tree", "safe_name"]

CHUNK = 1 << 20
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")


def safe_name(name: str) -> bool:
    """A plain file name that cannot escape the item directory."""
    return bool(_NAME.match(name)) and ".." not in name


def hash_file(path: Path) -> tuple[str, int]:
    """SHA-256 (hex) and size of ``path``, read in chunks."""
    digest = hashlib.sha256()
    size = 0
    with path.open("rb") as f:
        while chunk := f.read(CHUNK):
            digest.update(chunk)
            size += len(chunk)
    return digest.hexdigest(), size


def copy_and_hash(src: Path, dst: Path) -> tuple[str, int]:
    """Copy ``src`` to a new file ``dst`` (fsynced), hashing in the same pass."""
    digest = hashlib.sha256()
    size = 0
    with src.open("rb") as fin, dst.open("xb") as fout:
        while chunk := fin.read(CHUNK):
            digest.update(chunk)
            fout.write(chunk)
            size += len(chunk)
        fout.flush()
        os.fsync(fout.fileno())
    return digest.hexdigest(), size


@dataclass(frozen=True, slots=True)
class PlacedFile:
    name: str
    source: Path
    path: Path
    sha256: str
    size: int
    renamed: bool  # moved by rename (undo by renaming back); else a copy


def place_files(files: list[tuple[str, Path]], item_dir: Path, move: bool) -> list[PlacedFile]:
    """Move (rename when on the same file system) or copy ``files`` into a new ``item_dir``.

    On any error everything done is undone: renamed files go back, copies and the directory
    are removed, and the error propagates.
    """
    item_dir.mkdir(parents=True, exist_ok=False)
    placed: list[PlacedFile] = []
    try:
        for name, src in files:
            dst = item_dir / name
            renamed = False
            if move:
                try:
                    os.rename(src, dst)
                    renamed = True
                except OSError as exc:
                    if exc.errno != errno.EXDEV:
                        raise
            if renamed:
                digest, size = hash_file(dst)
            else:
                digest, size = copy_and_hash(src, dst)
            placed.append(PlacedFile(name, src, dst, digest, size, renamed))
        _fsync_dir(item_dir)
    except BaseException:
        undo_placement(placed, item_dir)
        raise
    return placed


def undo_placement(placed: list[PlacedFile], item_dir: Path) -> None:
    """Return renamed files to their sources and delete everything else in ``item_dir``."""
    unreturned: set[Path] = set()
    for p in placed:
        if p.renamed:
            try:
                os.rename(p.path, p.source)
            except OSError:
                # Leave it in the item directory rather than lose the only copy.
                unreturned.add(p.path)
    for child in item_dir.iterdir():
        if child not in unreturned:
            child.unlink(missing_ok=True)
    if not unreturned:
        remove_tree(item_dir)


def remove_tree(path: Path) -> None:
    """Remove an item directory and its parents (month, year) once they are empty."""
    shutil.rmtree(path, ignore_errors=True)
    for parent in (path.parent, path.parent.parent):
        try:
            parent.rmdir()
        except OSError:
            break


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
