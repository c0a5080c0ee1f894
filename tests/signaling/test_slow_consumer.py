"""A client that stops reading cannot make the server buffer without bound: its socket's
outbound queue is bounded, and past it the socket is closed (4008: reconnect and resume)."""

from __future__ import annotations

import asyncio
import json

import aiohttp

from signaling.hub import CLOSE_LAGGING, OUTBOX_LIMIT
from tests.conftest import LiveService
from tests.signaling._redis_buses import eventually


async def test_a_client_that_stops_reading_is_closed_instead_of_buffered(
    live_service: LiveService,
) -> None:
    async with aiohttp.ClientSession() as session:
        created = await live_service.create_case(session)
        case_id = str(created["case"]["id"])  # type: ignore[index]
        ws_url = live_service.base_url.replace("http", "ws", 1) + "/ws"
        slow = await session.ws_connect(ws_url)
        await slow.send_str(json.dumps({"type": "join", "token": created["join_token"]}))
        joined = json.loads((await slow.receive()).data)
        assert joined["type"] == "joined"

        hub = live_service.state.hub
        [conn] = [c for c in hub._connections if c.participant_id == joined["participant_id"]]
        # The room gets far more than the socket can take while its client reads nothing.
        event = {"type": "case", "case": {"case_id": case_id, "pad": "x" * 16_000}}
        deepest = 0
        for _ in range(4 * OUTBOX_LIMIT):
            await hub.bus.publish(f"room:{case_id}", event)
            await asyncio.sleep(0)  # let the socket's pump move events to its queue
            deepest = max(deepest, conn._outbox.qsize())
            if conn.closing:
                break
        assert conn.closing, "the slow socket was never given up"
        assert deepest == OUTBOX_LIMIT, "it was its outbound queue that filled up"

        # Once the client reads again, it finds the close telling it to resume.
        async with asyncio.timeout(20):
            while True:
                message = await slow.receive()
                if message.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED):
                    break
        assert slow.close_code == CLOSE_LAGGING

        async def dropped() -> bool:
            return hub.connection_count == 0

        await eventually(dropped, within=10)
