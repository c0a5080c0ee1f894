"""Fixtures for the evidence tests: a fake clock, records and real files in tmp_path, and the
archive on each backend.

A module that sets ``ARCHIVE_BACKENDS = ("sqlite", "postgres")`` runs each of its tests that
opens an archive (the ``archive`` or ``open_archive`` fixture) once per backend; the others
run on SQLite only. On PostgreSQL each test has a schema of its own in the session's server
(``tests/postgres_server.py``), dropped after it."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from evidence import EvidenceArchive, EvidenceRecord
from tests.postgres_server import (  # noqa: F401 - fixture: the session's PostgreSQL
    create_schema,
    drop_schemas,
    postgres_url,
)

T0 = datetime(2025, 3, 1, 10, 0, tzinfo=UTC)


@dataclass
class FakeClock:
    now: float = T0.timestamp()

    def __call__(self) -> float:
        return self.now

    def advance(self, delta: timedelta) -> None:
        self.now += delta.total_seconds()


def make_record(**overrides: Any) -> EvidenceRecord:
    fields: dict[str, Any] = {
        "case_id": "case-1",
        "use": "return",
        "operator": "agent-7",
        "started_at": T0 - timedelta(minutes=2),
        "ended_at": T0 - timedelta(minutes=1),
        "kind": "clip",
        "order_id": "ORD-1",
        "tracking_number": "1Z999",
        "unit_id": "UNIT-1",
        "sku": "SKU-1",
        "logistics_stage": "return_receipt",
        "grading": {"grade": "B", "model": {"grade": "B", "defects": [{"kind": "scratch"}]}},
        "privacy_notice_version": "pn-3",
        "note": "box dented",
        "retention_class": "standard",
    }
    fields.update(overrides)
    return EvidenceRecord(**fields)


def make_files(directory: Path, tag: str = "a", *, snapshot: bool = True) -> list[tuple[str, Path]]:
    directory.mkdir(parents=True, exist_ok=True)
    clip = directory / f"clip-{tag}.webm"
    clip.write_bytes(b"\x1a\x45\xdf\xa3" + tag.encode() * 5000)
    files = [("clip.webm", clip)]
    if snapshot:
        jpg = directory / f"snap-{tag}.jpg"
        jpg.write_bytes(b"\xff\xd8\xff\xe0" + tag.encode() * 300 + b"\xff\xd9")
        files.append(("snapshot.jpg", jpg))
    return files


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


OpenArchive = Callable[..., Awaitable[EvidenceArchive]]


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "archive_backend" in metafunc.fixturenames:
        backends = getattr(metafunc.module, "ARCHIVE_BACKENDS", ("sqlite",))
        metafunc.parametrize("archive_backend", backends, indirect=True)


@pytest.fixture
def archive_backend(request: pytest.FixtureRequest) -> str:
    return str(getattr(request, "param", "sqlite"))


@pytest.fixture
async def open_archive(
    request: pytest.FixtureRequest, archive_backend: str
) -> AsyncIterator[OpenArchive]:
    """``await open_archive(data_dir, clock=...)``: an archive on the backend under test (on
    PostgreSQL every archive of the test shares one schema, as the nodes of one deployment)."""
    if archive_backend == "sqlite":
        yield EvidenceArchive.open
        return
    url: str = request.getfixturevalue("postgres_url")
    schema = await create_schema(url)

    def opener(data_dir: Path, **kwargs: Any) -> Awaitable[EvidenceArchive]:
        return EvidenceArchive.open(data_dir, database_url=url, schema=schema, **kwargs)

    try:
        yield opener
    finally:
        await drop_schemas(url, [schema])


@pytest.fixture
async def archive(
    open_archive: OpenArchive, tmp_path: Path, clock: FakeClock
) -> AsyncIterator[EvidenceArchive]:
    opened = await open_archive(tmp_path / "data", clock=clock)
    try:
        yield opened
    finally:
        await opened.aclose()
