"""The database holds password hashes and webhook secrets: its folder and files are the
owner's only, and modes an older start left open are closed at the next start."""

from __future__ import annotations

import logging
import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from server.storage.sqlite.database import Database


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture
def open_umask() -> Iterator[None]:
    # The loosest usual umask, so the modes are the code's doing and not the umask's.
    previous = os.umask(0o002)
    yield None
    os.umask(previous)


async def test_a_new_database_is_private(tmp_path: Path, open_umask: None) -> None:
    path = tmp_path / "var" / "inspect.db"
    db = await Database.open(path)
    try:
        await db.execute("INSERT INTO users VALUES ('u1', 'mia', 'Mia', 'agent', 'x', 0, 0)")
        assert _mode(path.parent) == 0o700
        files = [path, path.with_name("inspect.db-wal"), path.with_name("inspect.db-shm")]
        assert all(f.exists() for f in files)
        assert {f.name: _mode(f) for f in files} == {f.name: 0o600 for f in files}
    finally:
        await db.aclose()


async def test_open_modes_left_by_an_older_start_are_tightened(
    tmp_path: Path, open_umask: None, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "var" / "inspect.db"
    db = await Database.open(path)
    await db.aclose()
    path.parent.chmod(0o755)
    for name in ("inspect.db", "inspect.db-wal", "inspect.db-shm"):
        target = path.with_name(name)
        target.touch()
        target.chmod(0o644)
    with caplog.at_level(logging.WARNING, logger="server.storage.sqlite.database"):
        db = await Database.open(path)
    try:
        assert _mode(path.parent) == 0o700
        for name in ("inspect.db", "inspect.db-wal", "inspect.db-shm"):
            assert _mode(path.with_name(name)) == 0o600, name
        assert "was open to other users (mode 644); made it 600" in caplog.text
        assert "(mode 755); made it 700" in caplog.text
    finally:
        await db.aclose()
