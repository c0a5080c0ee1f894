"""The Hub on its own: a real ``signaling.Hub`` on a real aiohttp server, real WebSocket
clients, the memory bus, and in-memory fakes of its ports (``tests/fakes/signaling_ports.py``).
See docs/protocol.md for the messages."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import pytest

from signaling import CaseStatus, CloseCode, HubConfig, Role
from tests.fakes.signal_client import Participant
from tests.fakes.signaling_hub import HubUnderTest, closed_with, in_call
from tests.waits import until

OFFER = "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\n"


@pytest.fixture
async def hubt() -> AsyncIterator[HubUnderTest]:
    config = HubConfig(waiting_grace_s=0.2, grading=True, preroll_s=10.0)
    async with HubUnderTest(config) as under_test:
        yield under_test


def of_type(participant: Participant, kind: str) -> list[dict[str, Any]]:
    return [message for message in participant.seen if message["type"] == kind]


# -- customers and the queue ---------------------------------------------------------------


async def test_a_customer_who_joins_waits_in_the_agents_queue(hubt: HubUnderTest) -> None:
    agent, lobby = await hubt.staff("agent-1")
    assert lobby["case"] is None and lobby["role"] == "agent" and lobby["participants"] == []
    assert lobby["ice_servers"][0]["username"] == "agent-1", "ICE servers are per identity"
    assert (await agent.expect("queue"))["cases"] == []

    case_id = hubt.cases.create("Ada Customer", order_id="ORD-1").case_id
    customer, joined = await hubt.customer(case_id)

    assert joined["role"] == "customer" and joined["name"] == "Ada Customer"
    assert joined["case"]["case_id"] == case_id and joined["case"]["state"] == "waiting"
    assert joined["ice_servers"][0]["username"] == f"customer:{case_id}"
    assert "grading" not in joined and "preroll_s" not in joined, "for staff only"
    queue = await agent.expect("queue", where=lambda m: bool(m["cases"]))
    [entry] = queue["cases"]
    assert entry["case_id"] == case_id and entry["order_id"] == "ORD-1"
    assert entry["waiting_since"] == joined["case"]["waiting_since"]


async def test_a_customer_is_shown_by_the_name_they_give(hubt: HubUnderTest) -> None:
    case_id = hubt.cases.create("Ada Customer").case_id
    _, joined = await hubt.customer(case_id, name="Ada L.")
    assert joined["name"] == "Ada L."


async def test_a_customer_whose_socket_drops_leaves_the_queue_after_the_grace_period(
    hubt: HubUnderTest,
) -> None:
    agent, _ = await hubt.staff("agent-1")
    case_id = hubt.cases.create().case_id
    customer, _ = await hubt.customer(case_id)
    await agent.expect("queue", where=lambda m: bool(m["cases"]))

    await customer.aclose()

    await agent.expect("queue", where=lambda m: m["cases"] == [])
    summary = await hubt.cases.get(case_id)
    assert summary is not None and summary.status is CaseStatus.CREATED


async def test_a_customer_cannot_open_a_decided_case(hubt: HubUnderTest) -> None:
    case_id = hubt.cases.create().case_id
    hubt.cases.set_state(case_id, CaseStatus.DECIDED)
    customer = hubt.client(token=hubt.auth.join_token(case_id))
    await customer.connect()
    await customer.send({"type": "join", "token": customer.token})
    error = await customer.expect("error")
    assert error["code"] == "not_in_call" and error["ref"] == "join"


async def test_a_customer_token_reaches_its_own_case_only(hubt: HubUnderTest) -> None:
    mine = hubt.cases.create().case_id
    other = hubt.cases.create().case_id
    customer = hubt.client(token=hubt.auth.join_token(mine))
    await customer.connect()
    await customer.send({"type": "join", "token": customer.token, "case_id": other})
    assert (await customer.expect("error"))["code"] == "forbidden"


async def test_a_reconnecting_customer_gets_the_chat_it_missed(hubt: HubUnderTest) -> None:
    case_id, customer, agent = await in_call(hubt)
    await customer.chat("hello", client_id="c1")
    await customer.chat("it is scratched", client_id="c2")
    last = await customer.expect("chat", where=lambda m: m["client_id"] == "c2")
    await customer.aclose()
    await agent.expect("participant", where=lambda m: m["event"] == "left")
    await agent.chat("can you turn it over?", client_id="a1")
    await agent.expect("chat", where=lambda m: m["client_id"] == "a1")

    again, joined = await hubt.customer(case_id, resume_from=last["seq"])

    assert [m["text"] for m in joined["chat"]] == ["can you turn it over?"]
    assert joined["last_seq"] == last["seq"] + 1
    assert joined["case"]["state"] == "in_call"
    assert [p["role"] for p in joined["participants"]] == ["agent"]
    assert (await agent.expect("participant"))["event"] == "joined"


# -- staff ---------------------------------------------------------------------------------


async def test_one_of_two_racing_agents_wins_the_case(hubt: HubUnderTest) -> None:
    first, _ = await hubt.staff("agent-1")
    second, _ = await hubt.staff("agent-2")
    case_id = hubt.cases.create().case_id
    customer, _ = await hubt.customer(case_id)
    for agent in (first, second):
        await agent.expect("queue", where=lambda m: bool(m["cases"]))

    before = {id(agent): len(agent.seen) for agent in (first, second)}
    accept = {"type": "accept", "case_id": case_id}
    await asyncio.gather(first.send(accept), second.send(accept))

    results = {id(agent): await next_of(agent, ("accepted", "error")) for agent in (first, second)}
    kinds = sorted(message["type"] for message in results.values())
    assert kinds == ["accepted", "error"]
    [lost] = [message for message in results.values() if message["type"] == "error"]
    assert lost["code"] == "already_accepted" and lost["ref"] == "accept"
    winner = first if results[id(first)]["type"] == "accepted" else second
    loser = second if winner is first else first

    in_room = await winner.expect("joined")
    assert in_room["case"]["state"] == "in_call" and in_room["case"]["case_id"] == case_id
    assert in_room["grading"] is True and in_room["preroll_s"] == 10.0
    changed = await customer.expect("case")
    assert changed["case"]["state"] == "in_call"
    assert "agent_id" not in changed["case"], "a customer is never told a staff user id"
    assert in_room["case"]["agent_id"] == in_room["ice_servers"][0]["username"]
    # The emptied queue may come before the loser's error, which waiting for it skipped.
    if not [m for m in loser.seen[before[id(loser)] :] if m["type"] == "queue" and not m["cases"]]:
        await loser.expect("queue", where=lambda m: m["cases"] == [])
    assert hubt.hub.live_calls == 1


async def next_of(participant: Participant, kinds: tuple[str, ...]) -> dict[str, Any]:
    """The next message of any of ``kinds`` (others are skipped)."""
    async with asyncio.timeout(10):
        while True:
            message = await participant.inbox.get()
            if message["type"] in kinds:
                return message


async def test_an_agent_leaves_to_the_lobby_and_comes_back_to_the_call_it_holds(
    hubt: HubUnderTest,
) -> None:
    case_id, _, agent = await in_call(hubt)

    await agent.send({"type": "leave"})
    lobby = await agent.expect("joined")
    assert lobby["case"] is None
    await agent.expect("queue")

    await agent.send({"type": "join", "case_id": case_id})
    back = await agent.expect("joined")
    assert back["case"]["case_id"] == case_id

    other, _ = await hubt.staff("agent-2")
    await other.send({"type": "join", "case_id": case_id})
    assert (await other.expect("error"))["code"] == "forbidden", "another agent holds it"


async def test_reviewers_do_not_take_calls(hubt: HubUnderTest) -> None:
    reviewer, joined = await hubt.staff("rev-1", role=Role.REVIEWER)
    assert joined["role"] == "reviewer"
    case_id = hubt.cases.create().case_id
    await reviewer.send({"type": "accept", "case_id": case_id})
    error = await reviewer.expect("error")
    assert error["code"] == "forbidden"
    assert of_type(reviewer, "queue") == [], "the queue is for those who take calls"


async def test_a_staff_session_made_on_another_node_is_found(hubt: HubUnderTest) -> None:
    staff = hubt.client(headers=hubt.auth.staff("agent-9", remote=True))
    joined = await staff.join()
    assert joined["role"] == "agent" and joined["name"] == "agent-9"


async def test_staff_only_events_never_reach_the_customer(hubt: HubUnderTest) -> None:
    case_id, customer, agent = await in_call(hubt)

    await hubt.hub.publish_to_staff(case_id, {"type": "analysis", "case_id": case_id, "grade": "B"})
    summary = hubt.cases.set_state(case_id, CaseStatus.DECIDED)
    await hubt.hub.case_changed(summary)

    analysis = await agent.expect("analysis")
    assert analysis == {"type": "analysis", "case_id": case_id, "grade": "B"}
    assert (await customer.expect("case"))["case"]["state"] == "decided"
    assert of_type(customer, "analysis") == []


# -- chat ----------------------------------------------------------------------------------


async def test_a_chat_message_sent_twice_is_stored_and_delivered_once(
    hubt: HubUnderTest,
) -> None:
    case_id, customer, agent = await in_call(hubt)

    await customer.chat("is it covered?", client_id="c1")
    first = await customer.expect("chat")
    await customer.chat("is it covered?", client_id="c1")
    repeat = await customer.expect("chat")
    # The same client id from someone else is another message.
    await agent.chat("yes", client_id="c1")
    reply = await agent.expect("chat", where=lambda m: m["text"] == "yes")

    assert repeat == first, "the sender gets the original back"
    assert first["seq"] == 1 and reply["seq"] == 2
    assert first["sender"]["role"] == "customer" and first["sender"]["name"] == "Ada Customer"
    assert [m["seq"] for m in of_type(agent, "chat")] == [1, 2]
    assert sorted(hubt.cases.chat[case_id]) == [1, 2], "the timeline keeps each once"


async def test_chat_needs_a_room(hubt: HubUnderTest) -> None:
    agent, _ = await hubt.staff()
    await agent.chat("anyone?")
    error = await agent.expect("error")
    assert error["code"] == "not_in_call" and error["ref"] == "chat"


# -- bad input -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "code", "ref"),
    [
        ("not json", "malformed", None),
        ("[1, 2]", "malformed", None),
        ('{"kind": "join"}', "malformed", None),
        ('{"type": "dance"}', "unknown_type", "dance"),
        ('{"type": "chat", "client_id": "c1", "text": "hi"}', "not_joined", "chat"),
        ('{"type": "join", "case_id": "a", "site_id": "b"}', "invalid", "join"),
        ('{"type": "join", "resume_from": -1}', "invalid", "join"),
        ('{"type": "join"}', "unauthorized", "join"),
    ],
)
async def test_a_bad_message_gets_an_error_and_the_socket_stays_open(
    hubt: HubUnderTest, raw: str, code: str, ref: str | None
) -> None:
    client = hubt.client()
    await client.connect()
    await client.send_raw(raw)
    error = await client.expect("error")
    assert set(error) == {"type", "code", "message", "ref"} and error["message"]
    assert (error["code"], error["ref"]) == (code, ref)
    if code == "unauthorized":
        assert await closed_with(client) == CloseCode.UNAUTHORIZED
        return
    await client.send({"type": "join", "token": hubt.auth.join_token(hubt.cases.create().case_id)})
    assert (await client.expect("joined"))["role"] == "customer"


async def test_a_message_over_the_size_limit_is_refused(hubt: HubUnderTest) -> None:
    case_id = hubt.cases.create().case_id
    customer, _ = await hubt.customer(case_id)
    await customer.send({"type": "chat", "client_id": "big", "text": "x" * 70_000})
    assert (await customer.expect("error"))["code"] == "too_large"
    await customer.send({"type": "ping", "nonce": "n1"})
    assert (await customer.expect("pong"))["nonce"] == "n1"


@pytest.mark.parametrize(("expired", "code"), [(False, "unauthorized"), (True, "token_expired")])
async def test_a_bad_join_token_is_refused_and_the_socket_closed(
    hubt: HubUnderTest, expired: bool, code: str
) -> None:
    token = hubt.auth.expired_join_token() if expired else "forged"
    client = hubt.client(token=token)
    await client.connect()
    await client.send({"type": "join", "token": token})
    error = await client.expect("error")
    assert (error["code"], error["ref"]) == (code, "join")
    assert await closed_with(client) == CloseCode.UNAUTHORIZED


async def test_bad_messages_after_joining_say_what_is_wrong(hubt: HubUnderTest) -> None:
    case_id = hubt.cases.create().case_id
    customer, _ = await hubt.customer(case_id)

    async def refused(message: dict[str, Any]) -> tuple[str, str | None]:
        await customer.send(message)
        error = await customer.expect("error")
        return error["code"], error["ref"]

    assert await refused({"type": "chat", "client_id": "c1", "text": ""}) == ("invalid", "chat")
    assert await refused({"type": "chat", "client_id": "a b", "text": "hi"}) == ("invalid", "chat")
    assert await refused({"type": "join"}) == ("already_joined", "join")
    assert await refused({"type": "accept", "case_id": case_id}) == ("forbidden", "accept")
    assert await refused({"type": "candidate", "candidate": "candidate:1"}) == (
        "bad_candidate",
        "candidate",
    )
    assert await refused({"type": "offer", "sdp": "hello"}) == ("bad_sdp", "offer")
    assert await refused({"type": "offer", "sdp": OFFER, "camera_id": "cam1"}) == (
        "invalid",
        "offer",
    )
    assert await refused({"type": "unwatch", "camera_id": "cam1"}) == ("forbidden", "unwatch")
    await customer.send({"type": "offer", "sdp": OFFER})
    assert (await customer.expect("answer"))["sdp"].startswith("v=0")


async def test_a_flooding_socket_is_told_to_slow_down(hubt: HubUnderTest) -> None:
    case_id = hubt.cases.create().case_id
    customer, _ = await hubt.customer(case_id)
    for n in range(int(HubConfig().message_burst) + 5):
        await customer.send({"type": "ping", "nonce": str(n)})
    error = await customer.expect("error")
    assert error["code"] == "rate_limited" and error["ref"] is None


# -- media ---------------------------------------------------------------------------------


async def test_offers_reach_the_peer_of_the_case_room(hubt: HubUnderTest) -> None:
    case_id, customer, _ = await in_call(hubt)
    [joined] = of_type(customer, "joined")
    participant_id = joined["participant_id"]

    await customer.send({"type": "offer", "sdp": OFFER})
    answer = await customer.expect("answer")
    await customer.send(
        {"type": "candidate", "candidate": "candidate:1 1 udp 1 1.2.3.4 5 typ host"}
    )
    await hubt.hub.renegotiation_needed(participant_id, {"audio": 1, "video": 1})

    assert answer == {"type": "answer", "sdp": answer["sdp"]}, "no camera_id in a case room"
    renegotiate = await customer.expect("renegotiate")
    assert renegotiate == {"type": "renegotiate", "tracks": {"audio": 1, "video": 1}}
    peer = hubt.media.peers[participant_id]
    assert peer.room_id == case_id and len(peer.candidates) == 1


async def test_media_lost_tells_the_client_and_closes_its_socket(hubt: HubUnderTest) -> None:
    case_id = hubt.cases.create().case_id
    customer, joined = await hubt.customer(case_id)

    assert hubt.hub.media_lost("no-such-participant", "gone") is False
    assert hubt.hub.media_lost(joined["participant_id"], "the media node stopped") is True

    error = await customer.expect("error")
    assert error == {
        "type": "error",
        "code": "media_lost",
        "message": "the media node stopped",
        "ref": None,
    }
    assert await closed_with(customer) == CloseCode.MEDIA_LOST
    assert hubt.hub.media_lost(joined["participant_id"], "again") is False


# -- site rooms and cameras ------------------------------------------------------------------


async def site_viewer(hubt: HubUnderTest) -> tuple[Participant, dict[str, Any]]:
    viewer = hubt.client(headers=hubt.auth.staff("agent-1"))
    return viewer, await viewer.join(site_id="s1")


async def test_a_camera_page_joins_its_site_and_a_newer_page_replaces_it(
    hubt: HubUnderTest,
) -> None:
    hubt.sites.add_site("s1", "Warehouse", "cam1", "cam2")
    token = hubt.sites.camera_token("s1", "cam1")
    viewer, watching = await site_viewer(hubt)
    assert watching["case"] is None and watching["preroll_s"] == 10.0
    assert [c["id"] for c in watching["site"]["cameras"]] == ["cam1", "cam2"]

    older = hubt.client()
    joined = await older.join(camera_token=token)
    assert joined["role"] == "camera" and joined["camera_id"] == "cam1"
    assert joined["site"] == {"site_id": "s1", "name": "Warehouse"}
    assert joined["camera"]["id"] == "cam1"
    arrived = await viewer.expect("participant")
    assert arrived["event"] == "joined" and arrived["participant"]["camera_id"] == "cam1"

    newer = hubt.client()
    await newer.join(camera_token=token)

    replaced = await older.expect("error")
    assert replaced["code"] == "replaced" and replaced["ref"] is None
    assert await closed_with(older) == CloseCode.REPLACED
    older_id, newer_id = joined["participant_id"], of_type(newer, "joined")[0]["participant_id"]
    await until(lambda: ("disconnected", "cam1", older_id) in hubt.sites.events)
    assert hubt.sites.events[:2] == [
        ("connected", "cam1", older_id),
        ("connected", "cam1", newer_id),
    ]

    # The newer page still publishes: the older one leaving did not take the camera with it.
    assert hubt.hub.disconnect_camera("cam1", "revoked", subject="camera-token:other") is False
    assert hubt.hub.disconnect_camera("cam1", "token revoked", subject=hubt.sites.subject_of(token))
    revoked = await newer.expect("error")
    assert (revoked["code"], revoked["message"]) == ("unauthorized", "token revoked")
    assert await closed_with(newer) == CloseCode.UNAUTHORIZED


async def test_a_camera_page_publishes_only_as_its_camera(hubt: HubUnderTest) -> None:
    hubt.sites.add_site("s1", "Warehouse", "cam1", "cam2")
    camera = hubt.client()
    joined = await camera.join(camera_token=hubt.sites.camera_token("s1", "cam1"))

    await camera.send({"type": "offer", "sdp": OFFER, "camera_id": "cam2"})
    assert (await camera.expect("error"))["code"] == "forbidden"
    await camera.send({"type": "offer", "sdp": OFFER})
    await camera.expect("answer")
    assert hubt.media.peers[joined["participant_id"]].room_id == "camera:cam1"


async def test_a_viewer_has_one_peer_per_camera_it_watches(hubt: HubUnderTest) -> None:
    hubt.sites.add_site("s1", "Warehouse", "cam1", "cam2")
    viewer, joined = await site_viewer(hubt)
    peer_id = f"{joined['participant_id']}-cam1"

    async def refused(message: dict[str, Any]) -> str:
        await viewer.send(message)
        return str((await viewer.expect("error"))["code"])

    assert await refused({"type": "offer", "sdp": OFFER}) == "invalid"
    assert await refused({"type": "offer", "sdp": OFFER, "camera_id": "cam9"}) == "not_found"
    assert await refused({"type": "candidate", "candidate": "", "camera_id": "cam2"}) == (
        "not_in_call"
    )
    await viewer.send({"type": "offer", "sdp": OFFER, "camera_id": "cam1"})
    answer = await viewer.expect("answer")
    await hubt.hub.renegotiation_needed(peer_id, {"video": 1})
    renegotiate = await viewer.expect("renegotiate")

    assert answer["camera_id"] == "cam1"
    assert hubt.media.peers[peer_id].room_id == "camera:cam1"
    assert renegotiate == {"type": "renegotiate", "tracks": {"video": 1}, "camera_id": "cam1"}

    await viewer.send({"type": "unwatch", "camera_id": "cam1"})
    await viewer.send({"type": "ping"})
    await viewer.expect("pong")
    assert peer_id in hubt.media.closed


async def test_a_site_needs_a_site_directory_and_an_existing_site(hubt: HubUnderTest) -> None:
    viewer = hubt.client(headers=hubt.auth.staff("agent-1"))
    await viewer.connect()
    await viewer.send({"type": "join", "site_id": "nowhere"})
    assert (await viewer.expect("error"))["code"] == "not_found"

    async with HubUnderTest(with_sites=False) as no_sites:
        camera = no_sites.client()
        await camera.connect()
        await camera.send({"type": "join", "camera_token": "anything"})
        assert (await camera.expect("error"))["code"] == "unauthorized"


async def test_site_events_reach_everyone_in_the_site_room(hubt: HubUnderTest) -> None:
    hubt.sites.add_site("s1", "Warehouse", "cam1")
    viewer, _ = await site_viewer(hubt)
    camera = hubt.client()
    await camera.join(camera_token=hubt.sites.camera_token("s1", "cam1"))

    event = {"type": "camera", "camera_id": "cam1", "status": {"online": True}}
    await hubt.hub.publish_to_site("s1", event)

    assert await viewer.expect("camera") == event
    assert await camera.expect("camera") == event


# -- the hub's lifetime ---------------------------------------------------------------------


async def test_closing_the_hub_closes_every_socket_with_going_away(hubt: HubUnderTest) -> None:
    _, customer, agent = await in_call(hubt)
    assert hubt.hub.connection_count == 2

    await hubt.hub.aclose()

    for participant in (customer, agent):
        assert await closed_with(participant) == 1001
    await until(lambda: hubt.hub.connection_count == 0)
    async with hubt.session.get(hubt.base_url + "/ws") as response:
        assert response.status == 503, "no new sockets while shutting down"


async def test_the_wire_format_is_plain_json(hubt: HubUnderTest) -> None:
    """What the pages parse: exactly these bytes for an error (key order included)."""
    ws = await hubt.session.ws_connect(hubt.ws_url)
    await ws.send_str('{"type": "ping"}')
    raw = await ws.receive_str()
    await ws.close()
    assert raw == json.dumps(
        {
            "type": "error",
            "code": "not_joined",
            "message": "the first message must be 'join'",
            "ref": "ping",
        }
    )
