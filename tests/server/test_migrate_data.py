"""``inspectd migrate`` and ``inspectd migrate-data``: an embedded install (SQLite under a data
directory) with accounts, cases and their timeline, the outbox, sites and cameras, rules,
sales and evidence is copied into PostgreSQL through the command line, verified, and a node
started on PostgreSQL finds all of it; a target that holds records is refused."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator
from datetime import date
from pathlib import Path
from typing import Any

import pytest

from evidence import EvidenceArchive
from server.cases import (
    CaseKind,
    Cosmetic,
    Functional,
    NewCase,
    Packaging,
    ReturnDecision,
    ReturnFacts,
    ReturnVerdict,
)
from server.cli import main
from server.settings import Settings
from server.sites import CameraKind, NewCamera
from server.storage.analytics import SalesRow
from server.wiring.services import Services, open_services
from server.wiring.storage import open_archive
from signaling import Role
from signaling.ports import Identity
from tests.evidence.conftest import make_record
from tests.postgres_server import (  # noqa: F401 - fixtures: the session's PostgreSQL
    create_schema,
    drop_schemas,
    postgres_url,
)

AGENT = Identity(subject="u_agent", name="Alan", role=Role.AGENT)
FACTS = ReturnFacts(Cosmetic.LIGHT_WEAR, Functional.WORKS, Packaging.DAMAGED, True)


@pytest.fixture
async def schema(postgres_url: str) -> AsyncIterator[str]:  # noqa: F811
    name = await create_schema(postgres_url)
    yield name
    await drop_schemas(postgres_url, [name])


async def _fill(settings: Settings, tmp_path: Path) -> dict[str, Any]:
    """An embedded install with some of everything; what it holds."""
    services = await open_services(settings, start_webhooks=False)
    try:
        user = await services.accounts.create_user("ada", "ada-password-1", "Ada", Role.ADMIN)
        await services.accounts.create_user("Alan", "alan-password-1", "Alan", Role.AGENT)
        token, _ = await services.accounts.create_api_token("shop")
        await services.webhooks.add_webhook("https://hooks.example/inspect", created_by=user.id)
        decided = await services.cases.create(
            NewCase(CaseKind.RETURN, customer_name="Dana", order_id="ORD-1", sku="SKU-1"),
            actor="api",
        )
        await services.cases.customer_arrived(decided.id)
        await services.cases.accept(decided.id, AGENT)
        await services.cases.decide(
            decided.id, ReturnVerdict(ReturnDecision.REFUND, FACTS), actor=AGENT.subject
        )
        waiting = await services.cases.create(
            NewCase(CaseKind.SUPPORT, customer_name="Eve"), actor="api"
        )
        await services.cases.customer_arrived(waiting.id)
        site = await services.sites.create_site("Lisbon DC", actor=user.id)
        camera = await services.sites.create_camera(
            site.id, NewCamera("Dock 1", CameraKind.WHIP), actor=user.id
        )
        await services.returns.save({"rules": []}, actor=user.id, note="first table")
        await services.analytics.put_sales([SalesRow(date(2026, 11, 2), "SKU-1", 40)])
        events = {case: await services.cases.events(case) for case in (decided.id, waiting.id)}
        pending = await services.webhooks.pending()
    finally:
        await services.aclose()
    archive = await open_archive(settings)
    try:
        clip = tmp_path / "clip.webm"
        clip.write_bytes(b"\x1a\x45\xdf\xa3 evidence bytes")
        item = await archive.add_item(
            [("clip.webm", clip)], make_record(case_id=decided.id), actor="u_agent"
        )
        await archive.hold(item.item_id, actor="u_ada", reason="carrier dispute")
        root = archive.log.root()
        size = archive.log.size
    finally:
        await archive.aclose()
    return {
        "token": token,
        "cases": (decided.id, waiting.id),
        "events": events,
        "camera": camera.id,
        "pending": pending,
        "item": item.item_id,
        "root": root,
        "size": size,
    }


async def test_an_embedded_install_moves_to_postgresql_whole(
    tmp_path: Path,
    postgres_url: str,  # noqa: F811
    schema: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    data_dir = tmp_path / "var"
    embedded = Settings(data_dir=data_dir, grading=False)
    held = await _fill(embedded, tmp_path)

    argv = ["migrate-data", "--from", str(data_dir / "inspect.db"), "--to", postgres_url]
    assert await asyncio.to_thread(main, [*argv, "--schema", schema]) == 0
    said = capsys.readouterr().out
    assert "cases" in said and "case_events" in said and "equal on both sides" in said
    assert held["root"].hex() in said  # the evidence log's root, the same before and after

    on_pg = dataclasses.replace(embedded, database_url=postgres_url, database_schema=schema)
    services: Services = await open_services(on_pg, start_webhooks=False)
    try:
        assert services.db.backend == "postgresql"
        # Accounts: a password and a token made on SQLite work; usernames keep their case rule.
        assert await services.accounts.find_user("alan") is not None
        for case_id in held["cases"]:
            assert await services.cases.events(case_id) == held["events"][case_id]
        decided = await services.cases.require(held["cases"][0])
        assert decided.decision == "refund"
        assert (await services.sites.require_camera(held["camera"])).name == "Dock 1"
        assert len(await services.returns.versions()) == 1
        assert await services.webhooks.pending() == held["pending"]
        # The copy goes on where the original stopped: new rows after the copied ones.
        later = await services.cases.create(NewCase(CaseKind.SUPPORT, customer_name="F"), actor="t")
        assert [c.id for c in await services.cases.list_cases()][0] == later.id
    finally:
        await services.aclose()
    archive: EvidenceArchive = await open_archive(on_pg)
    try:
        assert (archive.log.size, archive.log.root()) == (held["size"], held["root"])
        report = await archive.verify(held["item"])
        assert report.ok, report.problems
    finally:
        await archive.aclose()

    # Again into the same schema: refused, nothing changed.
    assert await asyncio.to_thread(main, [*argv, "--schema", schema]) == 1
    assert "already holds records" in capsys.readouterr().err


async def test_migrate_brings_the_schema_to_this_version(
    tmp_path: Path,
    postgres_url: str,  # noqa: F811
    schema: str,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("INSPECT_DATA_DIR", str(tmp_path / "var"))
    monkeypatch.setenv("INSPECT_DATABASE_URL", postgres_url)
    monkeypatch.setenv("INSPECT_DATABASE_SCHEMA", schema)
    assert await asyncio.to_thread(main, ["migrate"]) == 0
    assert f"schema {schema}: schema version" in capsys.readouterr().out
