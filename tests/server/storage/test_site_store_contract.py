"""The SiteStore contract, run against every backend: what the sites domain relies on of its
store, whichever is wired."""

from __future__ import annotations

import pytest

from server.storage.database import DatabaseHandle
from server.storage.postgres import PostgresDatabase, PostgresSiteStore
from server.storage.sites import (
    CameraRecord,
    CameraTokenRecord,
    CameraUpdate,
    RtspFields,
    SiteEvidenceRecord,
    SiteRecord,
    SiteStore,
    StationRecord,
)
from server.storage.sqlite import Database
from server.storage.sqlite.sites import SqliteSiteStore


@pytest.fixture
def store(database: DatabaseHandle) -> SiteStore:
    """A fresh, empty store of each backend."""
    if isinstance(database, PostgresDatabase):
        return PostgresSiteStore(database)
    assert isinstance(database, Database)
    return SqliteSiteStore(database)


def _site(site_id: str, name: str, at: float = 100.0) -> SiteRecord:
    return SiteRecord(
        id=site_id,
        name=name,
        address="Calle 1",
        note=None,
        created_by="u1",
        created_at=at,
        updated_at=at,
    )


def _camera(
    camera_id: str,
    site_id: str,
    *,
    at: float = 100.0,
    kind: str = "phone",
    station: StationRecord | None = None,
) -> CameraRecord:
    return CameraRecord(
        id=camera_id,
        site_id=site_id,
        name=f"camera {camera_id}",
        kind=kind,
        rtsp_url="rtsp://10.0.0.5/stream" if kind == "rtsp" else None,
        rtsp_username="viewer" if kind == "rtsp" else None,
        rtsp_password="sealed-secret" if kind == "rtsp" else None,
        station=station,
        enabled=True,
        created_by="u1",
        created_at=at,
        updated_at=at,
    )


def _token(token_id: str, camera_id: str, digest: str, at: float = 100.0) -> CameraTokenRecord:
    return CameraTokenRecord(
        id=token_id,
        camera_id=camera_id,
        token_hash=digest,
        created_by="u1",
        created_at=at,
        expires_at=at + 60,
    )


async def test_sites_are_kept_and_listed_by_name(store: SiteStore) -> None:
    await store.add_site(_site("s2", "lisbon"))
    await store.add_site(_site("s1", "Madrid"))
    await store.add_site(_site("s3", "Berlin"))
    assert await store.get_site("s1") == _site("s1", "Madrid")
    assert await store.get_site("nope") is None
    assert [site.name for site in await store.list_sites()] == ["Berlin", "lisbon", "Madrid"]


async def test_site_update_writes_only_what_is_given(store: SiteStore) -> None:
    await store.add_site(_site("s1", "Madrid"))
    changed = await store.update_site("s1", {"note": "dock 4", "address": None}, updated_at=200.0)
    assert changed is not None
    assert (changed.name, changed.address, changed.note) == ("Madrid", None, "dock 4")
    assert (changed.created_at, changed.updated_at) == (100.0, 200.0)
    assert await store.get_site("s1") == changed
    # Nothing to change: the site comes back as it is, its updated_at untouched.
    assert await store.update_site("s1", {}, updated_at=300.0) == changed
    assert await store.update_site("nope", {"name": "X"}, updated_at=300.0) is None


async def test_deleting_a_site_deletes_its_cameras_and_their_tokens(store: SiteStore) -> None:
    await store.add_site(_site("s1", "Madrid"))
    await store.add_site(_site("s2", "Lisbon"))
    assert await store.add_camera(_camera("c2", "s1", at=120.0))
    assert await store.add_camera(_camera("c1", "s1", at=110.0))
    assert await store.add_camera(_camera("c3", "s2"))
    await store.add_camera_token(_token("t1", "c1", "d1"))
    assert await store.delete_site("s1") == ["c1", "c2"]
    assert await store.get_site("s1") is None
    assert await store.get_camera("c1") is None and await store.get_camera("c2") is None
    assert await store.find_camera_token("d1") is None
    assert await store.list_cameras("s1") == []
    assert [camera.id for camera in await store.list_cameras("s2")] == ["c3"]
    assert await store.delete_site("s1") is None


async def test_a_camera_needs_its_site(store: SiteStore) -> None:
    assert not await store.add_camera(_camera("c1", "nope"))
    assert await store.get_camera("c1") is None


async def test_cameras_keep_every_field(store: SiteStore) -> None:
    await store.add_site(_site("s1", "Madrid"))
    rtsp = _camera("c1", "s1", kind="rtsp", station=StationRecord("packing", 12.5))
    phone = _camera("c2", "s1", at=90.0)
    assert await store.add_camera(rtsp)
    assert await store.add_camera(phone)
    assert await store.get_camera("c1") == rtsp
    assert await store.list_cameras("s1") == [phone, rtsp]  # oldest first


async def test_camera_update_writes_only_what_is_given(store: SiteStore) -> None:
    await store.add_site(_site("s1", "Madrid"))
    await store.add_camera(_camera("c1", "s1", kind="rtsp", station=StationRecord("packing")))
    renamed = await store.update_camera("c1", CameraUpdate(name="Dock"), updated_at=200.0)
    assert renamed is not None
    assert (renamed.name, renamed.enabled, renamed.updated_at) == ("Dock", True, 200.0)
    assert (renamed.rtsp_username, renamed.station) == ("viewer", StationRecord("packing"))

    changed = await store.update_camera(
        "c1",
        CameraUpdate(
            enabled=False,
            rtsp=RtspFields("rtsp://10.0.0.6/x", None, None),
            station=StationRecord("returns_qc", 20.0),
            set_station=True,
        ),
        updated_at=300.0,
    )
    assert changed is not None
    assert (changed.name, changed.enabled) == ("Dock", False)
    assert (changed.rtsp_url, changed.rtsp_username, changed.rtsp_password) == (
        "rtsp://10.0.0.6/x",
        None,
        None,
    )
    assert changed.station == StationRecord("returns_qc", 20.0)

    cleared = await store.update_camera(
        "c1", CameraUpdate(station=None, set_station=True), updated_at=400.0
    )
    assert cleared is not None and cleared.station is None
    # An empty update changes nothing, not even updated_at.
    assert await store.update_camera("c1", CameraUpdate(), updated_at=500.0) == cleared
    assert await store.update_camera("nope", CameraUpdate(name="X"), updated_at=1.0) is None


async def test_camera_seen_and_deleted(store: SiteStore) -> None:
    await store.add_site(_site("s1", "Madrid"))
    await store.add_camera(_camera("c1", "s1"))
    await store.add_camera_token(_token("t1", "c1", "d1"))
    await store.camera_seen("c1", 150.0)
    seen = await store.get_camera("c1")
    assert seen is not None and seen.last_seen_at == 150.0
    await store.camera_seen("nope", 150.0)  # no such camera: nothing happens
    assert await store.delete_camera("c1")
    assert await store.get_camera("c1") is None
    assert await store.find_camera_token("d1") is None
    assert not await store.delete_camera("c1")


async def test_camera_tokens_found_by_digest_listed_newest_first(store: SiteStore) -> None:
    await store.add_site(_site("s1", "Madrid"))
    await store.add_camera(_camera("c1", "s1"))
    await store.add_camera(_camera("c2", "s1"))
    first = _token("t1", "c1", "d1", at=100.0)
    second = _token("t2", "c1", "d2", at=200.0)
    await store.add_camera_token(first)
    await store.add_camera_token(second)
    await store.add_camera_token(_token("t3", "c2", "d3"))
    assert await store.find_camera_token("d1") == first
    assert await store.find_camera_token("unknown") is None
    assert await store.list_camera_tokens("c1") == [second, first]
    await store.camera_token_used("t1", 150.0)
    used = await store.find_camera_token("d1")
    assert used is not None and used.last_used_at == 150.0


async def test_a_token_is_revoked_once(store: SiteStore) -> None:
    await store.add_site(_site("s1", "Madrid"))
    await store.add_camera(_camera("c1", "s1"))
    await store.add_camera(_camera("c2", "s1"))
    await store.add_camera_token(_token("t1", "c1", "d1"))
    revoked = await store.revoke_camera_token("c1", "t1", at=150.0)
    assert revoked is not None
    record, changed = revoked
    assert changed and record.revoked_at == 150.0
    again = await store.revoke_camera_token("c1", "t1", at=160.0)
    assert again is not None
    record, changed = again
    assert not changed and record.revoked_at == 150.0  # the first revocation stands
    # Another camera's id does not reach the token.
    assert await store.revoke_camera_token("c2", "t1", at=170.0) is None
    assert await store.revoke_camera_token("c1", "nope", at=170.0) is None
    found = await store.find_camera_token("d1")
    assert found is not None and found.revoked_at == 150.0


async def test_site_evidence_newest_first_first_link_wins(store: SiteStore) -> None:
    def link(item_id: str, at: float, site_id: str = "s1") -> SiteEvidenceRecord:
        return SiteEvidenceRecord(item_id, site_id, "c1", None, "station:c1", at)

    await store.link_evidence(link("i1", 100.0))
    await store.link_evidence(link("i2", 300.0))
    await store.link_evidence(link("i3", 200.0))
    await store.link_evidence(link("i4", 400.0, site_id="s2"))
    await store.link_evidence(SiteEvidenceRecord("i1", "s1", "c9", "case-1", "u2", 900.0))
    links = await store.site_evidence("s1", limit=10)
    assert [item.item_id for item in links] == ["i2", "i3", "i1"]
    assert links[-1] == link("i1", 100.0)
    assert [item.item_id for item in await store.site_evidence("s1", limit=2)] == ["i2", "i3"]
    assert await store.site_evidence("nope", limit=10) == []
