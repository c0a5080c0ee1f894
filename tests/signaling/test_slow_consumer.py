"""A client that stops reading cannot make the server buffer without bound: its socket's
outbound queue is bounded, and past it the socket is closed (4008: reconnect and resume)."""

from __future__ import annotations

import asyncio
import json

import aiohttp

from signaling import CloseCode, HubConfig
from tests.fakes.signaling_hub import HubUnderTest
from tests.waits import until

OUTBOX_LIMIT = 16
#: Far more than the socket's queue, the transport's buffer and the kernel's loopback buffers
#: hold together (a few MiB), so that the queue must overflow.
EVENTS = 512
PAD = "x" * 64_000


async def test_a_client_that_stops_reading_is_closed_instead_of_buffered() -> None:
    async with HubUnderTest(HubConfig(outbox_limit=OUTBOX_LIMIT)) as under_test:
        case_id = under_test.cases.create().case_id
        slow = await under_test.session.ws_connect(under_test.ws_url)
        token = under_test.auth.join_token(case_id)
        await slow.send_str(json.dumps({"type": "join", "token": token}))
        joined = json.loads((await slow.receive()).data)
        assert joined["type"] == "joined"

        # The room gets far more than the socket can take while its client reads nothing.
        event = {"type": "case", "case": {"case_id": case_id, "pad": PAD}}
        for _ in range(EVENTS):
            await under_test.bus.publish(f"room:{case_id}", event)
            await asyncio.sleep(0)  # let the socket's pump move the event to its queue

        # Once the client reads again, it finds the close telling it to resume, after only
        # part of what was published: the rest was never buffered for it.
        received = 0
        async with asyncio.timeout(20):
            while True:
                message = await slow.receive()
                if message.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED):
                    break
                received += 1
        assert slow.close_code == CloseCode.LAGGING
        assert received < EVENTS, "the server kept everything for the slow client"
        await until(lambda: under_test.hub.connection_count == 0, what="the socket stayed")
