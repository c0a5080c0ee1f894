"""Passwords, the secret key file, server-side sessions, API tokens and customer join tokens."""

from __future__ import annotations

import base64
import json
import stat
from pathlib import Path

import pytest
from aiohttp import web
from aiohttp.test_utils import make_mocked_request

from server.accounts import (
    SCRYPT_N,
    AccountConfig,
    AccountService,
    Revocation,
    RevocationReason,
    SecretKeyConfig,
    hash_password,
    load_secret_key,
    password_problem,
    verify_password,
)
from server.accounts.model import credential_of
from server.accounts.passwords import hash_cost
from server.errors import DomainError
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


#: Hashes at the lowest cost where the cost is not what a test is about.
CHEAP = 2**14


def _auth(
    services: Services,
    settings: Settings,
    clock: Clock,
    key: bytes = b"k" * 32,
    scrypt_n: int = CHEAP,
) -> AccountService:
    config = AccountConfig(
        session_ttl_s=settings.session_ttl_s,
        join_token_ttl_s=settings.join_token_ttl_s,
        scrypt_n=scrypt_n,
    )
    return AccountService(SqliteAccountStore(services.db), key, config=config, clock=clock)


def _request(**headers: str) -> web.BaseRequest:
    return make_mocked_request("GET", "/api/me", headers=headers)


@pytest.mark.parametrize(
    ("password", "why"),
    [
        ("short-1", "at least 12 characters"),
        ("aaaaaaaaaaaaaaab", "different characters"),
        ("Password123!!", "guessed first"),  # a listed word with digits and symbols around it
        ("Welcome2026!!", "guessed first"),
        ("admin-admin-admin", "guessed first"),  # one listed word, repeated
        ("qwertyqwerty", "guessed first"),  # a short unit, repeated
        ("123456789012", "guessed first"),  # a walk along the digits
        ("poiuytrewqpo", "guessed first"),  # a keyboard row, backwards
    ],
)
def test_new_passwords_that_are_guessed_first_are_refused(password: str, why: str) -> None:
    """L6: length and a blocklist (NIST SP 800-63B 5.1.1.2), no composition rules."""
    problem = password_problem(password)
    assert problem is not None and why in problem


@pytest.mark.parametrize(
    "password", ["agent-pass-123", "correct horse battery", "Tr0ub4dor&3xy", "staff-pass-2026"]
)
def test_other_passwords_of_twelve_characters_are_taken(password: str) -> None:
    assert password_problem(password) is None


async def test_the_service_refuses_a_weak_password_naming_the_field(
    services: Services, settings: Settings
) -> None:
    accounts = _auth(services, settings, Clock())
    with pytest.raises(DomainError, match="password: one of the passwords"):
        await accounts.create_user("weak", "Password123!!", "Weak", Role.AGENT)
    user = await accounts.create_user("ok", "staff-pass-2026", "Ok", Role.AGENT)
    with pytest.raises(DomainError, match="new_password: at least 12"):
        await accounts.change_password(user.id, "staff-pass-2026", "short")


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
    strong = "5f0c2e9a7b1d4c3e8a6f0b2d9c7e1a3f4b8d6e0c2a9f7b5d3e1c0a8f6b4d2e9c"
    given = SecretKeyConfig(data_dir=tmp_path / "data", secret_key=strong)
    assert load_secret_key(given) == strong.encode()


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
    cora = await auth.create_user("cora", "staff-pass-2026", "C", "agent")
    rejected((await auth.start_session(cora)).value)

    clock.now += 601
    rejected(link.token, SignalingErrorCode.TOKEN_EXPIRED)


async def test_new_hashes_cost_2_17_and_old_ones_are_replaced_at_sign_in(
    services: Services, settings: Settings
) -> None:
    assert SCRYPT_N == 2**17
    assert hash_cost(hash_password("correct horse", n=SCRYPT_N)) == 2**17
    assert AccountConfig().scrypt_n == 2**17
    accounts = _auth(services, settings, Clock(), scrypt_n=2**15)
    store = SqliteAccountStore(services.db)
    user = await accounts.create_user("hal", "staff-pass-2026", "Hal", "agent")
    # A hash from an earlier version (2^14): it still verifies ...
    old = hash_password("staff-pass-2026", n=2**14)
    await services.db.execute("UPDATE users SET password_hash = ? WHERE id = ?", (old, user.id))
    await accounts.login("hal", "staff-pass-2026")
    # ... and is replaced by one at today's cost.
    record = await store.get_user(user.id)
    assert record is not None and hash_cost(record.password_hash) == 2**15
    assert verify_password("staff-pass-2026", record.password_hash)
    # A hash that claims an absurd cost is refused unread.
    assert not verify_password("x", "scrypt$1073741824$8$1$c2FsdA$aGFzaA")


async def test_a_session_is_kept_server_side_and_expires(
    services: Services, settings: Settings
) -> None:
    clock = Clock()
    accounts = _auth(services, settings, clock)
    auth = RequestAuth(accounts, public_url=settings.base_url)
    user = await accounts.create_user("dora", "staff-pass-2026", "Dora", "reviewer")
    session = await accounts.start_session(user)
    row = await services.db.fetchone("SELECT * FROM sessions WHERE id = ?", (session.id,))
    assert row is not None and session.value.split(".")[0] not in dict(row).values()
    caller = await auth.caller(_request(Cookie=f"inspect_session={session.value}"))
    assert caller is not None and caller.credential_id == session.id
    assert caller.identity.subject == user.id and caller.username == "dora"
    clock.now += settings.session_ttl_s + 1
    assert await auth.authenticate(_request(Cookie=f"inspect_session={session.value}")) is None


async def test_secure_cookie_when_served_over_https(services: Services, tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, public_url="https://inspect.example")
    accounts = AccountService(
        SqliteAccountStore(services.db), b"k" * 32, config=AccountConfig(scrypt_n=CHEAP)
    )
    auth = RequestAuth(accounts, public_url=settings.base_url)
    user = await accounts.create_user("erin", "staff-pass-2026", "Erin", "agent")
    response = web.Response()
    auth.set_session_cookie(response, await accounts.start_session(user))
    header = response.cookies["inspect_session"].OutputString()
    assert "Secure" in header and "HttpOnly" in header and "SameSite=Lax" in header


async def test_requests_identified_by_bearer_token_else_session_cookie(
    services: Services, settings: Settings
) -> None:
    clock = Clock()
    accounts = _auth(services, settings, clock)
    auth = RequestAuth(accounts, public_url=settings.base_url)
    user = await accounts.create_user("fay", "staff-pass-2026", "Fay", "agent")
    token, token_id = await accounts.create_api_token("erp", role=Role.REVIEWER)
    cookie = f"inspect_session={(await accounts.start_session(user)).value}"

    by_cookie = await auth.authenticate(_request(Cookie=cookie))
    assert by_cookie is not None and (by_cookie.subject, by_cookie.role) == (user.id, "agent")
    by_token = await auth.authenticate(_request(Authorization=f"Bearer {token}"))
    assert by_token is not None and (by_token.subject, by_token.role) == (
        f"token:{token_id}",
        "reviewer",
    )
    # Whoever sends an Authorization header is judged by it alone, cookie or not.
    basic = _request(Authorization="Basic Zm9vOmJhcg==", Cookie=cookie)
    assert await auth.authenticate(basic) is None
    assert await auth.authenticate(_request(Authorization="Bearer insp_x", Cookie=cookie)) is None
    assert await auth.authenticate(_request()) is None

    # identify() is what the edge found for this very request, never an older answer.
    request = _request(Authorization=f"Bearer {token}")
    assert auth.identify(request) is None  # not looked up yet
    assert await auth.authenticate(request) == auth.identify(request) == by_token

    await accounts.revoke_api_token(token_id)
    assert await auth.authenticate(_request(Authorization=f"Bearer {token}")) is None
    # The Hub re-checks an open socket by authenticating its upgrade request again: that
    # request's earlier answer must not stand.
    assert await auth.authenticate(request) is None
    assert auth.identify(request) is None


async def test_a_revocation_on_another_node_holds_at_the_next_request(
    services: Services, settings: Settings
) -> None:
    clock = Clock()
    here = RequestAuth(_auth(services, settings, clock), public_url=settings.base_url)
    elsewhere = _auth(services, settings, clock)  # another process on the same database
    user = await elsewhere.create_user("gus", "staff-pass-2026", "Gus", "admin")
    await elsewhere.create_user("ida", "staff-pass-2026", "Ida", "admin")
    token, token_id = await elsewhere.create_api_token("ci", role=Role.AGENT)
    session = await elsewhere.start_session(user)

    def by_cookie() -> web.BaseRequest:
        return _request(Cookie=f"inspect_session={session.value}")

    def by_token() -> web.BaseRequest:
        return _request(Authorization=f"Bearer {token}")

    found = await here.authenticate(by_cookie())
    assert found is not None and found.subject == user.id
    assert await here.authenticate(by_token()) is not None
    assert here.accounts.cached_user(user.id) == user  # its name, for timelines and pages

    await elsewhere.revoke_api_token(token_id)
    assert await here.authenticate(by_token()) is None
    await elsewhere.update_user(user.id, disabled=True)
    assert await here.authenticate(by_cookie()) is None
    await elsewhere.update_user(user.id, disabled=False)
    # Enabling the account again does not bring the sessions it had back.
    assert await here.authenticate(by_cookie()) is None


async def test_still_valid_rechecks_an_open_sockets_identity(
    services: Services, settings: Settings
) -> None:
    clock = Clock()
    accounts = _auth(services, settings, clock)
    auth = RequestAuth(accounts, public_url=settings.base_url)
    user = await accounts.create_user("jo", "staff-pass-2026", "Jo", "agent")
    await accounts.create_user("kim", "staff-pass-2026", "Kim", "admin")
    token, token_id = await accounts.create_api_token("ci", role=Role.AGENT)
    first = await accounts.start_session(user)
    second = await accounts.start_session(user)
    by_first = await auth.authenticate(_request(Cookie=f"inspect_session={first.value}"))
    by_second = await auth.authenticate(_request(Cookie=f"inspect_session={second.value}"))
    by_token = await auth.authenticate(_request(Authorization=f"Bearer {token}"))
    assert by_first is not None and by_second is not None and by_token is not None
    assert await auth.still_valid(by_first) and await auth.still_valid(by_token)
    customer = accounts.verify_join_token(accounts.issue_join_token("case-1").token)
    assert await auth.still_valid(customer)  # not a stored credential: judged elsewhere

    await accounts.end_session(first.id, user.id)
    if credential_of(by_first) is not None:  # the identity names its session
        assert not await auth.still_valid(by_first)
        assert await auth.still_valid(by_second)
    await accounts.update_user(user.id, role=Role.REVIEWER)
    assert not await auth.still_valid(by_second)
    await accounts.revoke_api_token(token_id)
    assert not await auth.still_valid(by_token)


async def test_every_ended_credential_is_announced(services: Services, settings: Settings) -> None:
    accounts = _auth(services, settings, Clock())
    heard: list[Revocation] = []

    async def listener(revocation: Revocation) -> None:
        heard.append(revocation)

    async def broken(revocation: Revocation) -> None:
        raise RuntimeError("a listener that fails does not undo the revocation")

    accounts.add_revocation_listener(broken)
    accounts.add_revocation_listener(listener)
    admin = await accounts.create_user("lea", "staff-pass-2026", "Lea", "admin")
    user = await accounts.create_user("max", "staff-pass-2026", "Max", "agent")
    _, token_id = await accounts.create_api_token("ci")
    session = await accounts.start_session(user)
    await accounts.end_session(session.id, user.id)
    assert not await accounts.end_session(session.id, user.id)  # once
    await accounts.end_all_sessions(user.id)
    await accounts.update_user(user.id, role=Role.REVIEWER)
    await accounts.update_user(user.id, role=Role.REVIEWER)  # no change, nothing ends
    await accounts.update_user(user.id, password="another password")
    await accounts.update_user(user.id, disabled=True)
    await accounts.update_user(user.id, disabled=False)  # nothing to end
    await accounts.revoke_api_token(token_id)
    assert [(r.subject, r.reason, r.session_id) for r in heard] == [
        (user.id, RevocationReason.SIGNED_OUT, session.id),
        (user.id, RevocationReason.SIGNED_OUT_EVERYWHERE, None),
        (user.id, RevocationReason.ROLE_CHANGED, None),
        (user.id, RevocationReason.PASSWORD_CHANGED, None),
        (user.id, RevocationReason.DISABLED, None),
        (f"token:{token_id}", RevocationReason.TOKEN_REVOKED, None),
    ]
    with pytest.raises(DomainError) as caught:
        await accounts.update_user(admin.id, disabled=True)
    assert caught.value.code == "conflict"  # the last admin stays
