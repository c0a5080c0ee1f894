"""The AccountStore contract, run against every backend: what the accounts domain relies on of
its store, whichever is wired."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from server.storage.accounts import AccountStore, ApiTokenRecord, UserRecord
from server.storage.sqlite import Database
from server.storage.sqlite.accounts import SqliteAccountStore


@pytest.fixture(params=["sqlite"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[AccountStore]:
    """A fresh, empty store of each backend."""
    assert request.param == "sqlite"
    db = await Database.open(tmp_path / "inspect.db")
    try:
        yield SqliteAccountStore(db)
    finally:
        await db.aclose()


def _user(user_id: str, username: str, at: float = 100.0, **kwargs: object) -> UserRecord:
    fields: dict[str, object] = {
        "id": user_id,
        "username": username,
        "name": username.title(),
        "role": "agent",
        "password_hash": f"scrypt$hash-of-{user_id}",
        "created_at": at,
    }
    fields.update(kwargs)
    return UserRecord(**fields)  # type: ignore[arg-type]


def _token(token_id: str, digest: str, at: float = 100.0) -> ApiTokenRecord:
    return ApiTokenRecord(
        id=token_id,
        name=f"token {token_id}",
        role="reviewer",
        token_hash=digest,
        created_by="u1",
        created_at=at,
    )


async def test_users_are_kept_with_every_field(store: AccountStore) -> None:
    assert await store.user_count() == 0
    ana = _user("u1", "ana", role="admin")
    bob = _user("u2", "Bob", at=200.0, disabled=True)
    assert await store.add_user(ana)
    assert await store.add_user(bob)
    assert await store.get_user("u1") == ana
    assert await store.get_user("u2") == bob
    assert await store.get_user("nope") is None
    assert await store.user_count() == 2
    assert sorted(await store.list_users(), key=lambda user: user.id) == [ana, bob]


async def test_usernames_are_unique_and_found_regardless_of_case(store: AccountStore) -> None:
    ana = _user("u1", "Ana")
    assert await store.add_user(ana)
    assert not await store.add_user(_user("u2", "ana"))
    assert not await store.add_user(_user("u3", "ANA"))
    assert await store.get_user("u2") is None
    assert await store.user_count() == 1
    assert await store.find_user("ana") == ana
    assert await store.find_user("ANA") == ana
    assert await store.find_user("bob") is None


async def test_api_tokens_found_by_digest_revoked_once(store: AccountStore) -> None:
    first = _token("t1", "d1")
    second = _token("t2", "d2", at=200.0)
    await store.add_api_token(first)
    await store.add_api_token(second)
    assert await store.find_api_token("d1") == first
    assert await store.find_api_token("unknown") is None
    assert sorted(await store.live_api_tokens(), key=lambda token: token.id) == [first, second]

    assert await store.revoke_api_token("t1", at=300.0)
    assert not await store.revoke_api_token("t1", at=400.0)
    assert not await store.revoke_api_token("nope", at=400.0)
    revoked = await store.find_api_token("d1")
    # A revoked token is still found, so that its use can be refused with a reason.
    assert revoked is not None and revoked.revoked_at == 300.0
    assert await store.live_api_tokens() == [second]
