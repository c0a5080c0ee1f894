"""The AccountStore contract, run against every backend: what the accounts domain relies on of
its store, whichever is wired."""

from __future__ import annotations

import asyncio

import pytest

from server.storage.accounts import (
    AccountStore,
    ApiTokenRecord,
    LastAdminError,
    SessionRecord,
    UserRecord,
    UserUpdate,
)
from server.storage.database import DatabaseHandle
from server.storage.postgres import PostgresAccountStore, PostgresDatabase
from server.storage.sqlite import Database
from server.storage.sqlite.accounts import SqliteAccountStore


@pytest.fixture
def store(database: DatabaseHandle) -> AccountStore:
    """A fresh, empty store of each backend."""
    if isinstance(database, PostgresDatabase):
        return PostgresAccountStore(database)
    assert isinstance(database, Database)
    return SqliteAccountStore(database)


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


async def test_api_tokens_listed_and_got_by_id_revoked_ones_included(store: AccountStore) -> None:
    first = _token("t1", "d1")
    second = _token("t2", "d2", at=200.0)
    await store.add_api_token(second)
    await store.add_api_token(first)
    await store.revoke_api_token("t1", at=300.0)
    listed = await store.list_api_tokens()
    assert [token.id for token in listed] == ["t1", "t2"]  # oldest first
    assert listed[0].revoked_at == 300.0
    assert await store.get_api_token("t2") == second
    assert await store.get_api_token("nope") is None


def _session(session_id: str, user_id: str, digest: str, **kwargs: float) -> SessionRecord:
    fields = {"created_at": 100.0, "expires_at": 1000.0, **kwargs}
    return SessionRecord(id=session_id, user_id=user_id, token_hash=digest, **fields)


async def test_sessions_found_by_digest_with_their_user_and_ended(store: AccountStore) -> None:
    ana = _user("u1", "ana")
    await store.add_user(ana)
    await store.add_user(_user("u2", "bob"))
    first = _session("s1", "u1", "h1")
    await store.add_session(first)
    await store.add_session(_session("s2", "u1", "h2"))
    await store.add_session(_session("s3", "u2", "h3"))
    assert await store.find_session("h1") == (first, ana)
    assert await store.find_session("unknown") is None
    assert await store.get_session("s1") == first

    assert await store.end_session("s1", at=200.0)
    assert not await store.end_session("s1", at=300.0)
    assert not await store.end_session("nope", at=300.0)
    ended = await store.find_session("h1")
    # An ended session is still found, so that its use is refused with a reason.
    assert ended is not None and ended[0].revoked_at == 200.0
    assert await store.end_user_sessions("u1", at=400.0) == 1  # s2; s1 had ended
    s3 = await store.get_session("s3")
    assert s3 is not None and s3.revoked_at is None  # another user's session is untouched


async def test_expired_sessions_are_dropped_when_a_new_one_starts(store: AccountStore) -> None:
    await store.add_user(_user("u1", "ana"))
    await store.add_session(_session("old", "u1", "h1", created_at=0.0, expires_at=50.0))
    await store.add_session(_session("new", "u1", "h2", created_at=100.0, expires_at=200.0))
    assert await store.get_session("old") is None
    assert await store.get_session("new") is not None


async def test_a_user_update_is_applied_and_ends_their_sessions(store: AccountStore) -> None:
    await store.add_user(_user("u1", "ana", role="admin"))
    await store.add_user(_user("u2", "bob"))
    await store.add_session(_session("s1", "u2", "h1"))
    await store.add_session(_session("s2", "u1", "h2"))
    changed = await store.update_user(
        "u2", UserUpdate(role="reviewer", password_hash="scrypt$new"), at=300.0
    )
    assert changed is not None and (changed.role, changed.password_hash) == (
        "reviewer",
        "scrypt$new",
    )
    assert await store.get_user("u2") == changed
    s1 = await store.get_session("s1")
    assert s1 is not None and s1.revoked_at == 300.0
    s2 = await store.get_session("s2")
    assert s2 is not None and s2.revoked_at is None
    disabled = await store.update_user("u2", UserUpdate(disabled=True), at=400.0)
    assert disabled is not None and disabled.disabled and disabled.role == "reviewer"
    assert await store.update_user("nope", UserUpdate(disabled=True), at=400.0) is None


async def test_the_last_enabled_admin_cannot_be_disabled_or_demoted(store: AccountStore) -> None:
    await store.add_user(_user("u1", "ana", role="admin"))
    await store.add_session(_session("s1", "u1", "h1"))
    for update in (UserUpdate(disabled=True), UserUpdate(role="agent")):
        with pytest.raises(LastAdminError):
            await store.update_user("u1", update, at=300.0)
    unchanged = await store.get_user("u1")
    assert unchanged is not None and unchanged.role == "admin" and not unchanged.disabled
    session = await store.get_session("s1")
    assert session is not None and session.revoked_at is None  # nothing happened
    await store.add_user(_user("u2", "bob", role="admin"))
    demoted = await store.update_user("u1", UserUpdate(role="agent"), at=300.0)
    assert demoted is not None and demoted.role == "agent"


async def test_two_admins_demoted_at_once_leave_one(store: AccountStore) -> None:
    """Two nodes demoting the last two admins at the same moment: one change wins, the other
    is refused, and an enabled admin is left (on PostgreSQL the two run on two connections)."""
    await store.add_user(_user("u1", "ana", role="admin"))
    await store.add_user(_user("u2", "bob", role="admin"))
    for _ in range(5):
        results = await asyncio.gather(
            store.update_user("u1", UserUpdate(role="agent"), at=300.0),
            store.update_user("u2", UserUpdate(disabled=True), at=300.0),
            return_exceptions=True,
        )
        refused = [r for r in results if isinstance(r, LastAdminError)]
        assert len(refused) == 1, results
        admins = [u for u in await store.list_users() if u.role == "admin" and not u.disabled]
        assert len(admins) == 1
        # Both admins again for the next round.
        await store.update_user("u1", UserUpdate(role="admin", disabled=False), at=301.0)
        await store.update_user("u2", UserUpdate(role="admin", disabled=False), at=301.0)


async def test_a_password_hash_is_replaced_only_if_unchanged(store: AccountStore) -> None:
    await store.add_user(_user("u1", "ana"))
    await store.add_session(_session("s1", "u1", "h1"))
    old = "scrypt$hash-of-u1"
    assert await store.replace_password_hash("u1", old=old, new="scrypt$stronger")
    assert not await store.replace_password_hash("u1", old=old, new="scrypt$other")
    user = await store.get_user("u1")
    assert user is not None and user.password_hash == "scrypt$stronger"
    session = await store.get_session("s1")
    assert session is not None and session.revoked_at is None  # a rehash keeps sessions
