"""Passwords, the secret key file, session cookies and customer join tokens."""

from __future__ import annotations

import base64
import json
import stat
from pathlib import Path

import pytest
from aiohttp import web
from aiohttp.test_utils import make_mocked_request

from server.accounts import (
    AccountConfig,
    AccountService,
    SecretKeyConfig,
    hash_password,
    load_secret_key,
    verify_password,
)
from server.http.auth import RequestAuth
from server.settings import Settings
from server.storage.sqlite.accounts import SqliteAccountStore
from server.wiring.services import Services
from signaling import Role
from signaling.errors import SignalingError, SignalingErrorCode


class Clock:
    def __init__(self, now: float = 1_800_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def _auth(
    services: Services, settings: Settings, clock: Clock, key: bytes = b"k" * 32
) -> AccountService:
    config = AccountConfig(
        session_ttl_s=settings.session_ttl_s, join_token_ttl_s=settings.join_token_ttl_s
    )
    return AccountService(SqliteAccountStore(services.db), key, config=config, clock=clock)


def test_password_hashes_are_salted_and_verify() -> None:
    first = hash_password("hunter22 hunter22")
    second = hash_password("hunter22 hunter22")
    assert first != second
    assert "hunter22" not in first
    assert verify_password("hunter22 hunter22", first)
    assert verify_password("hunter22 hunter22", second)
    assert not verify_password("hunter22 hunter2", first)
    assert not verify_password("x", "not-a-hash")


def test_secret_key_generated_once_with_private_mode(tmp_path: Path) -> None:
    config = SecretKeyConfig(data_dir=tmp_path / "data")
    key = load_secret_key(config)
    path = tmp_path / "data" / "secret_key"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert len(key) == 32
    assert load_secret_key(config) == key  # reused across restarts
    given = SecretKeyConfig(data_dir=tmp_path / "data", secret_key="s" * 20)
    assert load_secret_key(given) == b"s" * 20


async def test_join_token_bound_to_its_case_and_expiring(
    services: Services, settings: Settings
) -> None:
    clock = Clock()
    auth = _auth(services, settings, clock)
    link = auth.issue_join_token("case-a", ttl_s=600)
    assert link.expires_at == clock.now + 600
    identity = auth.verify_join_token(link.token)
    assert (identity.case_id, identity.role, identity.subject) == (
        "case-a",
        "customer",
        "customer:case-a",
    )
    assert not identity.is_staff
    # URL-safe, compact
    assert all(c.isalnum() or c in "-_." for c in link.token)
    assert len(link.token) < 200

    payload, signature = link.token.split(".")
    body = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    body["c"] = "case-b"
    other = base64.urlsafe_b64encode(json.dumps(body).encode()).rstrip(b"=").decode()

    def rejected(token: str, code: SignalingErrorCode = SignalingErrorCode.UNAUTHORIZED) -> None:
        with pytest.raises(SignalingError) as caught:
            auth.verify_join_token(token)
        assert caught.value.code == code

    rejected(f"{other}.{signature}")  # another case, same signature
    # Change the signature's first character (the last one may only carry padding bits).
    flipped = "B" if signature[0] == "A" else "A"
    rejected(f"{payload}.{flipped}{signature[1:]}")
    rejected(f"{payload}.")
    rejected("no-dot-at-all")
    rejected("a.b.c")
    rejected("é.é")
    rejected("")
    forger = _auth(services, settings, clock, key=b"other key" * 4)
    rejected(forger.issue_join_token("case-a").token)
    # a session cookie is signed with another subkey: never a join token
    rejected(auth.session_value(await auth.create_user("cora", "password123", "C", "agent")))

    clock.now += 601
    rejected(link.token, SignalingErrorCode.TOKEN_EXPIRED)


async def test_session_expires(services: Services, settings: Settings) -> None:
    clock = Clock()
    auth = _auth(services, settings, clock)
    user = await auth.create_user("dora", "password123", "Dora", "reviewer")
    value = auth.session_value(user)
    assert auth.session_user_id(value) == user.id
    clock.now += settings.session_ttl_s + 1
    assert auth.session_user_id(value) is None


async def test_secure_cookie_when_served_over_https(services: Services, tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, public_url="https://inspect.example")
    accounts = AccountService(SqliteAccountStore(services.db), b"k" * 32)
    auth = RequestAuth(accounts, public_url=settings.base_url)
    user = await accounts.create_user("erin", "password123", "Erin", "agent")
    response = web.Response()
    auth.set_session_cookie(response, user)
    header = response.cookies["inspect_session"].OutputString()
    assert "Secure" in header and "HttpOnly" in header and "SameSite=Lax" in header


async def test_requests_identified_by_bearer_token_else_session_cookie(
    services: Services, settings: Settings
) -> None:
    clock = Clock()
    accounts = _auth(services, settings, clock)
    auth = RequestAuth(accounts, public_url=settings.base_url)
    user = await accounts.create_user("fay", "password123", "Fay", "agent")
    token, token_id = await accounts.create_api_token("erp", role=Role.REVIEWER)
    cookie = f"inspect_session={accounts.session_value(user)}"

    def request(**headers: str) -> web.BaseRequest:
        return make_mocked_request("GET", "/api/me", headers=headers)

    by_cookie = auth.identify(request(Cookie=cookie))
    assert by_cookie is not None and (by_cookie.subject, by_cookie.role) == (user.id, "agent")
    by_token = auth.identify(request(Authorization=f"Bearer {token}"))
    assert by_token is not None and (by_token.subject, by_token.role) == (
        f"token:{token_id}",
        "reviewer",
    )
    # Whoever sends an Authorization header is judged by it alone, cookie or not.
    assert auth.identify(request(Authorization="Basic Zm9vOmJhcg==", Cookie=cookie)) is None
    assert (
        await auth.authenticate(request(Authorization="Bearer insp_wrong", Cookie=cookie)) is None
    )
    assert auth.identify(request()) is None

    await accounts.revoke_api_token(token_id)
    assert auth.identify(request(Authorization=f"Bearer {token}")) is None
    assert await auth.authenticate(request(Authorization=f"Bearer {token}")) is None

    clock.now += settings.session_ttl_s + 1
    assert await auth.authenticate(request(Cookie=cookie)) is None


async def test_a_user_or_token_made_on_another_node_is_found_on_a_cache_miss(
    services: Services, settings: Settings
) -> None:
    clock = Clock()
    here = RequestAuth(_auth(services, settings, clock), public_url=settings.base_url)
    elsewhere = _auth(services, settings, clock)  # another process on the same database
    user = await elsewhere.create_user("gus", "password123", "Gus", "admin")
    token, _ = await elsewhere.create_api_token("ci", role=Role.AGENT)
    by_cookie = make_mocked_request(
        "GET", "/", headers={"Cookie": f"inspect_session={elsewhere.session_value(user)}"}
    )
    by_token = make_mocked_request("GET", "/", headers={"Authorization": f"Bearer {token}"})
    assert here.identify(by_cookie) is None and here.identify(by_token) is None
    found = await here.authenticate(by_cookie)
    assert found is not None and found.subject == user.id
    assert here.identify(by_cookie) == found  # cached from now on
    assert await here.authenticate(by_token) is not None
    assert here.identify(by_token) is not None
    assert here.accounts.cached_user(user.id) == user
