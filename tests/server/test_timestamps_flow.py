"""Outside timestamps and content credentials through the whole service: with INSPECT_TSA_URL
set to a local ``openssl ts`` authority on loopback, the log's newest head is timestamped in the
background (an outage delays it and blocks nothing), and an exported bundle carries the stamp
and credentialed copies that check offline."""

from __future__ import annotations

import asyncio
import io
import zipfile
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from evidence import ItemKind
from server.settings import Settings, SettingsError, load_settings
from server.wiring.timestamps import load_tsa_roots
from tests.conftest import LiveService
from tests.evidence.test_export import run_verify
from tests.fakes.faces import face_picture
from tests.fakes.tsa import LocalTsa
from tests.server.test_redaction import file_item, jpeg
from tests.waits import until


@pytest.fixture
async def tsa() -> AsyncIterator[LocalTsa]:
    authority = await LocalTsa().start()
    authority.down = True  # until the test says otherwise
    yield authority
    await authority.aclose()


@pytest.fixture
def service_settings(tmp_path: Path, tsa: LocalTsa) -> Settings:
    roots = tmp_path / "tsa_roots.pem"
    roots.write_bytes(tsa.root_pem)
    return Settings(
        data_dir=tmp_path / "var",
        port=0,
        shutdown_timeout_s=2.0,
        grading=False,
        captions=False,
        outbound_allow=("127.0.0.1",),
        tsa_url=tsa.url,
        tsa_roots=roots,
        tsa_interval_s=1.0,
    )


async def test_heads_are_timestamped_after_an_outage_and_bundles_check_offline(
    live_service: LiveService, tsa: LocalTsa, tmp_path: Path
) -> None:
    archive = live_service.state.archive
    item = await file_item(
        archive, tmp_path / "photo", [("photo.jpg", jpeg(face_picture(5).image))], ItemKind.PHOTO
    )
    # The authority is down: the service keeps asking and nothing else waits.
    await until(lambda: tsa.requests >= 1, 10, "the service asked the authority")
    assert await archive.stamps() == []
    tsa.down = False
    # The loop waits longer after each failure (1 s, 2 s, ...): within 20 s it is back.
    for _ in range(200):
        stamps = await archive.stamps()
        if stamps:
            break
        await asyncio.sleep(0.1)
    assert stamps, "a head was stamped once the authority was back"

    reviewer = aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True))
    try:
        await live_service.login(reviewer, "reviewer", live_service.agent_password)
        async with reviewer.post(
            f"{live_service.base_url}/api/evidence/export",
            json={"item_ids": [item.item_id], "reason": "carrier claim 12"},
        ) as response:
            assert response.status == 200, await response.text()
            data = await response.read()
    finally:
        await reviewer.close()
    bundle = tmp_path / "bundle.zip"
    bundle.write_bytes(data)
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        names = set(zf.namelist())
    assert any(n.startswith("timestamps/") and n.endswith(".json") for n in names), names
    assert f"credentials/{item.item_id}/photo.jpg" in names
    code, out = run_verify(bundle, "--expect-key-id", archive.key_id)
    assert code == 0, out
    assert f"item {item.item_id} existed by" in out


def test_the_authority_needs_its_roots_and_a_bad_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match="INSPECT_TSA_ROOTS"):
        load_settings({"INSPECT_TSA_URL": "http://127.0.0.1:9/tsa"})
    with pytest.raises(SettingsError, match="INSPECT_TSA_URL"):
        load_settings({"INSPECT_TSA_URL": "ftp://tsa.example/", "INSPECT_TSA_ROOTS": "x.pem"})
    bad = tmp_path / "roots.pem"
    bad.write_text("not a certificate")
    settings = load_settings(
        {"INSPECT_TSA_URL": "http://127.0.0.1:9/tsa", "INSPECT_TSA_ROOTS": str(bad)}
    )
    with pytest.raises(ValueError, match="INSPECT_TSA_ROOTS"):
        load_tsa_roots(settings)
    with pytest.raises(ValueError, match="cannot read"):
        load_tsa_roots(settings.with_overrides(tsa_roots=tmp_path / "missing.pem"))
