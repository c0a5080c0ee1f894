"""The WebSocket clients of ``bench/sockets.py``, in a process of their own so that their CPU
time and event-loop lag are measured apart from the bench's and the nodes'.

    python bench/_sockets_clients.py     (driven by bench/sockets.py over stdin/stdout)

Each pair is one return case: its customer (join token) and its agent (session cookie). The
customer joins its case's room; the agent joins the lobby, waits until its case is in a
``queue`` message, sends ``accept`` and lands in the room (``accepted``, ``joined``). Every
socket opens at its own scheduled time. Then both chat at a fixed rate; every message is
checked at both ends: the sender's own copy (the room's echo, with its ``seq``) and the peer's.

Protocol, one JSON object per line:

- out ``{"hello": pid}`` once imported; in ``{"plan": {...}}`` (see :class:`Plan`)
- out ``{"ready": {...}}`` once every socket has joined (and every agent entered its room) or
  failed; in ``{"chat_at": <unix time>}``
- out ``{"result": {...}}`` after the chat and its drain; in ``{"close": true}``
- out ``{"closed": {...}}``, then the process exits

Times that two processes compare are Unix times; latencies are ``perf_counter`` differences
taken in this process (the sender and the receiver of a chat message are both here).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

if not __package__:
    # Run by path (as bench/sockets.py starts it): import from the repository root, never from
    # bench/ itself.
    sys.path[0] = str(Path(__file__).resolve().parent.parent)

from bench._stats import LagProbe  # noqa: E402

#: Kept per error category, to say what went wrong.
EXAMPLES_PER_CATEGORY = 5


@dataclass(frozen=True, slots=True)
class Pair:
    index: int
    case_id: str
    token: str
    customer_ws: str
    agent_ws: str
    cookie: str
    #: Seconds after the plan's ``t0`` at which each socket opens.
    customer_at: float
    agent_at: float
    cross: bool


@dataclass(frozen=True, slots=True)
class Plan:
    t0: float
    timeout_s: float
    chat_s: float
    chat_rate: float
    drain_s: float
    pairs: tuple[Pair, ...]

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Plan:
        pairs = tuple(Pair(**pair) for pair in data.pop("pairs"))
        return cls(pairs=pairs, **data)


@dataclass(slots=True)
class Errors:
    counts: Counter[str] = field(default_factory=Counter)
    examples: dict[str, list[str]] = field(default_factory=dict)

    def add(self, category: str, detail: str) -> None:
        self.counts[category] += 1
        kept = self.examples.setdefault(category, [])
        if len(kept) < EXAMPLES_PER_CATEGORY:
            kept.append(detail)


@dataclass(slots=True)
class Sent:
    """One chat message: who sent it and when (``perf_counter``)."""

    at: float
    sender: Socket
    echoed: bool = False
    delivered: bool = False


class Socket:
    """One client WebSocket: a customer or an agent of one pair."""

    def __init__(self, run: Run, pair: Pair, role: str) -> None:
        self.run = run
        self.pair = pair
        self.role = role
        self.url = pair.customer_ws if role == "customer" else pair.agent_ws
        self.ws: aiohttp.ClientWebSocketResponse | None = None
        self.participant_id: str | None = None
        self.closing = False
        self.reader: asyncio.Task[None] | None = None
        loop = asyncio.get_running_loop()
        #: The first ``joined`` (the customer's room, the agent's lobby) and the agent's room.
        self.joined: asyncio.Future[float] = loop.create_future()
        self.in_room: asyncio.Future[float] = loop.create_future()
        for future in (self.joined, self.in_room):
            # A failure nobody waits for any more (a timeout came first) is counted elsewhere.
            future.add_done_callback(lambda done: done.cancelled() or done.exception())
        self.case_queued = asyncio.Event()
        self.sent_ids: list[str] = []
        #: seq -> client_id of every chat message this socket was sent, in arrival order.
        self.seqs: list[int] = []
        self.by_seq: dict[int, str] = {}
        self.how: dict[int, str] = {}

    def __repr__(self) -> str:
        where = "cross-node" if self.pair.cross else "same-node"
        return f"{self.role} of case {self.pair.case_id} (pair {self.pair.index}, {where} room)"

    async def send(self, document: dict[str, Any]) -> None:
        assert self.ws is not None
        await self.ws.send_str(json.dumps(document))

    async def read(self) -> None:
        assert self.ws is not None
        try:
            async for message in self.ws:
                if message.type == aiohttp.WSMsgType.TEXT:
                    now = time.perf_counter()
                    document = json.loads(message.data)
                    self.run.received_bytes[str(document.get("type"))] += len(message.data)
                    self.on_message(document, now)
                elif message.type == aiohttp.WSMsgType.ERROR:
                    self.run.errors.add("socket_error", f"{self}: {self.ws.exception()!r}")
        except Exception as exc:  # a bench records every failure and goes on
            self.run.errors.add("socket_error", f"{self}: {type(exc).__name__}: {exc}")
        finally:
            if not self.closing:
                self.run.errors.add(
                    "closed_by_server", f"{self}: socket closed, code {self.ws.close_code}"
                )
            gone = ConnectionError(f"socket closed (code {self.ws.close_code})")
            for future in (self.joined, self.in_room):
                if not future.done():
                    future.set_exception(gone)

    def on_message(self, document: dict[str, Any], now: float) -> None:
        kind = document.get("type")
        self.run.received[str(kind)] += 1
        if kind == "joined":
            self.participant_id = str(document["participant_id"])
            for record in document.get("chat") or []:
                self.on_chat(record, now, "in joined's history")
            target = self.in_room if document.get("case") is not None else self.joined
            if self.role == "customer":
                target = self.joined
            if not target.done():
                target.set_result(now)
        elif kind == "queue":
            if any(case.get("case_id") == self.pair.case_id for case in document["cases"]):
                self.case_queued.set()
        elif kind == "chat":
            self.on_chat(document, now, "live")
        elif kind == "error":
            code, ref = document.get("code"), document.get("ref")
            self.run.errors.add(
                f"error:{code}", f"{self}: {code} ({ref}): {document.get('message')}"
            )
            failed = RuntimeError(f"error {code}: {document.get('message')}")
            if ref == "join" and not self.joined.done():
                self.joined.set_exception(failed)
            if ref == "accept" and not self.in_room.done():
                self.in_room.set_exception(failed)

    def on_chat(self, record: dict[str, Any], now: float, how: str) -> None:
        seq = int(record["seq"])
        client_id = str(record["client_id"])
        self.seqs.append(seq)
        if seq in self.by_seq:
            self.run.errors.add(
                "chat_duplicate",
                f"{self}: seq {seq} ({client_id}) twice: {self.how[seq]}, then {how}",
            )
            return
        self.by_seq[seq] = client_id
        self.how[seq] = how
        sent = self.run.sent.get(client_id)
        if sent is None:
            self.run.errors.add("chat_unknown", f"{self}: seq {seq} {client_id!r} never sent")
            return
        latency = now - sent.at
        if sent.sender is self:
            sent.echoed = True
            self.run.echo_s.append(latency)
        elif sent.sender.pair is self.pair:
            sent.delivered = True
            (self.run.cross_s if self.pair.cross else self.run.same_s).append(latency)
        else:
            self.run.errors.add("chat_wrong_room", f"{self}: got {client_id} of another room")
            return
        self.run.outstanding -= 1
        if self.run.outstanding == 0 and self.run.all_sent:
            self.run.drained.set()

    async def close(self) -> None:
        self.closing = True
        if self.ws is not None:
            await self.ws.close()
        if self.reader is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await self.reader


class Run:
    """Every socket of this process and what they measured."""

    def __init__(self, plan: Plan, session: aiohttp.ClientSession) -> None:
        self.plan = plan
        self.session = session
        self.loop = asyncio.get_running_loop()
        # The plan's Unix times as this loop's clock.
        self.loop_t0 = self.loop.time() + (plan.t0 - time.time())
        self.errors = Errors()
        self.received: Counter[str] = Counter()
        self.received_bytes: Counter[str] = Counter()
        self.sent: dict[str, Sent] = {}
        self.connect_s: list[float] = []
        self.join_s: dict[str, list[float]] = {"customer": [], "agent": []}
        self.accept_s: list[float] = []
        self.queue_wait_s: list[float] = []
        #: Unix times at which a join was sent / answered (joins per second across processes).
        self.join_sent_at: list[float] = []
        self.joined_at: list[float] = []
        self.echo_s: list[float] = []
        self.same_s: list[float] = []
        self.cross_s: list[float] = []
        self.outstanding = 0
        self.all_sent = False
        self.drained = asyncio.Event()
        self.sockets: list[Socket] = []
        self.ready: list[Socket] = []

    async def _sleep_until(self, loop_time: float) -> None:
        delay = loop_time - self.loop.time()
        if delay > 0:
            await asyncio.sleep(delay)

    async def _open(self, socket: Socket, at: float, headers: dict[str, str]) -> None:
        await self._sleep_until(self.loop_t0 + at)
        started = time.perf_counter()
        socket.ws = await self.session.ws_connect(
            socket.url, headers=headers, heartbeat=None, autoping=True, max_msg_size=0
        )
        self.connect_s.append(time.perf_counter() - started)
        socket.reader = asyncio.create_task(socket.read(), name=f"read-{socket.role}")

    async def _join(self, socket: Socket, document: dict[str, Any]) -> None:
        self.join_sent_at.append(time.time())
        sent = time.perf_counter()
        await socket.send(document)
        joined = await socket.joined
        self.joined_at.append(time.time())
        self.join_s[socket.role].append(joined - sent)

    async def customer(self, pair: Pair) -> None:
        socket = Socket(self, pair, "customer")
        self.sockets.append(socket)
        try:
            async with asyncio.timeout(self.plan.timeout_s + pair.customer_at):
                await self._open(socket, pair.customer_at, {})
                await self._join(socket, {"type": "join", "token": pair.token})
        except Exception as exc:
            self._failed(socket, "customer join", exc)
            return
        self.ready.append(socket)

    async def agent(self, pair: Pair) -> None:
        socket = Socket(self, pair, "agent")
        self.sockets.append(socket)
        step = "agent join"
        try:
            async with asyncio.timeout(self.plan.timeout_s + pair.agent_at):
                await self._open(socket, pair.agent_at, {"Cookie": pair.cookie})
                await self._join(socket, {"type": "join"})
                step = "agent waiting for its case in the queue"
                waited = time.perf_counter()
                await socket.case_queued.wait()
                self.queue_wait_s.append(time.perf_counter() - waited)
                step = "agent accept"
                sent = time.perf_counter()
                await socket.send({"type": "accept", "case_id": pair.case_id})
                in_room = await socket.in_room
                self.accept_s.append(in_room - sent)
        except Exception as exc:
            self._failed(socket, step, exc)
            return
        self.ready.append(socket)

    def _failed(self, socket: Socket, step: str, exc: BaseException) -> None:
        if isinstance(exc, TimeoutError):
            self.errors.add("timeout", f"{socket}: {step}: no answer in time")
        elif isinstance(exc, aiohttp.ClientError | OSError):
            self.errors.add("connect_failed", f"{socket}: {step}: {type(exc).__name__}: {exc}")
        elif not isinstance(exc, RuntimeError | ConnectionError):
            # Errors and closes the reader saw are counted there; anything else counts here.
            self.errors.add("client_failure", f"{socket}: {step}: {type(exc).__name__}: {exc}")

    async def joins(self) -> dict[str, Any]:
        async with asyncio.TaskGroup() as group:
            for pair in self.plan.pairs:
                group.create_task(self.customer(pair), name=f"customer-{pair.index}")
                group.create_task(self.agent(pair), name=f"agent-{pair.index}")
        return {
            "sockets": len(self.sockets),
            "ready": len(self.ready),
            "connect_s": self.connect_s,
            "join_s": self.join_s,
            "accept_s": self.accept_s,
            "queue_wait_s": self.queue_wait_s,
            "join_sent_at": self.join_sent_at,
            "joined_at": self.joined_at,
        }

    async def _chat(self, socket: Socket, start: float, count: int, phase: float) -> None:
        interval = 1.0 / self.plan.chat_rate
        for n in range(count):
            await self._sleep_until(start + phase + n * interval)
            if socket.ws is None or socket.ws.closed:
                self.errors.add("chat_not_sent", f"{socket}: socket closed before chat {n}")
                return
            client_id = f"{socket.role[0]}{socket.pair.index}-{n}"
            text = f"message {n} from the {socket.role} of case {socket.pair.case_id}"
            self.sent[client_id] = Sent(time.perf_counter(), socket)
            socket.sent_ids.append(client_id)
            self.outstanding += 2  # the sender's own copy and the peer's
            try:
                await socket.send({"type": "chat", "client_id": client_id, "text": text})
            except (aiohttp.ClientError, ConnectionError, RuntimeError) as exc:
                self.errors.add("chat_not_sent", f"{socket}: {type(exc).__name__}: {exc}")
                self.outstanding -= 2
                return

    async def chat(self, chat_at: float) -> dict[str, Any]:
        start = self.loop.time() + (chat_at - time.time())
        count = max(1, round(self.plan.chat_s * self.plan.chat_rate))
        rng = random.Random(len(self.ready))
        async with asyncio.TaskGroup() as group:
            for socket in self.ready:
                phase = rng.uniform(0, 1.0 / self.plan.chat_rate)
                group.create_task(self._chat(socket, start, count, phase))
        sending_ended = time.time()
        self.all_sent = True
        if self.outstanding == 0:
            self.drained.set()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(self.plan.drain_s):
                await self.drained.wait()
        drained_at = time.time()
        self._check_rooms()
        sent = sum(len(socket.sent_ids) for socket in self.ready)
        return {
            "sent": sent,
            "sent_cross": sum(len(s.sent_ids) for s in self.ready if s.pair.cross),
            "delivered_same": len(self.same_s),
            "delivered_cross": len(self.cross_s),
            "echoed": len(self.echo_s),
            "same_s": self.same_s,
            "cross_s": self.cross_s,
            "echo_s": self.echo_s,
            "sending_ended_at": sending_ended,
            "drained_at": drained_at,
            "outstanding": self.outstanding,
        }

    def _check_rooms(self) -> None:
        """Every message reached both ends, once each, and both saw the room's seqs in order
        and with the same message behind each seq."""
        for sent in self.sent.values():
            if not sent.echoed:
                self.errors.add("chat_lost_echo", f"{sent.sender}: own message never came back")
            if not sent.delivered:
                self.errors.add("chat_lost", f"{sent.sender}: a message never reached the peer")
        rooms: dict[int, list[Socket]] = {}
        for socket in self.ready:
            rooms.setdefault(socket.pair.index, []).append(socket)
        for sockets in rooms.values():
            for socket in sockets:
                swaps = [
                    (a, b) for a, b in zip(socket.seqs, socket.seqs[1:], strict=False) if b <= a
                ]
                if swaps:
                    shown = ", ".join(f"{b} after {a}" for a, b in swaps[:5])
                    self.errors.add("chat_out_of_order", f"{socket}: seq {shown}")
                expected = sum(len(s.sent_ids) for s in sockets)
                if len(sockets) == 2 and socket.by_seq.keys() != set(range(1, expected + 1)):
                    missing = sorted(set(range(1, expected + 1)) - socket.by_seq.keys())
                    self.errors.add("chat_seq_gap", f"{socket}: seqs missing {missing[:20]}")
            if len(sockets) == 2:
                first, second = sockets
                shared = first.by_seq.keys() & second.by_seq.keys()
                if any(first.by_seq[seq] != second.by_seq[seq] for seq in shared):
                    self.errors.add(
                        "chat_seq_mismatch", f"{first} and {second} disagree on a seq's message"
                    )

    async def aclose(self) -> dict[str, Any]:
        # Ours, from now on: a close is not the server's doing.
        for socket in self.sockets:
            socket.closing = True
        await asyncio.gather(*(socket.close() for socket in self.sockets), return_exceptions=True)
        return {"closed": len(self.sockets)}


def _write(document: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(document) + "\n")
    sys.stdout.flush()


async def _read_line(reader: asyncio.StreamReader) -> dict[str, Any]:
    line = await reader.readline()
    if not line:
        raise SystemExit("bench clients: the bench went away")
    document: dict[str, Any] = json.loads(line)
    return document


async def main() -> None:
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=64 * 1024 * 1024)  # the plan is one line
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    _write({"hello": True})
    plan = Plan.from_json((await _read_line(reader))["plan"])
    probe = LagProbe("clients-lag-probe")
    probe.start()
    # No pool limit (each socket holds its connection); cookies go in each agent's header.
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(
        connector=connector, cookie_jar=aiohttp.DummyCookieJar()
    ) as session:
        run = Run(plan, session)
        ready = await run.joins()
        _write({"ready": {**ready, "lag_ms": probe.take(), "errors": _errors(run)}})
        chat_at = float((await _read_line(reader))["chat_at"])
        probe.take()  # the wait between the phases is nobody's lag
        chat = await run.chat(chat_at)
        result = {
            **chat,
            "lag_ms": probe.take(),
            "received": dict(run.received),
            "received_bytes": dict(run.received_bytes),
        }
        _write({"result": {**result, "errors": _errors(run)}})
        await _read_line(reader)
        closed = await run.aclose()
    await probe.aclose()
    _write({"closed": {**closed, "errors": _errors(run)}})


def _errors(run: Run) -> dict[str, Any]:
    return {"counts": dict(run.errors.counts), "examples": run.errors.examples}


if __name__ == "__main__":
    asyncio.run(main())
