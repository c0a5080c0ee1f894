"""What the multi-node tests share: scripted calls between participants on different nodes,
frame numbers decoded at the agent, chat checked in both directions; ``inspectd`` processes
started and waited for."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sys
from collections.abc import AsyncIterator, Iterator, Mapping
from pathlib import Path
from typing import Any

import aiohttp

from tests.fakes import NumberedVideoTrack, ToneAudioTrack, read_frame_number
from tests.fakes.signal_client import Participant

__all__ = [
    "INSPECTD",
    "Frames",
    "agent_participant",
    "chat_both_ways",
    "node_of",
    "process",
    "start_call",
    "unique",
]

_counter = iter(range(1, 1_000_000))


def unique(prefix: str) -> str:
    return f"{prefix}{next(_counter)}"


class Frames:
    """Frame numbers drawn by the customer's camera, decoded at a participant."""

    def __init__(self, participant: Participant) -> None:
        self.numbers: list[int] = []
        self._arrived = asyncio.Event()
        participant.on_video_frame = self._frame

    def _frame(self, frame: Any) -> None:
        number = read_frame_number(frame)
        if number is not None:
            self.numbers.append(number)
            self._arrived.set()

    async def more(self, count: int = 10, within: float = 15.0) -> list[int]:
        """Wait for ``count`` more decoded frames; returns them (in arrival order)."""
        start = len(self.numbers)
        try:
            async with asyncio.timeout(within):
                while len(self.numbers) < start + count:
                    self._arrived.clear()
                    await self._arrived.wait()
        except TimeoutError:
            raise AssertionError(
                f"only {len(self.numbers) - start} of {count} frames in {within}s "
                f"(last {self.numbers[-3:]})"
            ) from None
        return self.numbers[start:]


async def agent_participant(
    base_url: str, username: str, password: str, *, login_url: str | None = None
) -> Participant:
    """A staff participant on ``base_url`` (its own cookie jar), signed in on ``login_url``
    (default the same node)."""
    client = aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True))
    async with client.post(
        f"{login_url or base_url}/api/login", json={"username": username, "password": password}
    ) as response:
        assert response.status == 200, await response.text()
    return Participant(client, base_url)


async def start_call(customer: Participant, agent: Participant, case_id: str) -> Frames:
    """The customer joins and publishes a numbered camera and a tone; the agent (in the lobby)
    accepts and publishes a tone. Returns the frames the agent decodes."""
    await customer.join()
    await agent.join()
    await agent.expect("queue", where=lambda m: case_id in [c["case_id"] for c in m["cases"]])
    await customer.publish(NumberedVideoTrack(), ToneAudioTrack())
    frames = Frames(agent)
    await agent.send({"type": "accept", "case_id": case_id})
    await agent.expect("accepted")
    await agent.expect("joined")
    await agent.publish(ToneAudioTrack(frequency=660.0), receive_video=True)
    return frames


def _texts(messages: list[dict[str, Any]]) -> Iterator[str]:
    return (str(message["text"]) for message in messages)


async def chat_both_ways(
    customer: Participant, agent: Participant, tag: str, count: int = 3
) -> list[int]:
    """Each side sends ``count`` messages; each must reach the other side once, in order.
    Returns the seqs, which must rise without gaps."""
    seqs: list[int] = []
    for sender, receiver, who in ((customer, agent, "c"), (agent, customer, "a")):
        sent = [f"{tag} {who}{i}" for i in range(count)]
        for i, text in enumerate(sent):
            await sender.chat(text, client_id=f"{tag}-{who}{i}")
        got = [
            await receiver.expect("chat", where=lambda m, t=text: m["text"] == t) for text in sent
        ]
        assert list(_texts(got)) == sent
        seqs += [int(message["seq"]) for message in got]
    assert seqs == list(range(seqs[0], seqs[0] + len(seqs))), seqs
    return seqs


#: The service's command line, as the processes of a deployment run it.
INSPECTD = [sys.executable, "-m", "server.cli"]


@contextlib.asynccontextmanager
async def process(
    args: list[str], environ: Mapping[str, str], log: Path
) -> AsyncIterator[asyncio.subprocess.Process]:
    """An ``inspectd`` process logging to ``log``; stopped (SIGTERM, then SIGKILL) after."""
    with log.open("ab") as output:
        child = await asyncio.create_subprocess_exec(
            *INSPECTD, *args, env=dict(environ), stdout=output, stderr=output
        )
    try:
        yield child
    finally:
        if child.returncode is None:
            child.send_signal(signal.SIGTERM)
            try:
                async with asyncio.timeout(20):
                    await child.wait()
            except TimeoutError:
                child.kill()
                await child.wait()


async def node_of(base_url: str, log: Path, within: float = 30.0) -> str:
    """Wait until ``base_url`` answers ``/healthz``; the node that answered."""
    connector = aiohttp.TCPConnector(force_close=True)  # a new connection each time
    async with aiohttp.ClientSession(connector=connector) as session:
        try:
            async with asyncio.timeout(within):
                while True:
                    with contextlib.suppress(aiohttp.ClientError):
                        async with session.get(f"{base_url}/healthz") as response:
                            if response.status == 200:
                                return str((await response.json())["node"])
                    await asyncio.sleep(0.2)
        except TimeoutError:
            text = await asyncio.to_thread(log.read_text)
            raise AssertionError(f"{base_url} did not start:\n{text[-3000:]}") from None
