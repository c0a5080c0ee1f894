"""The socket side of the security review, one test per finding: each reproduces the exploit
against a real Hub (the in-memory fakes of its ports) and shows it refused."""

from __future__ import annotations

import asyncio
import base64
import os
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from signaling import CaseStatus, CloseCode, HubConfig, MemoryBus, Role, outbound
from tests.fakes.signaling_hub import HubUnderTest, closed_with, in_call
from tests.waits import until


@pytest.fixture
async def hubt() -> AsyncIterator[HubUnderTest]:
    async with HubUnderTest(HubConfig(waiting_grace_s=0.2)) as under_test:
        yield under_test


def upgrade_headers(**extra: str) -> dict[str, str]:
    """The headers of a browser's WebSocket upgrade, sent as a plain GET to read the refusal."""
    return {
        "Upgrade": "websocket",
        "Connection": "Upgrade",
        "Sec-WebSocket-Version": "13",
        "Sec-WebSocket-Key": base64.b64encode(os.urandom(16)).decode(),
        **extra,
    }


# -- M5: the Origin of a browser's upgrade -------------------------------------------------------


async def test_m5_a_page_of_another_origin_cannot_open_a_staff_socket(hubt: HubUnderTest) -> None:
    cookie = hubt.auth.staff_cookie("admin-1", Role.ADMIN)
    evil = upgrade_headers(Origin="https://evil.example", **cookie)
    async with hubt.session.get(hubt.ws_url.replace("ws", "http", 1), headers=evil) as response:
        assert response.status == 403
        body = await response.json()
    assert body["error"]["code"] == "forbidden" and body["error"]["message"]
    with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
        await hubt.session.ws_connect(hubt.ws_url, headers={"Origin": "null", **cookie})
    assert refused.value.status == 403

    # The service's own page (same origin as the socket) gets its staff socket.
    page = hubt.client(headers={"Origin": hubt.base_url, **cookie})
    joined = await page.join()
    assert joined["role"] == "admin"


async def test_m5_with_allowed_origins_only_those_pages_may_connect() -> None:
    config = HubConfig(allowed_origins=frozenset({"https://inspect.example"}))
    async with HubUnderTest(config) as hubt:
        cookie = hubt.auth.staff_cookie("agent-1")
        ours = hubt.client(headers={"Origin": "https://inspect.example", **cookie})
        assert (await ours.join())["role"] == "agent"
        for origin in (hubt.base_url, "https://inspect.example.evil.example"):
            with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
                await hubt.session.ws_connect(hubt.ws_url, headers={"Origin": origin, **cookie})
            assert refused.value.status == 403
        # No Origin: not a browser, no ambient cookie to ride on (API clients, encoders).
        script = hubt.client(headers=hubt.auth.staff("agent-2"))
        assert (await script.join())["role"] == "agent"


# -- M7: chat, replay, idle sockets, sockets per address -----------------------------------------


async def test_m7_one_participant_cannot_flood_the_chat_log() -> None:
    config = HubConfig(chat_messages_per_min=3, chat_bytes_per_min=20_000)
    async with HubUnderTest(config) as hubt:
        case_id, customer, agent = await in_call(hubt)
        for i in range(3):
            await customer.chat(f"message {i}", client_id=f"c{i}")
            await customer.expect("chat", where=lambda m, i=i: m["client_id"] == f"c{i}")
        await customer.chat("one too many", client_id="c3")
        refused = await customer.expect("error")
        assert (refused["code"], refused["ref"]) == ("rate_limited", "chat")
        assert "too much chat" in refused["message"]
        # The agent's budget is their own.
        await agent.chat("still here", client_id="a1")
        await agent.expect("chat", where=lambda m: m["client_id"] == "a1")
        assert [r.text for r in await hubt.bus.chat_since(case_id, 0)][-1] == "still here"
        assert sorted(hubt.cases.chat[case_id]) == [1, 2, 3, 4], "the refused one is not kept"


async def test_m7_chat_bytes_per_minute_are_capped() -> None:
    config = HubConfig(chat_bytes_per_min=6_000)
    async with HubUnderTest(config) as hubt:
        _, customer, _ = await in_call(hubt)
        await customer.chat("x" * 3_990, client_id="big1")
        await customer.expect("chat")
        await customer.chat("y" * 3_990, client_id="big2")
        assert (await customer.expect("error"))["code"] == "rate_limited"


async def test_m7_a_room_keeps_a_bounded_chat_log_and_replays_it_in_pages() -> None:
    bus = MemoryBus(chat_history=250, chat_history_bytes=10_000_000)
    config = HubConfig(chat_page_size=100)
    async with HubUnderTest(config, bus=bus) as hubt:
        case_id = hubt.cases.create().case_id
        for i in range(300):
            await bus.chat_append(case_id, f"k{i}", f"c{i}", f"m{i}", float(i), {"role": "agent"})
        assert bus.chat_dropped == 50, "the oldest 50 were dropped, and counted"

        customer, joined = await hubt.customer(case_id)

        # An old client reading joined.chat sees the newest messages it missed.
        assert [m["seq"] for m in joined["chat"]] == list(range(201, 301))
        assert joined["chat_more"] is True and joined["last_seq"] == 300
        first = await customer.expect("chat_page")
        second = await customer.expect("chat_page")
        assert [m["seq"] for m in first["chat"]] == list(range(51, 101)) and first["more"]
        assert [m["seq"] for m in second["chat"]] == list(range(101, 201))
        assert second["more"] is False

        # A client that resumes near the end gets one page and nothing after it.
        again = hubt.client(headers=hubt.auth.staff("admin-1", Role.ADMIN))
        await again.join()
        hubt.cases.set_state(case_id, CaseStatus.IN_CALL)
        back = await again.join(case_id=case_id, resume_from=290)
        assert [m["seq"] for m in back["chat"]] == list(range(291, 301))
        assert back["chat_more"] is False


async def test_m7_pages_are_bounded_in_bytes_too() -> None:
    bus = MemoryBus()
    config = HubConfig(chat_page_size=100, chat_page_bytes=20_000)
    async with HubUnderTest(config, bus=bus) as hubt:
        case_id = hubt.cases.create().case_id
        for i in range(12):
            await bus.chat_append(case_id, f"k{i}", f"c{i}", "z" * 3_900, float(i), {})
        customer, joined = await hubt.customer(case_id)
        sizes = [len(joined["chat"])]
        more = joined["chat_more"]
        while more:
            page = await customer.expect("chat_page")
            sizes.append(len(page["chat"]))
            more = page["more"]
        assert sum(sizes) == 12 and max(sizes) <= 5


async def test_m7_a_closed_case_drops_its_room_from_the_bus(hubt: HubUnderTest) -> None:
    case_id, customer, agent = await in_call(hubt)
    await customer.chat("my card ends 4242", client_id="c1")
    await agent.expect("chat")

    summary = hubt.cases.set_state(case_id, CaseStatus.CLOSED)
    await hubt.hub.case_changed(summary)

    lobby = await agent.expect("joined")
    assert lobby["case"] is None, "the agent is back in the lobby"
    assert await hubt.bus.chat_since(case_id, 0) == []
    assert case_id not in hubt.bus._chat
    await customer.chat("anyone?", client_id="c2")
    assert (await customer.expect("error"))["code"] == "not_in_call"


async def test_m7_a_socket_that_never_joins_is_closed() -> None:
    async with HubUnderTest(HubConfig(join_deadline_s=0.2)) as hubt:
        idle = hubt.client()
        await idle.connect()
        error = await idle.expect("error")
        assert error["code"] == "not_joined"
        assert await closed_with(idle) == CloseCode.POLICY_VIOLATION
        await until(lambda: hubt.hub.connection_count == 0)

        # A socket that joined in time stays.
        case_id = hubt.cases.create().case_id
        customer, _ = await hubt.customer(case_id)
        await asyncio.sleep(0.4)  # past the deadline: nothing to wait on but time itself
        await customer.send({"type": "ping", "nonce": "still"})
        assert (await customer.expect("pong"))["nonce"] == "still"


async def test_m7_sockets_per_address_are_capped() -> None:
    async with HubUnderTest(HubConfig(max_sockets_per_address=2)) as hubt:
        first, second = hubt.client(), hubt.client()
        await first.connect()
        await second.connect()
        async with hubt.session.get(
            hubt.ws_url.replace("ws", "http", 1), headers=upgrade_headers()
        ) as response:
            assert response.status == 429
            assert (await response.json())["error"]["code"] == "rate_limited"
        # Staff are known at the upgrade: they do not count against the address.
        staff, joined = await hubt.staff("agent-1")
        assert joined["role"] == "agent"
        await first.aclose()
        await until(lambda: hubt.hub.connection_count == 2)
        third = hubt.client()
        await third.connect()
        await third.send({"type": "ping"})
        await third.expect("error")  # not_joined: the socket was accepted


async def test_m7_the_client_address_is_the_servers_to_say() -> None:
    under_test = HubUnderTest(HubConfig(max_sockets_per_address=1))
    under_test.hub.client_address = lambda request: request.headers.get("X-Client", "?")
    async with under_test as hubt:
        one = hubt.client(headers={"X-Client": "203.0.113.1"})
        other = hubt.client(headers={"X-Client": "203.0.113.2"})
        await one.connect()
        await other.connect()
        with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
            await hubt.session.ws_connect(hubt.ws_url, headers={"X-Client": "203.0.113.1"})
        assert refused.value.status == 429


# -- L2: what a phone camera is told about its site ---------------------------------------------


async def test_l2_a_camera_page_never_gets_the_sites_cameras(hubt: HubUnderTest) -> None:
    hubt.sites.add_site("s1", "Warehouse", "cam1", "cam2")
    viewer = hubt.client(headers=hubt.auth.staff("agent-1"))
    await viewer.join(site_id="s1")
    camera = hubt.client()
    await camera.join(camera_token=hubt.sites.camera_token("s1", "cam1"))

    secret = {"rtsp": {"error": "rtsp://10.0.0.5:554/live: connection refused"}}
    other = outbound.camera_status("cam2", secret)
    site = {"type": "site", "site": {"site_id": "s1", "cameras": [{"rtsp_url": "rtsp://10.0.0.5"}]}}
    own = outbound.camera_status("cam1", {"online": True})
    for event in (other, site, own):
        await hubt.hub.publish_to_site("s1", event)

    assert await viewer.expect("camera", where=lambda m: m["camera_id"] == "cam2") == other
    assert await viewer.expect("site") == site
    assert await viewer.expect("camera", where=lambda m: m["camera_id"] == "cam1") == own
    assert await camera.expect("camera") == own, "its own camera's status only"
    seen = [m for m in camera.seen if m["type"] in ("camera", "site")]
    assert seen == [own]


# -- L3: the name a customer gives --------------------------------------------------------------


@pytest.mark.parametrize(
    "name",
    [
        "<img src=x> Agent Smith (staff)",
        "Ada (ѕtaff)",  # a Cyrillic s
        "Support",
        "adm1n",
        "Bob\u202eflah",  # right-to-left override
        "Ada\u200b",
        "Ada\x07",
        "x" * 61,
    ],
)
async def test_l3_a_customer_cannot_pass_for_staff(hubt: HubUnderTest, name: str) -> None:
    case_id = hubt.cases.create().case_id
    customer = hubt.client(token=hubt.auth.join_token(case_id))
    await customer.connect()
    await customer.send({"type": "join", "token": customer.token, "name": name})
    error = await customer.expect("error")
    assert (error["code"], error["ref"]) == ("invalid", "join")
    assert error["message"].startswith("name:")


async def test_l3_staff_see_that_a_customer_chose_their_name(hubt: HubUnderTest) -> None:
    agent, _ = await hubt.staff("agent-1")
    case_id = hubt.cases.create("Ada Customer").case_id
    customer, joined = await hubt.customer(case_id, name="  Ada   L. ")
    assert joined["name"] == "Ada L." and joined["name_source"] == "customer"
    await agent.send({"type": "accept", "case_id": case_id})
    in_room = await agent.expect("joined")
    [shown] = in_room["participants"]
    assert (shown["name"], shown["name_source"]) == ("Ada L.", "customer")
    await customer.chat("hello", client_id="c1")
    message = await agent.expect("chat")
    assert message["sender"]["name_source"] == "customer"

    other_case = hubt.cases.create("Bo Customer").case_id
    _, default = await hubt.customer(other_case)
    assert (default["name"], default["name_source"]) == ("Bo Customer", "case")


# -- L4: staff user ids ---------------------------------------------------------------------------


async def test_l4_a_customer_is_never_told_a_staff_user_id(hubt: HubUnderTest) -> None:
    case_id, customer, agent = await in_call(hubt)
    await until(lambda: any(m["type"] == "case" for m in customer.seen))
    [changed] = [m for m in customer.seen if m["type"] == "case"]
    assert changed["case"]["state"] == "in_call" and "agent_id" not in changed["case"]
    await customer.aclose()
    await agent.expect("participant", where=lambda m: m["event"] == "left")

    again, joined = await hubt.customer(case_id)
    assert joined["case"]["state"] == "in_call" and "agent_id" not in joined["case"]
    summary = hubt.cases.set_state(case_id, CaseStatus.DECIDED)
    await hubt.hub.case_changed(summary)
    assert "agent_id" not in (await again.expect("case"))["case"]
    staff_view = await agent.expect("case", where=lambda m: m["case"]["state"] == "decided")
    assert staff_view["case"]["agent_id"] == "agent-1", "staff still see who holds it"


# -- H1: a second holder of a join link -----------------------------------------------------------


async def test_h1_a_second_socket_with_a_link_of_the_case_is_refused(hubt: HubUnderTest) -> None:
    case_id, customer, agent = await in_call(hubt)
    await customer.chat("my card ends 4242", client_id="c1")
    await agent.expect("chat")

    # Another agent mints a fresh link for the case and joins with it.
    intruder = hubt.client(token=hubt.auth.join_token(case_id))
    await intruder.connect()
    await intruder.send({"type": "join", "token": intruder.token, "name": "Agent Smith"})
    assert (await intruder.expect("error"))["code"] == "invalid", "no staff-looking name"
    await intruder.send({"type": "join", "token": intruder.token})
    refused = await intruder.expect("error")
    assert (refused["code"], refused["ref"]) == ("forbidden", "join")
    assert "already connected" in refused["message"]
    assert not [m for m in intruder.seen if m["type"] in ("joined", "chat")]
    assert [p["role"] for p in await hubt.bus.presence_list(case_id)].count("customer") == 1

    # The customer's own socket drops; their reconnect (the old socket gone) gets back in.
    await customer.aclose()
    await agent.expect("participant", where=lambda m: m["event"] == "left")
    back, joined = await hubt.customer(case_id, resume_from=0)
    assert joined["case"]["state"] == "in_call"
    assert [m["text"] for m in joined["chat"]] == ["my card ends 4242"]


# -- L13: credentials that stop holding while the socket is open -------------------------------


async def test_l13_close_subject_closes_every_socket_of_it(hubt: HubUnderTest) -> None:
    case_id, customer, agent = await in_call(hubt)
    second = hubt.client(headers=hubt.auth.staff("agent-1"))
    await second.join()
    bystander, _ = await hubt.staff("agent-2")

    assert hubt.hub.close_subject("agent-1", "your account was disabled") == 2

    for socket in (agent, second):
        error = await socket.expect("error")
        assert (error["code"], error["message"]) == ("unauthorized", "your account was disabled")
        assert await closed_with(socket) == CloseCode.UNAUTHORIZED
    await bystander.send({"type": "ping", "nonce": "b"})
    assert (await bystander.expect("pong"))["nonce"] == "b"
    await customer.send({"type": "ping", "nonce": "c"})
    assert (await customer.expect("pong"))["nonce"] == "c"
    assert hubt.hub.close_subject("agent-1", "again") == 0


async def test_l13_a_revocation_reaches_the_sockets_of_every_node() -> None:
    bus = MemoryBus()
    async with HubUnderTest(bus=bus) as node_a, HubUnderTest(bus=bus) as node_b:
        on_a, _ = await node_a.staff("agent-1")
        on_b, _ = await node_b.staff("agent-1")

        await node_a.hub.revoke_subject("agent-1", "token revoked")

        for socket in (on_a, on_b):
            assert (await socket.expect("error"))["message"] == "token revoked"
            assert await closed_with(socket) == CloseCode.UNAUTHORIZED


@pytest.mark.parametrize("how", ["revoked", "disabled"])
async def test_l13_a_staff_socket_whose_credential_ended_is_closed(how: str) -> None:
    async with HubUnderTest(HubConfig(recheck_s=0.1)) as hubt:
        headers = hubt.auth.staff("agent-1")
        agent = hubt.client(headers=headers)
        await agent.join()
        other, _ = await hubt.staff("agent-2")
        case_id = hubt.cases.create().case_id
        customer, _ = await hubt.customer(case_id)

        if how == "revoked":
            hubt.auth.revoke(headers)  # the token was revoked or the session expired
        else:
            hubt.auth.disabled.add("agent-1")  # the authenticator's still_valid says no

        error = await agent.expect("error")
        assert error["code"] == "unauthorized"
        assert await closed_with(agent) == CloseCode.UNAUTHORIZED
        for still_open in (other, customer):
            await still_open.send({"type": "ping", "nonce": "n"})
            assert (await still_open.expect("pong"))["nonce"] == "n"


async def test_l13_a_credential_check_that_fails_keeps_the_call() -> None:
    """The accounts store not answering is no reason to drop a live call."""
    under_test = HubUnderTest(HubConfig(recheck_s=0.05))

    async def broken(request: Any) -> None:
        raise ConnectionError("database is down")

    async with under_test as hubt:
        agent, _ = await hubt.staff("agent-1")
        hubt.auth.authenticate = broken  # type: ignore[method-assign]
        await asyncio.sleep(0.2)  # several re-checks: nothing to wait on but time itself
        await agent.send({"type": "ping", "nonce": "n"})
        assert (await agent.expect("pong"))["nonce"] == "n"
