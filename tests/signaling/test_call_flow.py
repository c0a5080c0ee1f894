"""The return call through the whole service: aiortc participants over loopback, real sockets,
real SQLite. See docs/protocol.md for the messages."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator

import aiohttp
import pytest

from tests.conftest import LiveService
from tests.fakes import NumberedVideoTrack, ToneAudioTrack, audio_level, read_frame_number
from tests.fakes.signal_client import Participant


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as client:
        yield client


async def staff_session(live: LiveService, username: str = "agent") -> aiohttp.ClientSession:
    # Cookies for an IP host need the unsafe jar.
    client = aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True))
    await live.login(client, username, live.agent_password)
    return client


async def customer_for(
    live: LiveService, session: aiohttp.ClientSession, **fields: str
) -> tuple[str, Participant]:
    created = await live.create_case(session, **fields)
    case = created["case"]
    assert isinstance(case, dict)
    return str(case["id"]), Participant(session, live.base_url, token=str(created["join_token"]))


async def agent_in_lobby(live: LiveService, username: str = "agent") -> Participant:
    client = await staff_session(live, username)
    agent = Participant(client, live.base_url)
    joined = await agent.join()
    assert joined["case"] is None and joined["role"] == "agent"
    return agent


async def close_all(*participants: Participant) -> None:
    for participant in participants:
        await participant.aclose()
        if participant.session.closed is False and participant.token is None:
            await participant.session.close()


async def test_customer_video_reaches_the_agent_and_audio_flows_both_ways(
    live_service: LiveService, session: aiohttp.ClientSession
) -> None:
    case_id, customer = await customer_for(live_service, session)
    agent = await agent_in_lobby(live_service)
    try:
        joined = await customer.join()
        assert joined["case"]["case_id"] == case_id and joined["case"]["state"] == "waiting"
        queue = await agent.expect("queue", where=lambda m: bool(m["cases"]))
        assert [entry["case_id"] for entry in queue["cases"]] == [case_id]

        await customer.publish(NumberedVideoTrack(), ToneAudioTrack())
        numbers: list[int] = []
        heard_by_agent: list[float] = []
        heard_by_customer: list[float] = []
        agent.on_video_frame = lambda frame: numbers.append(read_frame_number(frame) or -1)
        agent.on_audio_frame = lambda frame: heard_by_agent.append(audio_level(frame))
        customer.on_audio_frame = lambda frame: heard_by_customer.append(audio_level(frame))

        await agent.send({"type": "accept", "case_id": case_id})
        accepted = await agent.expect("accepted")
        assert accepted["case"]["state"] == "in_call"
        in_room = await agent.expect("joined")
        assert in_room["case"]["case_id"] == case_id
        assert in_room["grading"] is False, "this service runs without the model"
        assert "grading" not in joined, "customers are not told about grading"
        assert [p["role"] for p in in_room["participants"]] == ["customer"]
        await customer.expect("participant", where=lambda m: m["event"] == "joined")

        await agent.publish(ToneAudioTrack(frequency=660.0), receive_video=True)
        # Wait for the media, frame by frame.
        try:
            async with asyncio.timeout(15):
                while (
                    len([n for n in numbers if n >= 0]) < 10
                    or not any(level > 0.02 for level in heard_by_agent)
                    or not any(level > 0.02 for level in heard_by_customer)
                ):
                    await _next_frame(agent, customer)
        except TimeoutError:
            raise AssertionError(
                f"video {numbers[-5:]} agent heard {max(heard_by_agent, default=0):.3f} "
                f"customer heard {max(heard_by_customer, default=0):.3f} "
                f"sinks agent={list(agent.sinks)} customer={list(customer.sinks)}"
            ) from None
        decoded = [n for n in numbers if n >= 0]
        assert decoded == sorted(decoded), "frames arrive in the order they were drawn"
        assert len(set(decoded)) == len(decoded)

        async with session.get(
            f"{live_service.base_url}/api/cases/{case_id}", headers=live_service.headers()
        ) as response:
            detail = await response.json()
        assert detail["case"]["state"] == "in_call"
        assert detail["case"]["agent_id"]
    finally:
        await close_all(customer, agent)


async def test_chat_resumes_after_a_dropped_socket_with_nothing_lost_or_doubled(
    live_service: LiveService, session: aiohttp.ClientSession
) -> None:
    case_id, customer = await customer_for(live_service, session)
    agent = await agent_in_lobby(live_service)
    try:
        await customer.join()
        await agent.send({"type": "accept", "case_id": case_id})
        await agent.expect("joined")

        for i in range(3):
            await customer.chat(f"before {i}", client_id=f"c{i}")
        seen = [await agent.expect("chat") for _ in range(3)]
        last_seq = seen[-1]["seq"]
        assert [m["text"] for m in seen] == ["before 0", "before 1", "before 2"]
        assert [m["seq"] for m in seen] == [1, 2, 3]

        # The agent's socket drops; the customer keeps typing.
        assert agent.ws is not None
        await agent.ws.close()
        await agent.expect("_closed")
        for i in range(3, 5):
            await customer.chat(f"while away {i}", client_id=f"c{i}")
            await customer.expect("chat", where=lambda m, i=i: m["client_id"] == f"c{i}")
        # A retry of a message the server already has is not stored twice.
        await customer.chat("while away 4", client_id="c4")
        duplicate = await customer.expect("chat", where=lambda m: m["client_id"] == "c4")
        assert duplicate["seq"] == 5

        agent.ws = None
        rejoined = await agent.join(case_id=case_id, resume_from=last_seq)
        assert [m["text"] for m in rejoined["chat"]] == ["while away 3", "while away 4"]
        assert [m["seq"] for m in rejoined["chat"]] == [4, 5]
        assert rejoined["last_seq"] == 5

        await agent.chat("back again", client_id="a1")
        reply = await customer.expect("chat", where=lambda m: m["client_id"] == "a1")
        assert reply["seq"] == 6 and reply["sender"]["role"] == "agent"

        async with session.get(
            f"{live_service.base_url}/api/cases/{case_id}", headers=live_service.headers()
        ) as response:
            events = (await response.json())["events"]
        chat_events = [e for e in events if e["type"] == "chat.message"]
        assert len(chat_events) == 6, "the timeline keeps each message once"
        # The timeline names the customer by the case's name, marked as the customer.
        assert {e["actor_name"] for e in chat_events} == {"Dana Customer (customer)", "Alex Agent"}
        accepted = [e for e in events if e["data"].get("to") == "in_call"]
        assert [e["actor_name"] for e in accepted] == ["Alex Agent"]
    finally:
        await close_all(customer, agent)


async def test_two_agents_race_to_accept_and_exactly_one_wins(
    live_service: LiveService, session: aiohttp.ClientSession
) -> None:
    case_id, customer = await customer_for(live_service, session)
    first = await agent_in_lobby(live_service, "agent")
    second = await agent_in_lobby(live_service, "agent2")
    try:
        await customer.join()
        for agent in (first, second):
            await agent.expect("queue", where=lambda m: bool(m["cases"]))
        before = {id(agent): len(agent.seen) for agent in (first, second)}
        await asyncio.gather(
            first.send({"type": "accept", "case_id": case_id}),
            second.send({"type": "accept", "case_id": case_id}),
        )

        async def outcome(agent: Participant) -> str:
            message = await _first_of(agent, ("accepted", "error"))
            return "won" if message["type"] == "accepted" else str(message["code"])

        results = {await outcome(first): first, await outcome(second): second}
        assert sorted(results) == ["already_accepted", "won"]
        # The loser stays in the lobby and sees the queue empty (the queue may come before
        # the loser's error, which waiting for the outcome skipped).
        loser = results["already_accepted"]
        emptied = [
            m for m in loser.seen[before[id(loser)] :] if m["type"] == "queue" and not m["cases"]
        ]
        if not emptied:
            await loser.expect("queue", where=lambda m: m["cases"] == [])

        # The REST route gives the same answer.
        staff = await staff_session(live_service, "agent2")
        async with staff.post(f"{live_service.base_url}/api/cases/{case_id}/accept") as response:
            assert response.status == 409
            assert (await response.json())["error"]["code"] == "already_accepted"
        await staff.close()
    finally:
        await close_all(customer, first, second)


async def _next_frame(*participants: Participant) -> None:
    """Returns once any sink of the participants got another frame."""
    events = [sink.frame_event for p in participants for sink in p.sinks.values()]
    for event in events:
        event.clear()
    if not events:
        await asyncio.sleep(0.02)  # no track yet: nothing to wait on but time
        return
    waiters = [asyncio.ensure_future(event.wait()) for event in events]
    try:
        await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED, timeout=0.5)
    finally:
        for waiter in waiters:
            waiter.cancel()


async def _first_of(participant: Participant, kinds: tuple[str, ...]) -> dict[str, object]:
    async with asyncio.timeout(10):
        while True:
            message = await participant.inbox.get()
            if message["type"] in kinds:
                return message


async def test_the_customer_hears_when_the_agent_leaves_and_the_case_shows_the_decision(
    live_service: LiveService, session: aiohttp.ClientSession
) -> None:
    case_id, customer = await customer_for(live_service, session)
    agent = await agent_in_lobby(live_service)
    staff = await staff_session(live_service)
    try:
        await customer.join()
        await agent.send({"type": "accept", "case_id": case_id})
        await agent.expect("joined")
        decision = {
            "decision": "partial_refund",
            "refund_amount": 12.5,
            "currency": "EUR",
            "facts": {
                "cosmetic": "light_wear",
                "functional": "works",
                "packaging": "damaged",
                "accessories_complete": True,
            },
            "note": "scuff on the lid",
        }
        url = f"{live_service.base_url}/api/cases/{case_id}/decision"
        async with staff.post(url, json=decision) as response:
            assert response.status == 200, await response.text()
        changed = await customer.expect("case", where=lambda m: m["case"]["state"] == "decided")
        assert changed["case"]["case_id"] == case_id
        await agent.send({"type": "leave"})
        left = await customer.expect("participant", where=lambda m: m["event"] == "left")
        assert left["participant"]["role"] == "agent"
        back = await agent.expect("joined")
        assert back["case"] is None, "the agent is back in the lobby"
    finally:
        await staff.close()
        await close_all(customer, agent)


# -- bad input ------------------------------------------------------------------------------


async def test_bad_messages_get_errors_and_the_server_keeps_serving(
    live_service: LiveService, session: aiohttp.ClientSession
) -> None:
    case_id, customer = await customer_for(live_service, session)
    _, bystander = await customer_for(live_service, session)
    try:
        await customer.connect()
        await customer.send({"type": "chat", "client_id": "x", "text": "hi"})
        assert (await customer.expect("error"))["code"] == "not_joined"
        await customer.join()

        cases = [
            ("{oops", "malformed"),
            (json.dumps({"type": "dance"}), "unknown_type"),
            (json.dumps({"type": "chat", "client_id": "x", "text": "y" * 70_000}), "too_large"),
            (json.dumps({"type": "chat", "client_id": "x"}), "invalid"),
            (json.dumps({"type": "accept", "case_id": case_id}), "forbidden"),
            (json.dumps({"type": "offer", "sdp": "this is not sdp"}), "bad_sdp"),
            (
                json.dumps({"type": "offer", "sdp": "v=0\r\no=- 0 0 IN IP4 0\r\nm=junk\r\n"}),
                "bad_sdp",
            ),
            (json.dumps({"type": "candidate", "candidate": "candidate:garbage"}), "bad_candidate"),
            (json.dumps({"type": "join", "token": "x"}), "already_joined"),
        ]
        for raw, code in cases:
            await customer.send_raw(raw)
            error = await customer.expect("error")
            assert error["code"] == code, (raw[:60], error)
            assert error["message"]

        # Still connected and served; others too.
        await customer.send({"type": "ping", "nonce": "n1"})
        assert (await customer.expect("pong"))["nonce"] == "n1"
        joined = await bystander.join()
        assert joined["case"]["state"] == "waiting"
    finally:
        await close_all(customer, bystander)


@pytest.mark.parametrize("problem", ["forged", "expired", "other_case"])
async def test_bad_tokens_are_refused(
    live_service: LiveService, session: aiohttp.ClientSession, problem: str
) -> None:
    case_id, customer = await customer_for(live_service, session)
    other_id, _ = await customer_for(live_service, session)
    auth = live_service.state.accounts
    token = str(customer.token)
    if problem == "forged":
        body, _, signature = token.partition(".")
        token = f"{body}.{'A' * len(signature)}"
        expected = "unauthorized"
        fields: dict[str, str] = {}
    elif problem == "expired":
        token = auth.issue_join_token(case_id, ttl_s=-60).token
        expected = "token_expired"
        fields = {}
    else:
        expected = "forbidden"
        fields = {"case_id": other_id}
    intruder = Participant(session, live_service.base_url, token=token)
    try:
        await intruder.connect()
        await intruder.send({"type": "join", "token": token, **fields})
        error = await intruder.expect("error")
        assert error["code"] == expected
        if problem != "other_case":
            closed = await intruder.expect("_closed")
            assert closed["code"] == 4401
        async with session.get(
            f"{live_service.base_url}/api/cases/{other_id}",
            headers={"Authorization": f"Bearer {token}"},
        ) as response:
            assert response.status == 401, "a join token is not an API credential"
    finally:
        await intruder.aclose()
