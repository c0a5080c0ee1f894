"""Location with photos, where the merchant enabled it: kept (and stamped) only with the
customer's consent; without it, a gallery photo's EXIF GPS is stripped before it is filed."""

from __future__ import annotations

import io
from pathlib import Path

import aiohttp
import pytest
from PIL import Image

from server.capture.stills import read_still
from server.settings import Settings
from tests.server.test_inspection_flow import Call, _create_upload, _piece, call, staff
from tests.server.test_stills import BERLIN, exif_with, jpeg

__all__ = ["call", "staff"]  # the fixtures, used by name


@pytest.fixture
def service_settings(tmp_path: Path) -> Settings:
    return Settings(
        data_dir=tmp_path / "var",
        port=0,
        shutdown_timeout_s=2.0,
        grading=True,
        label_reading_s=0,
        photo_location=True,
    )


async def _send(call: Call, data: bytes, **meta: object) -> dict[str, object]:
    async with aiohttp.ClientSession() as phone:
        status, created = await _create_upload(phone, call, data, source="gallery", **meta)
        assert status == 201, created
        status, body = await _piece(phone, call, created["upload"]["id"], 0, data)
        assert status == 200, body
    photo: dict[str, object] = body["photo"]
    return photo


async def test_location_is_kept_and_stamped_only_with_consent(call: Call) -> None:
    data = jpeg(exif_with(BERLIN))
    where = {"latitude": 48.1371, "longitude": 11.5754, "accuracy_m": 20.0}
    consented = await _send(call, data, location_consent=True, location=where)
    item = await call.live.state.archive.peek(str(consented["item_id"]))
    details = item.record.details or {}
    assert details["location"]["latitude"] == 48.1371 and details["location"]["from"] == "browser"
    assert any(line.startswith("Location 48.13710, 11.57540") for line in details["stamp"]["lines"])

    refused = await _send(call, data, location_consent=False, location=where)
    item = await call.live.state.archive.peek(str(refused["item_id"]))
    details = item.record.details or {}
    assert details["location"] is None and details["location_stripped"] is True
    # Picked from the gallery and sent unasked: the record says both.
    assert details["source"] == "gallery" and details["requested"] is None
    assert "from the gallery, sent unasked" in item.record.note
    assert not any(line.startswith("Location") for line in details["stamp"]["lines"])
    stored = await call.live.state.archive.stored_path(item.item_id, "photo.jpg")
    assert read_still(stored.read_bytes(), keep_location=True).location is None, "GPS stripped"
    assert Image.open(io.BytesIO(stored.read_bytes())).size == (320, 240)
