"""Webhook delivery against a real local aiohttp receiver: signatures, retries with backoff,
order per case, resuming from the outbox after a restart, and the outbound guard (internal
targets refused when added and before any request; a name is resolved once and connected to
at the address that was checked). The receiver listens on 127.0.0.1, which the stacks allow;
nothing here connects anywhere else or asks DNS."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import time
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from server.cases import CaseKind, CaseService, NewCase, WebhookConfig, WebhookDispatcher
from server.errors import InvalidRequest
from server.metrics import Metrics
from server.outbound import OutboundGuard
from server.settings import Settings
from server.storage.sqlite.cases import SqliteCaseStore
from server.storage.sqlite.database import Database
from server.storage.sqlite.webhooks import SqliteWebhookStore
from signaling.messages import Role
from signaling.ports import Identity

SECRET = "settings-secret-0123456789"
LOOPBACK = OutboundGuard(("127.0.0.1",))
AGENT = Identity(subject="u_agent", name="Alan", role=Role.AGENT)


@dataclass
class Hit:
    path: str
    headers: dict[str, str]
    body: bytes
    status: int

    @property
    def data(self) -> dict[str, Any]:
        parsed: dict[str, Any] = json.loads(self.body)
        return parsed

    @property
    def case_id(self) -> str:
        return str(self.data["case"]["id"])


@dataclass
class Receiver:
    url: str = ""
    hits: list[Hit] = field(default_factory=list)
    fail_cases: set[str] = field(default_factory=set)
    fail_events: set[str] = field(default_factory=set)
    fail_times: int = 0  # the next N requests get a 500
    changed: asyncio.Event = field(default_factory=asyncio.Event)

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        data = json.loads(body)
        status = 200
        if self.fail_times > 0:
            self.fail_times -= 1
            status = 500
        if data["case"]["id"] in self.fail_cases or data["event"] in self.fail_events:
            status = 503
        self.hits.append(Hit(request.path, dict(request.headers), body, status))
        self.changed.set()
        return web.Response(status=status)

    def delivered(self, case_id: str | None = None) -> list[Hit]:
        return [
            h for h in self.hits if h.status == 200 and (case_id is None or h.case_id == case_id)
        ]

    async def wait(self, predicate: Callable[[], bool]) -> None:
        async with asyncio.timeout(5):
            while not predicate():
                self.changed.clear()
                await self.changed.wait()


class FakeTime:
    """A clock that only moves when the dispatcher sleeps."""

    def __init__(self) -> None:
        self.now = time.time() + 1.0
        self.sleeps: list[float] = []

    def clock(self) -> float:
        return self.now

    async def sleep(self, delay: float) -> None:
        self.sleeps.append(delay)
        self.now += delay
        await asyncio.sleep(0)


@pytest.fixture
async def receiver(aiohttp_server: Any) -> Receiver:
    rec = Receiver()
    app = web.Application()
    app.router.add_post("/hook", rec.handle)
    app.router.add_post("/other", rec.handle)
    server = await aiohttp_server(app)
    rec.url = str(server.make_url("/hook"))
    return rec


@dataclass
class Stack:
    db: Database
    cases: CaseService
    dispatcher: WebhookDispatcher
    metrics: Metrics
    fake: FakeTime


@pytest.fixture
def make_stack(tmp_path: Path) -> Callable[..., Any]:
    async def make(
        settings: Settings,
        *,
        start: bool = True,
        fake: FakeTime | None = None,
        guard: OutboundGuard = LOOPBACK,
    ) -> Stack:
        db = await Database.open(tmp_path / "hooks.db")
        fake = fake or FakeTime()
        metrics = Metrics()
        config = WebhookConfig(
            secret=settings.webhook_secret,
            max_attempts=settings.webhook_max_attempts,
            base_delay_s=1.0,
            poll_s=None,  # one process: the fake clock moves only for retries
        )
        dispatcher = WebhookDispatcher(
            SqliteWebhookStore(db),
            config,
            metrics=metrics,
            guard=guard,
            clock=fake.clock,
            sleep=fake.sleep,
            rng=lambda: 1.0,
        )
        store = SqliteCaseStore(db, webhook_urls=settings.webhook_urls)
        stack = Stack(db, CaseService(store, sink=dispatcher), dispatcher, metrics, fake)
        if start:
            await dispatcher.start()
        return stack

    return make


@pytest.fixture
async def stacks(make_stack: Callable[..., Any]) -> AsyncIterator[Callable[..., Any]]:
    opened: list[Stack] = []

    async def make(*args: Any, **kwargs: Any) -> Stack:
        stack: Stack = await make_stack(*args, **kwargs)
        opened.append(stack)
        return stack

    yield make
    for stack in opened:
        await stack.dispatcher.aclose()
        await stack.db.aclose()


async def _pending_zero(stack: Stack) -> None:
    async with asyncio.timeout(5):
        await stack.dispatcher.flushed()


def _settings(tmp_path: Path, receiver: Receiver, **extra: Any) -> Settings:
    return Settings(data_dir=tmp_path, webhook_urls=(receiver.url,), webhook_secret=SECRET, **extra)


async def test_signed_delivery_to_settings_and_admin_targets(
    tmp_path: Path, receiver: Receiver, stacks: Callable[..., Any]
) -> None:
    stack: Stack = await stacks(_settings(tmp_path, receiver))
    other_url = receiver.url.replace("/hook", "/other")
    hook, hook_secret = await stack.dispatcher.add_webhook(other_url, "admin-secret-abcdefgh")
    case = await stack.cases.create(NewCase(CaseKind.RETURN, "Mia", order_id="O-7"), actor="u")
    await receiver.wait(lambda: len(receiver.delivered()) == 2)

    for hit in receiver.hits:
        secret = SECRET if hit.path == "/hook" else hook_secret
        timestamp = hit.headers["X-Inspect-Timestamp"]
        expected = hmac.new(
            secret.encode(), timestamp.encode() + b"." + hit.body, hashlib.sha256
        ).hexdigest()
        assert hit.headers["X-Inspect-Signature"] == f"sha256={expected}"
        assert abs(int(timestamp) - stack.fake.now) <= 1
        assert hit.headers["X-Inspect-Event"] == "case.created"
        assert hit.headers["Content-Type"] == "application/json"
        assert set(hit.data) == {"id", "event", "at", "case"}
        assert hit.data["case"]["id"] == case.id
        assert hit.data["case"]["order_id"] == "O-7"
    deliveries = {hit.headers["X-Inspect-Delivery"] for hit in receiver.hits}
    assert len(deliveries) == 2  # one per target
    assert len({hit.data["id"] for hit in receiver.hits}) == 1  # the same event
    # a wrong secret would not verify
    hit = receiver.hits[0]
    forged = hmac.new(b"nope", hit.body, hashlib.sha256).hexdigest()
    assert hit.headers["X-Inspect-Signature"] != f"sha256={forged}"
    assert hook.url == other_url


async def test_retries_after_500_with_backoff(
    tmp_path: Path, receiver: Receiver, stacks: Callable[..., Any]
) -> None:
    stack: Stack = await stacks(_settings(tmp_path, receiver))
    receiver.fail_times = 2
    case = await stack.cases.create(NewCase(CaseKind.SUPPORT, "Sam"), actor="u")
    await receiver.wait(lambda: len(receiver.delivered()) == 1)
    await _pending_zero(stack)
    assert [h.status for h in receiver.hits] == [500, 500, 200]
    assert len({h.headers["X-Inspect-Delivery"] for h in receiver.hits}) == 1  # same delivery
    assert stack.fake.sleeps[:2] == [1.0, 2.0]  # exponential (jitter pinned to its top)
    row = await stack.db.fetchone(
        "SELECT status, attempts, last_error FROM webhook_outbox WHERE case_id = ?", (case.id,)
    )
    assert row is not None and (row["status"], row["attempts"]) == ("delivered", 3)
    text = (await stack.metrics.render()).decode()
    assert 'inspect_webhook_deliveries_total{outcome="retry"} 2.0' in text
    assert 'inspect_webhook_deliveries_total{outcome="delivered"} 1.0' in text


async def test_in_order_per_case_and_a_failing_case_blocks_only_itself(
    tmp_path: Path, receiver: Receiver, stacks: Callable[..., Any]
) -> None:
    stack: Stack = await stacks(_settings(tmp_path, receiver, webhook_max_attempts=1000))
    cases = stack.cases
    first = await cases.create(NewCase(CaseKind.RETURN, "Blocked"), actor="u")
    receiver.fail_cases.add(first.id)
    await cases.customer_arrived(first.id)
    await cases.call_started(first.id, AGENT)
    second = await cases.create(NewCase(CaseKind.RETURN, "Flowing"), actor="u")
    await cases.customer_arrived(second.id)

    await receiver.wait(lambda: len(receiver.delivered(second.id)) == 2)
    await receiver.wait(lambda: sum(h.case_id == first.id for h in receiver.hits) >= 3)
    blocked = [h for h in receiver.hits if h.case_id == first.id]
    assert {h.data["event"] for h in blocked} == {"case.created"}  # head of line only
    assert not receiver.delivered(first.id)

    receiver.fail_cases.clear()
    stack.dispatcher.notify()
    await receiver.wait(lambda: len(receiver.delivered(first.id)) == 3)
    assert [h.data["event"] for h in receiver.delivered(first.id)] == [
        "case.created",
        "case.state_changed",
        "case.state_changed",
    ]
    assert [h.data["case"]["state"] for h in receiver.delivered(first.id)] == [
        "created",
        "waiting",
        "in_call",
    ]
    assert [h.data["event"] for h in receiver.delivered(second.id)] == [
        "case.created",
        "case.state_changed",
    ]


async def test_gives_up_after_max_attempts_then_moves_on(
    tmp_path: Path, receiver: Receiver, stacks: Callable[..., Any]
) -> None:
    stack: Stack = await stacks(_settings(tmp_path, receiver, webhook_max_attempts=2))
    receiver.fail_events.add("case.created")
    case = await stack.cases.create(NewCase(CaseKind.RETURN, "Mia"), actor="u")
    await stack.cases.customer_arrived(case.id)
    await receiver.wait(lambda: len(receiver.delivered()) == 1)
    assert [(h.data["event"], h.status) for h in receiver.hits] == [
        ("case.created", 503),
        ("case.created", 503),
        ("case.state_changed", 200),
    ]
    row = await stack.db.fetchone(
        "SELECT status, last_error FROM webhook_outbox WHERE event = 'case.created'"
    )
    assert row is not None and row["status"] == "failed" and "503" in row["last_error"]


async def test_restart_resumes_pending_deliveries(
    tmp_path: Path, receiver: Receiver, stacks: Callable[..., Any]
) -> None:
    settings = _settings(tmp_path, receiver)
    before: Stack = await stacks(settings, start=False)
    case = await before.cases.create(NewCase(CaseKind.RETURN, "Mia"), actor="u")
    await before.cases.customer_arrived(case.id)
    assert await before.dispatcher.pending() == 2
    await before.dispatcher.aclose()
    await before.db.aclose()
    assert receiver.hits == []

    after: Stack = await stacks(settings)
    await receiver.wait(lambda: len(receiver.delivered()) == 2)
    assert [h.data["event"] for h in receiver.delivered()] == [
        "case.created",
        "case.state_changed",
    ]
    await _pending_zero(after)


async def test_unreachable_target_is_retried(
    tmp_path: Path, receiver: Receiver, stacks: Callable[..., Any], unused_tcp_port: int
) -> None:
    settings = Settings(
        data_dir=tmp_path,
        webhook_urls=(f"http://127.0.0.1:{unused_tcp_port}/hook",),
        webhook_max_attempts=3,
    )
    stack: Stack = await stacks(settings)
    await stack.cases.create(NewCase(CaseKind.RETURN, "Mia"), actor="u")
    await _pending_zero(stack)
    row = await stack.db.fetchone("SELECT status, last_error FROM webhook_outbox")
    assert row is not None and row["status"] == "failed"
    assert "Connect" in row["last_error"]


class StubDns:
    """Answers for the names a test made up; counts the lookups (never asks real DNS)."""

    def __init__(self, answers: dict[str, list[str]]) -> None:
        self.answers = answers
        self.lookups: list[str] = []

    async def __call__(self, host: str, port: int) -> Sequence[str]:
        self.lookups.append(host)
        return self.answers[host]


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:8080/hook",
        "http://127.1/hook",
        "http://2130706433/hook",
        "http://localhost:8080/hook",
        "http://api.localhost/hook",
        "http://[::1]/hook",
        "http://0.0.0.0:9000/",
        "http://169.254.169.254/latest/meta-data/",
        "http://[fe80::1]/",
        "http://10.0.0.7:6379/",
        "https://172.16.3.4/",
        "https://192.168.1.1/",
        "http://100.64.0.1/",
        "http://[fd00:ec2::254]/",
        "http://[::ffff:10.0.0.1]/",
        "http://[64:ff9b::a9fe:a9fe]/",
        "http://224.0.0.1/",
        "http://168.63.129.16/",
    ],
)
async def test_internal_targets_are_refused_when_added(
    tmp_path: Path, stacks: Callable[..., Any], url: str
) -> None:
    dns = StubDns({})
    stack: Stack = await stacks(
        Settings(data_dir=tmp_path), guard=OutboundGuard(resolver=dns), start=False
    )
    with pytest.raises(InvalidRequest) as caught:
        await stack.dispatcher.add_webhook(url)
    assert caught.value.fields == ("url",)
    assert "INSPECT_OUTBOUND_ALLOW" in caught.value.message
    assert await stack.dispatcher.list_webhooks() == []
    assert dns.lookups == []


async def test_public_targets_are_added_without_a_lookup(
    tmp_path: Path, stacks: Callable[..., Any]
) -> None:
    dns = StubDns({})
    stack: Stack = await stacks(
        Settings(data_dir=tmp_path), guard=OutboundGuard(resolver=dns), start=False
    )
    for url in ("https://hooks.shop.example.com/in", "https://93.184.215.14/in"):
        hook, _ = await stack.dispatcher.add_webhook(url)
        assert hook.url == url
    # A name's answer at save time proves nothing later: it is resolved at each delivery.
    assert dns.lookups == []


async def test_a_literal_internal_target_is_refused_before_any_request(
    tmp_path: Path, receiver: Receiver, stacks: Callable[..., Any]
) -> None:
    # INSPECT_WEBHOOK_URLS are not added through add_webhook: the delivery checks them.
    settings = _settings(tmp_path, receiver, webhook_max_attempts=2)
    stack: Stack = await stacks(settings, guard=OutboundGuard())
    await stack.cases.create(NewCase(CaseKind.RETURN, "Mia"), actor="u")
    await _pending_zero(stack)
    row = await stack.db.fetchone("SELECT status, attempts, last_error FROM webhook_outbox")
    assert row is not None and (row["status"], row["attempts"]) == ("failed", 2)
    assert "refused" in row["last_error"] and "loopback" in row["last_error"]
    assert receiver.hits == []


async def test_a_name_resolving_to_an_internal_address_is_refused_before_connecting(
    tmp_path: Path, receiver: Receiver, stacks: Callable[..., Any]
) -> None:
    # The name rebinds to the receiver's own loopback address: had the guard let it through,
    # the receiver would have been hit.
    port = receiver.url.split(":")[2].split("/")[0]
    dns = StubDns({"hooks.shop.example.com": ["127.0.0.1"]})
    settings = Settings(
        data_dir=tmp_path,
        webhook_urls=(f"http://hooks.shop.example.com:{port}/hook",),
        webhook_max_attempts=1,
    )
    stack: Stack = await stacks(settings, guard=OutboundGuard(resolver=dns))
    await stack.cases.create(NewCase(CaseKind.RETURN, "Mia"), actor="u")
    await _pending_zero(stack)
    row = await stack.db.fetchone("SELECT status, last_error FROM webhook_outbox")
    assert row is not None and row["status"] == "failed"
    assert "hooks.shop.example.com (127.0.0.1) is a loopback address" in row["last_error"]
    assert receiver.hits == []
    assert dns.lookups == ["hooks.shop.example.com"]


async def test_a_name_is_resolved_once_and_connected_to_at_the_checked_address(
    tmp_path: Path, receiver: Receiver, stacks: Callable[..., Any]
) -> None:
    port = receiver.url.split(":")[2].split("/")[0]
    dns = StubDns({"hooks.shop.example.com": ["127.0.0.1"]})
    settings = Settings(
        data_dir=tmp_path, webhook_urls=(f"http://hooks.shop.example.com:{port}/hook",)
    )
    guard = OutboundGuard(("127.0.0.1",), resolver=dns)
    stack: Stack = await stacks(settings, guard=guard)
    await stack.cases.create(NewCase(CaseKind.RETURN, "Mia"), actor="u")
    await receiver.wait(lambda: len(receiver.delivered()) == 1)
    # The request names the URL's host; the connection went where the one lookup pointed.
    assert receiver.hits[0].headers["Host"] == f"hooks.shop.example.com:{port}"
    assert dns.lookups == ["hooks.shop.example.com"]
