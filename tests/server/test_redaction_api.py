"""Redacted copies through the whole service: a reviewer asks for a redacted copy of a photo (a
new item linked to the original, the original logged as viewed with the reason), then exports a
bundle of redacted copies; the bundle verifies with the pinned key and holds the copy, not the
original."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import aiohttp

from evidence import ItemKind
from tests.conftest import LiveService
from tests.evidence.test_export import run_verify
from tests.fakes.faces import face_picture
from tests.server.test_redaction import file_item, jpeg


async def _reviewer(live: LiveService) -> aiohttp.ClientSession:
    client = aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True))
    await live.login(client, "reviewer", live.agent_password)
    return client


async def test_a_redacted_copy_is_made_and_shared_in_a_bundle(
    live_service: LiveService, tmp_path: Path
) -> None:
    archive = live_service.state.archive
    original = await file_item(
        archive, tmp_path / "photo", [("photo.jpg", jpeg(face_picture(3).image))], ItemKind.PHOTO
    )
    base = live_service.base_url
    reviewer = await _reviewer(live_service)
    try:
        async with reviewer.post(
            f"{base}/api/evidence/{original.item_id}/redactions",
            json={"reason": "share with the carrier"},
        ) as response:
            assert response.status == 201, await response.text()
            copy = (await response.json())["item"]
        details = copy["record"]["details"]
        assert details["derived_from"]["item_id"] == original.item_id
        assert details["redaction"]["faces"] >= 1
        assert copy["files"][0]["sha256"] != original.files[0].sha256

        async with reviewer.post(
            f"{base}/api/evidence/export",
            json={"item_ids": [original.item_id], "reason": "claim 77", "redact": True},
        ) as response:
            assert response.status == 200, await response.text()
            data = await response.read()
        async with reviewer.post(
            f"{base}/api/evidence/{original.item_id}/redactions",
            json={"reason": "  "},
        ) as response:
            assert response.status == 400
    finally:
        await reviewer.close()
    bundle = tmp_path / "bundle.zip"
    bundle.write_bytes(data)
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        items = {name.split("/")[1] for name in zf.namelist() if name.startswith("items/")}
    assert original.item_id not in items and len(items) == 1
    code, out = run_verify(bundle, "--expect-key-id", archive.key_id)
    assert code == 0, out
    trail = await archive.log_entries(original.item_id)
    assert any(
        e.kind.value == "item.viewed" and "share with the carrier" in e.reason for e in trail
    )
