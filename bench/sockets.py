"""Signaling at scale (issue 7): many WebSocket clients joining across nodes, then chatting.

Starts ``inspectd serve`` nodes as subprocesses on free loopback ports, sharing one fresh data
directory and one Redis (the machine's own at 127.0.0.1:6379 with a fresh key prefix when it
answers, else a ``redis-server`` started for the run; the prefix's keys are deleted after).
Through the REST API (an admin token from ``inspectd add-token``) it creates one return case
and one agent account per pair of clients, and logs each agent in on its node. API rate limits
are raised for the nodes (``INSPECT_API_RATE_PER_S``/``INSPECT_API_BURST``) so that this setup
is not throttled; the measured phases do not use the API.

Then the clients (aiohttp WebSockets, in ``--client-procs`` processes of their own,
``bench/_signaling_clients.py``) open their sockets at evenly spaced times over
``--join-window`` seconds: per case, the customer joins with its token (it lands in the case's
room; the case waits in the queue) and, one slot later, its agent joins the lobby with its
session cookie, waits for its case in a ``queue`` message, sends ``accept`` and lands in the
room. Customers are spread over the nodes by case, agents by pairs of cases, so with two nodes
half the rooms have their customer on one node and their agent on the other (cross-node).

Measured: joins per second (answered joins over the time from the first join sent to the last
answered), join latency (``join`` sent -> ``joined``; the agent's join is to the lobby), socket
connect time, ``accept`` -> ``joined`` in the room; then every client chats at ``--chat-rate``
messages a second for ``--chat-s`` seconds: messages sent and delivered per second, delivery
latency to the room's peer (same-node and cross-node rooms apart) and back to the sender (the
room's echo, which carries the seq); and errors of every kind: ``error`` messages, sockets the
server closed, timeouts, chat that never arrived, arrived twice, out of order, with a gap in
the room's seqs or a different message behind a seq at the two ends, and ERROR lines or
tracebacks in the nodes' logs. Memory per connection: each node's VmRSS (``/proc``) after the
clients joined minus before they connected, over the sockets it holds (from ``/metrics``).
CPU of the nodes, Redis, the client processes and the whole machine, per phase.

    .venv/bin/python bench/signaling.py [--clients 1000] [--nodes 1,2] [--json PATH] [--quick]

``--nodes 1,2`` (the default) runs one node (the baseline, same Redis bus) and then two, each
with a fresh data directory, key prefix and processes. Exits 1 if any error occurred (figures
are still printed).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import re
import secrets
import shlex
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
CHILD = ROOT / "bench" / "_signaling_clients.py"
# Run as a script from the repository root: make the test helpers importable.
sys.path.insert(0, str(ROOT))

import aiohttp  # noqa: E402
import redis  # noqa: E402

from bench._inspectd import Server, inspectd_command, spawn, stop_all  # noqa: E402
from bench._stats import percentile  # noqa: E402
from tests.redis_server import RedisProcess, start_redis  # noqa: E402

CLK_TCK = os.sysconf("SC_CLK_TCK")
LOCAL_REDIS = ("127.0.0.1", 6379)
AGENT_PASSWORD = "bench-agent-pass"
#: Concurrent REST requests while setting up (cases, accounts, logins).
SETUP_CONCURRENCY = 16
#: Log lines of a node that count as errors.
LOG_ERROR = re.compile(r" (ERROR|CRITICAL) |^Traceback ")
#: Busy share of the machine (% of one core) under which it counts as quiet before a run, and
#: CPU of other processes during a phase above which the phase is flagged as noisy.
QUIET_PCT = 25.0


# -- statistics ----------------------------------------------------------------------------------


def summary(values: list[float]) -> dict[str, float] | None:
    """min, p50, p95, p99, max, mean and n of samples in seconds, as milliseconds."""
    if not values:
        return None
    ms = [value * 1000 for value in values]
    return {
        "n": len(ms),
        "min": min(ms),
        "p50": percentile(ms, 50),
        "p95": percentile(ms, 95),
        "p99": percentile(ms, 99),
        "max": max(ms),
        "mean": sum(ms) / len(ms),
    }


# -- the machine ---------------------------------------------------------------------------------


def cpu_model() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def process_cpu_s(pid: int) -> float:
    """User + system CPU seconds of a process, all its threads (``/proc/<pid>/stat``)."""
    with contextlib.suppress(OSError):
        stat = Path(f"/proc/{pid}/stat").read_text()
        fields = stat[stat.rindex(")") + 2 :].split()
        return (int(fields[11]) + int(fields[12])) / CLK_TCK
    return 0.0


def process_rss_mb(pid: int) -> float:
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def machine_busy_s() -> float:
    """Busy CPU seconds of the whole machine, all cores (``/proc/stat``)."""
    values = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]
    return (sum(values) - values[3] - values[4]) / CLK_TCK


async def wait_quiet(limit_s: float, busy_pct: float = QUIET_PCT) -> float:
    """Wait (at most ``limit_s``) until the machine is nearly idle, so that another workload
    does not land in the measured phases; returns the last busy share (% of a core)."""
    deadline = time.monotonic() + limit_s
    while True:
        before, t0 = machine_busy_s(), time.monotonic()
        await asyncio.sleep(1.0)
        busy = 100 * (machine_busy_s() - before) / (time.monotonic() - t0)
        if busy < busy_pct or time.monotonic() > deadline:
            return busy


# -- Redis ---------------------------------------------------------------------------------------


def _answers(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(16).startswith(b"+PONG")
    except OSError:
        return False


@dataclass(slots=True)
class RedisTarget:
    """The Redis the nodes share: the machine's own (``own`` is None) or one started here."""

    url: str
    own: RedisProcess | None

    @classmethod
    def find(cls) -> RedisTarget:
        if _answers(*LOCAL_REDIS):
            return cls(f"redis://{LOCAL_REDIS[0]}:{LOCAL_REDIS[1]}/0", None)
        server = start_redis()
        return cls(server.url, server)

    def client(self) -> redis.Redis:
        return redis.Redis.from_url(self.url)

    def info(self) -> dict[str, Any]:
        with self.client() as client:
            return dict(client.info())

    def cpu_s(self) -> float:
        info = self.info()
        return float(info["used_cpu_sys"]) + float(info["used_cpu_user"])

    def count_prefix(self, prefix: str) -> int:
        with self.client() as client:
            return sum(1 for _ in client.scan_iter(match=f"{prefix}*", count=1000))

    def delete_prefix(self, prefix: str) -> int:
        removed = 0
        with self.client() as client:
            batch: list[bytes] = []
            for key in client.scan_iter(match=f"{prefix}*", count=1000):
                batch.append(key)
                if len(batch) >= 500:
                    removed += int(client.unlink(*batch))
                    batch.clear()
            if batch:
                removed += int(client.unlink(*batch))
        return removed

    def close(self) -> None:
        if self.own is not None:
            self.own.stop()

    @property
    def described(self) -> str:
        where = "started for this run" if self.own is not None else "the machine's own"
        return f"{self.url} ({where})"


# -- the nodes -----------------------------------------------------------------------------------


@dataclass(slots=True)
class Node(Server):
    index: int = 0

    @property
    def ws_url(self) -> str:
        return self.base_url.replace("http", "ws", 1) + "/ws"

    def log_problems(self) -> tuple[list[str], list[str]]:
        """(error lines and tracebacks, warning lines) of the node's log."""
        errors: list[str] = []
        warnings: list[str] = []
        with contextlib.suppress(OSError):
            for line in self.log_path.read_text(errors="replace").splitlines():
                if LOG_ERROR.search(line):
                    errors.append(line)
                elif " WARNING " in line:
                    warnings.append(line)
        return errors, warnings


@contextlib.contextmanager
def inspectd_nodes(count: int, env: dict[str, str], data_dir: Path) -> Iterator[list[Node]]:
    """``count`` ``inspectd serve`` processes sharing ``env``; SIGTERM on exit."""
    nodes: list[Node] = []
    try:
        for index in range(count):
            log_path = data_dir / f"node-{index}.log"
            node = spawn(Node, f"node {index}", env, log_path, index=index)
            nodes.append(node)
            # One after another, as in a rolling start: each has answered /healthz (and created
            # what it creates in the shared data dir) before the next starts.
            node.wait_healthy_blocking(60)
        yield nodes
    finally:
        stop_all(nodes, timeout_s=20)


def admin_token(env: dict[str, str]) -> str:
    done = subprocess.run(
        [inspectd_command(), "add-token", "bench-signaling"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    if done.returncode != 0:
        raise SystemExit(f"bench: inspectd add-token failed: {done.stderr.strip()}")
    return done.stdout.strip().splitlines()[-1].strip()


_METRIC = re.compile(r'^inspect_ws_messages_total\{direction="(\w+)",type="([^"]*)"\} (\S+)$')


async def node_metrics(node: Node, client: aiohttp.ClientSession) -> dict[str, float]:
    """The node's open sockets and its /ws message counters (``in:chat``, ``out:chat``...)."""
    async with client.get(f"{node.base_url}/metrics") as response:
        text = await response.text()
    found: dict[str, float] = {}
    for line in text.splitlines():
        if line.startswith("inspect_ws_connections "):
            found["connections"] = float(line.split()[1])
        elif match := _METRIC.match(line):
            found[f"{match[1]}:{match[2]}"] = float(match[3])
    return found


# -- setup through the REST API ------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Layout:
    """Which node each pair's customer and agent use."""

    nodes: int

    def customer_node(self, pair: int) -> int:
        return pair % self.nodes

    def agent_node(self, pair: int) -> int:
        # Agents go by pairs of cases, so that half the rooms span two nodes.
        return (pair // 2) % self.nodes


async def _post(
    client: aiohttp.ClientSession,
    url: str,
    body: dict[str, Any],
    headers: dict[str, str],
) -> tuple[dict[str, Any], aiohttp.ClientResponse]:
    async with client.post(url, json=body, headers=headers) as response:
        if response.status not in (200, 201):
            raise SystemExit(f"bench: POST {url}: {response.status} {await response.text()}")
        return await response.json(), response


async def setup(
    nodes: list[Node], token: str, pairs: int, run_id: str
) -> tuple[list[dict[str, Any]], dict[str, float]]:
    """One return case and one logged-in agent per pair; the seconds each step took."""
    layout = Layout(len(nodes))
    bearer = {"Authorization": f"Bearer {token}"}
    gate = asyncio.Semaphore(SETUP_CONCURRENCY)
    timings: dict[str, float] = {}
    plan: list[dict[str, Any]] = [{} for _ in range(pairs)]
    async with aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar()) as client:

        async def case(i: int) -> None:
            body = {
                "kind": "return",
                "customer_name": f"Bench Customer {i}",
                "order_id": f"BENCH-{run_id}-{i}",
                "reason": "signaling bench",
            }
            async with gate:
                node = nodes[layout.customer_node(i)]
                created, _ = await _post(client, f"{node.base_url}/api/cases", body, bearer)
            plan[i]["case_id"] = created["case"]["id"]
            plan[i]["token"] = created["join_token"]

        async def agent(i: int) -> None:
            node = nodes[layout.agent_node(i)]
            username = f"bench-agent-{i}"
            body = {
                "username": username,
                "password": AGENT_PASSWORD,
                "name": f"Bench Agent {i}",
                "role": "agent",
            }
            async with gate:
                await _post(client, f"{node.base_url}/api/users", body, bearer)

        async def login(i: int) -> None:
            node = nodes[layout.agent_node(i)]
            body = {"username": f"bench-agent-{i}", "password": AGENT_PASSWORD}
            async with gate:
                _, response = await _post(client, f"{node.base_url}/api/login", body, {})
            morsel = response.cookies.get("inspect_session")
            if morsel is None:
                raise SystemExit(f"bench: login of agent {i} set no session cookie")
            plan[i]["cookie"] = f"inspect_session={morsel.value}"

        for step, make in (("cases", case), ("agents", agent), ("logins", login)):
            started = time.perf_counter()
            async with asyncio.TaskGroup() as group:
                for i in range(pairs):
                    group.create_task(make(i))
            timings[step] = time.perf_counter() - started
    return plan, timings


# -- the client processes ------------------------------------------------------------------------


class ClientProcess:
    """One ``bench/_signaling_clients.py`` process: JSON lines over its stdin and stdout."""

    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self.process = process

    @classmethod
    async def start(cls) -> ClientProcess:
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            str(CHILD),
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            limit=64 * 1024 * 1024,
        )
        child = cls(process)
        await child.expect("hello", 30)
        return child

    @property
    def pid(self) -> int:
        return self.process.pid

    def tell(self, document: dict[str, Any]) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write((json.dumps(document) + "\n").encode())

    async def expect(self, key: str, wait_s: float) -> Any:
        assert self.process.stdout is not None
        async with asyncio.timeout(wait_s):
            line = await self.process.stdout.readline()
        if not line:
            raise SystemExit(
                f"bench: client process {self.pid} exited ({await self.process.wait()}) "
                f"before '{key}'"
            )
        document = json.loads(line)
        if key not in document:
            raise SystemExit(f"bench: client process said {list(document)}, expected {key}")
        return document[key]

    async def aclose(self) -> None:
        if self.process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self.process.kill()
            await self.process.wait()


# -- one configuration ---------------------------------------------------------------------------


@dataclass(slots=True)
class Snapshot:
    """CPU seconds of everything that runs, at one moment."""

    wall: float
    nodes: list[float]
    redis: float
    clients: list[float]
    machine: float

    @classmethod
    def take(cls, nodes: list[Node], target: RedisTarget | None, clients: list[int]) -> Snapshot:
        return cls(
            wall=time.monotonic(),
            nodes=[process_cpu_s(node.process.pid) for node in nodes],
            redis=target.cpu_s() if target is not None else 0.0,
            clients=[process_cpu_s(pid) for pid in clients],
            machine=machine_busy_s(),
        )


def cpu_share(first: Snapshot, second: Snapshot) -> dict[str, Any]:
    """% of one core over the interval: per node, Redis, clients (together), whole machine."""
    span = max(second.wall - first.wall, 1e-6)

    def pct(a: float, b: float) -> float:
        return 100 * (b - a) / span

    return {
        "seconds": span,
        "nodes": [pct(a, b) for a, b in zip(first.nodes, second.nodes, strict=True)],
        "redis": pct(first.redis, second.redis),
        "clients": pct(sum(first.clients), sum(second.clients)),
        "machine": pct(first.machine, second.machine),
        # Everything else on the machine (other jobs, the bench's own process): noise.
        "other": pct(first.machine, second.machine)
        - pct(sum(first.nodes), sum(second.nodes))
        - pct(first.redis, second.redis)
        - pct(sum(first.clients), sum(second.clients)),
    }


@dataclass(slots=True)
class Outcome:
    """What one configuration measured (JSON-ready) and what went wrong."""

    label: str
    figures: dict[str, Any] = field(default_factory=dict)
    errors: dict[str, int] = field(default_factory=dict)
    examples: dict[str, list[str]] = field(default_factory=dict)

    def add_error(self, category: str, count: int, examples: list[str]) -> None:
        if count <= 0:
            return
        self.errors[category] = self.errors.get(category, 0) + count
        kept = self.examples.setdefault(category, [])
        kept.extend(examples[: max(0, 5 - len(kept))])


def _merge(parts: list[dict[str, Any]], key: str) -> list[float]:
    merged: list[float] = []
    for part in parts:
        merged.extend(part[key])
    return merged


async def drive(
    args: argparse.Namespace,
    nodes: list[Node],
    target: RedisTarget | None,
    token: str,
    prefix: str,
    outcome: Outcome,
) -> None:
    pairs = args.clients // 2
    figures = outcome.figures
    async with aiohttp.ClientSession() as client:
        for node in nodes:
            await node.wait_healthy(client, 60)
        plan, timings = await setup(nodes, token, pairs, secrets.token_hex(3))
        figures["setup_s"] = timings
        # Build the schedule: client k of all opens at k * slot; a case's agent right after
        # its customer.
        layout = Layout(len(nodes))
        slot = args.join_window / args.clients
        per_process: list[list[dict[str, Any]]] = [[] for _ in range(args.client_procs)]
        for i, entry in enumerate(plan):
            customer, agent = layout.customer_node(i), layout.agent_node(i)
            per_process[i % args.client_procs].append(
                {
                    "index": i,
                    "case_id": entry["case_id"],
                    "token": entry["token"],
                    "customer_ws": nodes[customer].ws_url,
                    "agent_ws": nodes[agent].ws_url,
                    "cookie": entry["cookie"],
                    "customer_at": 2 * i * slot,
                    "agent_at": (2 * i + 1) * slot,
                    "cross": customer != agent,
                }
            )
        figures["rooms"] = {
            "total": pairs,
            "cross_node": sum(
                1 for i in range(pairs) if layout.customer_node(i) != layout.agent_node(i)
            ),
        }
        # After the setup's work (password hashing), and with no other job on the machine.
        figures["busy_before_pct"] = await wait_quiet(args.quiet_wait)
        before = [await node_metrics(node, client) for node in nodes]
        rss_before = [process_rss_mb(node.process.pid) for node in nodes]
        redis_before = target.info()["used_memory"] if target is not None else 0
        children: list[ClientProcess] = []
        try:
            for _ in range(args.client_procs):
                children.append(await ClientProcess.start())
            pids = [child.pid for child in children]
            t0 = time.time() + 0.5
            figures["t0_unix"] = t0
            for child, mine in zip(children, per_process, strict=True):
                child.tell(
                    {
                        "plan": {
                            "t0": t0,
                            "timeout_s": args.timeout,
                            "chat_s": args.chat_s,
                            "chat_rate": args.chat_rate,
                            "drain_s": args.drain,
                            "pairs": mine,
                        }
                    }
                )
            await asyncio.sleep(max(0.0, t0 - time.time()))
            join_start = Snapshot.take(nodes, target, pids)
            wait_s = args.join_window + args.timeout + 30
            ready = [await child.expect("ready", wait_s) for child in children]
            join_end = Snapshot.take(nodes, target, pids)
            joined = [await node_metrics(node, client) for node in nodes]
            rss_joined = [process_rss_mb(node.process.pid) for node in nodes]
            redis_joined = target.info()["used_memory"] if target is not None else 0
            if target is not None:
                figures["redis_keys_joined"] = target.count_prefix(prefix)

            chat_at = time.time() + 1.0
            for child in children:
                child.tell({"chat_at": chat_at})
            await asyncio.sleep(max(0.0, chat_at - time.time()))
            chat_start = Snapshot.take(nodes, target, pids)
            await asyncio.sleep(max(0.0, chat_at + args.chat_s - time.time()))
            chat_end = Snapshot.take(nodes, target, pids)
            results = [
                await child.expect("result", args.chat_s + args.drain + 60) for child in children
            ]
            after = [await node_metrics(node, client) for node in nodes]
            rss_after = [process_rss_mb(node.process.pid) for node in nodes]
            for child in children:
                child.tell({"close": True})
            closed = [await child.expect("closed", 60) for child in children]
            for child in children:
                await child.process.wait()
        finally:
            for child in children:
                await child.aclose()
        # The server side lets go of every socket.
        deadline = time.monotonic() + 10
        while True:
            left = [await node_metrics(node, client) for node in nodes]
            if not any(m.get("connections", 0) for m in left) or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.1)

    # -- joins
    join_sent_at = _merge(ready, "join_sent_at")
    joined_at = _merge(ready, "joined_at")
    join_customer = [s for part in ready for s in part["join_s"]["customer"]]
    join_agent = [s for part in ready for s in part["join_s"]["agent"]]
    span = (max(joined_at) - min(join_sent_at)) if joined_at else 0.0
    figures["joins"] = {
        "clients": args.clients,
        "answered": len(joined_at),
        "in_rooms": sum(part["ready"] for part in ready),
        "offered_per_s": args.clients / args.join_window,
        "per_s": len(joined_at) / span if span > 0 else None,
        "span_s": span,
        "join_ms": summary(join_customer + join_agent),
        "join_customer_ms": summary(join_customer),
        "join_agent_lobby_ms": summary(join_agent),
        "connect_ms": summary(_merge(ready, "connect_s")),
        "queue_wait_ms": summary(_merge(ready, "queue_wait_s")),
        "accept_ms": summary(_merge(ready, "accept_s")),
        "client_lag_ms": [part["lag_ms"] for part in ready],
    }
    # -- chat
    sent = sum(part["sent"] for part in results)
    same = _merge(results, "same_s")
    cross = _merge(results, "cross_s")
    figures["chat"] = {
        "rate_per_client": args.chat_rate,
        "seconds": args.chat_s,
        "sent": sent,
        "sent_per_s": sent / args.chat_s,
        "delivered": len(same) + len(cross),
        "delivered_per_s": (len(same) + len(cross)) / args.chat_s,
        "delivered_cross": len(cross),
        "echoed": sum(part["echoed"] for part in results),
        "peer_ms": summary(same + cross),
        "peer_same_node_ms": summary(same),
        "peer_cross_node_ms": summary(cross),
        "echo_ms": summary(_merge(results, "echo_s")),
        "drain_s": max(part["drained_at"] - part["sending_ended_at"] for part in results),
        "client_lag_ms": [part["lag_ms"] for part in results],
        "received_by_type": _sum_counts([part["received"] for part in results]),
        "received_bytes_by_type": _sum_counts([part["received_bytes"] for part in results]),
    }
    # -- server side
    connections = [m.get("connections", 0.0) for m in joined]
    total = sum(connections)
    delta_mb = [b - a for a, b in zip(rss_before, rss_joined, strict=True)]
    figures["memory"] = {
        "rss_before_mb": rss_before,
        "rss_joined_mb": rss_joined,
        "rss_after_chat_mb": rss_after,
        "connections": connections,
        "kib_per_connection": [
            1024 * d / c if c else None for d, c in zip(delta_mb, connections, strict=True)
        ],
        "kib_per_connection_all": 1024 * sum(delta_mb) / total if total else None,
        "redis_kib_per_connection": (redis_joined - redis_before) / 1024 / total
        if target is not None and total
        else None,
    }
    figures["cpu"] = {
        "join": cpu_share(join_start, join_end),
        "chat": cpu_share(chat_start, chat_end),
    }
    figures["server_messages"] = {
        key: sum(m.get(key, 0.0) for m in after) - sum(m.get(key, 0.0) for m in before)
        for key in sorted({k for m in after for k in m if ":" in k})
    }
    figures["server_sockets_left"] = sum(m.get("connections", 0.0) for m in left)

    # -- errors: the clients' (cumulative, so the last report has them all) and the server's
    final = [part["errors"] for part in closed]
    for part in final:
        for category, count in part["counts"].items():
            outcome.add_error(category, count, part["examples"].get(category, []))
    figures["join_phase_errors"] = _sum_counts([part["errors"]["counts"] for part in ready])
    if sent == 0:
        outcome.add_error("no_chat", 1, ["no chat message was sent"])
    if figures.get("redis_keys_joined") == 0:
        outcome.add_error(
            "redis_unused",
            1,
            [
                f"with {args.clients} sockets joined the nodes had written no key under their"
                " Redis prefix: they do not share state through Redis (a MemoryBus built"
                " despite INSPECT_REDIS_URL?)"
            ],
        )
    if figures["server_sockets_left"]:
        outcome.add_error(
            "server_sockets_left",
            int(figures["server_sockets_left"]),
            ["sockets still open on the nodes 10 s after the clients closed theirs"],
        )


def _sum_counts(parts: list[dict[str, int]]) -> dict[str, int]:
    total: dict[str, int] = {}
    for part in parts:
        for key, value in part.items():
            total[key] = total.get(key, 0) + int(value)
    return total


def run_config(args: argparse.Namespace, count: int, target: RedisTarget | None) -> Outcome:
    bus = "redis" if target is not None else "memory"
    outcome = Outcome(f"{count} node{'s' if count > 1 else ''}, {bus} bus")
    prefix = f"bench-signaling-{secrets.token_hex(4)}:"
    with tempfile.TemporaryDirectory(prefix="inspect-bench-signaling-") as folder:
        data_dir = Path(folder)
        env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("INSPECT_")},
            "INSPECT_DATA_DIR": str(data_dir / "data"),
            "INSPECT_LOG_LEVEL": "WARNING",
            "INSPECT_GRADING": "false",
            # Only the setup uses the API (one admin token for every case and account, every
            # login from 127.0.0.1): not throttled. The measured phases are all /ws.
            "INSPECT_API_RATE_PER_S": "100000",
            "INSPECT_API_BURST": "100000",
        }
        if target is not None:
            env["INSPECT_REDIS_URL"] = target.url
            env["INSPECT_REDIS_PREFIX"] = prefix
        token = admin_token(env)
        try:
            with inspectd_nodes(count, env, data_dir) as nodes:
                outcome.figures["nodes"] = [node.base_url for node in nodes]
                asyncio.run(drive(args, nodes, target, token, prefix, outcome))
            for node in nodes:
                errors, warnings = node.log_problems()
                outcome.add_error(f"node {node.index} log errors", len(errors), errors)
                outcome.figures.setdefault("node_log_warnings", []).append(
                    {"count": len(warnings), "first": warnings[:5]}
                )
            if outcome.errors or any(e["count"] for e in outcome.figures["node_log_warnings"]):
                kept = Path(tempfile.mkdtemp(prefix="bench-signaling-logs-"))
                for node in nodes:
                    shutil.copy(node.log_path, kept / node.log_path.name)
                outcome.figures["node_logs"] = str(kept)
        finally:
            if target is not None:
                outcome.figures["redis_keys_deleted"] = target.delete_prefix(prefix)
    return outcome


# -- the report ----------------------------------------------------------------------------------


def _ms(stats: dict[str, float] | None, keys: tuple[str, ...] = ("p50", "p95", "max")) -> str:
    if not stats:
        return "-"
    return " / ".join(f"{stats[key]:.1f}" for key in keys)


def _num(value: float | None, digits: int = 1) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _rows(outcome: Outcome) -> list[tuple[str, str]]:
    f = outcome.figures
    joins, chat, memory, cpu = f["joins"], f["chat"], f["memory"], f["cpu"]
    # Every change of the waiting list goes to every agent in the lobby, whole.
    queue_count = chat["received_by_type"].get("queue", 0)
    queue_mib = chat["received_bytes_by_type"].get("queue", 0) / 2**20
    lag_join = max(part["p99"] for part in joins["client_lag_ms"])
    lag_chat = max(part["p99"] for part in chat["client_lag_ms"])

    def cpus(phase: dict[str, Any]) -> str:
        nodes = " + ".join(f"{value:.0f}" for value in phase["nodes"])
        return (
            f"nodes {nodes}, redis {phase['redis']:.0f}, clients {phase['clients']:.0f}, "
            f"other {max(0.0, phase['other']):.0f} (of {100 * (os.cpu_count() or 1)})"
        )

    return [
        ("rooms (cross-node)", f"{f['rooms']['total']} ({f['rooms']['cross_node']})"),
        ("joins answered / clients", f"{joins['answered']} / {joins['clients']}"),
        ("agents in their case's room", str((joins["accept_ms"] or {}).get("n", 0))),
        ("joins/s (offered)", f"{_num(joins['per_s'])} ({joins['offered_per_s']:.0f})"),
        ("join -> joined p50/p95/max ms", _ms(joins["join_ms"])),
        ("  customer (case room)", _ms(joins["join_customer_ms"])),
        ("  agent (lobby)", _ms(joins["join_agent_lobby_ms"])),
        ("ws connect p50/p95/max ms", _ms(joins["connect_ms"])),
        ("agent accept -> in room ms", _ms(joins["accept_ms"])),
        ("chat sent/s", _num(chat["sent_per_s"])),
        ("chat delivered to peer/s", _num(chat["delivered_per_s"])),
        ("peer delivery p50/p95/max ms", _ms(chat["peer_ms"])),
        ("  same-node rooms", _ms(chat["peer_same_node_ms"])),
        ("  cross-node rooms", _ms(chat["peer_cross_node_ms"])),
        ("echo to sender p50/p95/max ms", _ms(chat["echo_ms"])),
        ("errors (all kinds)", str(sum(outcome.errors.values()))),
        ("lobby queue msgs to agents (MiB)", f"{queue_count} ({queue_mib:.1f})"),
        ("node RSS before -> joined MB", ", ".join(
            f"{a:.0f} -> {b:.0f}"
            for a, b in zip(memory["rss_before_mb"], memory["rss_joined_mb"], strict=True)
        )),
        ("sockets per node", ", ".join(f"{c:.0f}" for c in memory["connections"])),
        ("memory per connection KiB", _num(memory["kib_per_connection_all"])),
        ("  per node", ", ".join(_num(v) for v in memory["kib_per_connection"])),
        ("redis memory per conn. KiB", _num(memory["redis_kib_per_connection"])),
        ("CPU % of a core, joins", cpus(cpu["join"])),
        ("CPU % of a core, chat", cpus(cpu["chat"])),
        ("client loop lag p99 ms", f"joins {lag_join:.1f}, chat {lag_chat:.1f}"),
        ("setup s (cases/agents/logins)", " / ".join(f"{v:.1f}" for v in f["setup_s"].values())),
    ]  # fmt: skip


def report(
    args: argparse.Namespace, outcomes: list[Outcome], target: RedisTarget | None
) -> dict[str, Any]:
    print(
        f"signaling: {args.clients} clients ({args.clients // 2} return cases: customer + agent),"
        f" joins spread over {args.join_window:g} s, then chat at {args.chat_rate:g} msg/s per"
        f" client for {args.chat_s:g} s"
    )
    tables = [_rows(outcome) for outcome in outcomes]
    width = max(len(name) for name, _ in tables[0]) + 2
    columns = [
        max(len(outcome.label), *(len(value) for _, value in table)) + 2
        for outcome, table in zip(outcomes, tables, strict=True)
    ]
    print(
        " " * width
        + "".join(o.label.ljust(c) for o, c in zip(outcomes, columns, strict=True)).rstrip()
    )
    for row, (name, _) in enumerate(tables[0]):
        cells = "".join(table[row][1].ljust(c) for table, c in zip(tables, columns, strict=True))
        print(f"{name:<{width}}{cells}".rstrip())
    for outcome in outcomes:
        for category, count in sorted(outcome.errors.items()):
            print(f"ERROR {outcome.label}: {category} x{count}")
            for example in outcome.examples.get(category, []):
                print(f"    {example}")
        busy = outcome.figures.get("busy_before_pct", 0.0)
        if busy >= QUIET_PCT:
            print(f"note {outcome.label}: the machine was busy ({busy:.0f}% of a core) at start")
        for phase, share in outcome.figures.get("cpu", {}).items():
            if share["other"] > QUIET_PCT:
                print(
                    f"note {outcome.label}: NOISY {phase} phase: other processes used "
                    f"{share['other']:.0f}% of a core beside the bench's"
                )
        if "node_logs" in outcome.figures:
            kept = outcome.figures["node_logs"]
            print(f"note {outcome.label}: the nodes' logs are kept in {kept}")
        for index, entry in enumerate(outcome.figures.get("node_log_warnings", [])):
            if entry["count"]:
                print(f"note {outcome.label}: node {index} logged {entry['count']} warnings:")
                for line in entry["first"]:
                    print(f"    {line}")
    machine = {
        "python": platform.python_version(),
        "aiohttp": aiohttp.__version__,
        "redis": target.info()["redis_version"] if target is not None else None,
        "cpus": os.cpu_count(),
        "cpu": cpu_model(),
        "platform": platform.platform(terse=True),
    }
    method = (
        "method: inspectd serve nodes on loopback sharing a fresh data dir and (redis bus) "
        f"Redis {target.described if target is not None else '-'} under a fresh key prefix; "
        f"{args.client_procs} aiohttp client process(es); latencies are perf_counter "
        "differences in the client process (both ends of a room live there); memory = node "
        "VmRSS after the joins minus before, over the node's open sockets; CPU from /proc "
        "(Redis: INFO cpu, the whole server) as % of one core; INSPECT_LOG_LEVEL=WARNING, "
        "grading off"
    )
    print(method)
    print("machine: " + ", ".join(f"{key} {value}" for key, value in machine.items()))
    command = shlex.join([sys.executable, *sys.argv])
    print(f"command: {command}")
    return {
        "clients": args.clients,
        "join_window_s": args.join_window,
        "chat_s": args.chat_s,
        "chat_rate": args.chat_rate,
        "client_procs": args.client_procs,
        "configs": [
            {
                "label": o.label,
                "figures": o.figures,
                "errors": o.errors,
                "error_examples": o.examples,
            }
            for o in outcomes
        ],
        "method": method,
        "machine": machine,
        "command": command,
    }


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--clients", type=int, default=1000, help="sockets, even (1000)")
    parser.add_argument(
        "--nodes",
        default="1,2",
        choices=("1", "2", "1,2", "2,1"),
        help="node counts to run, in order (1,2: the one-node baseline, then two nodes)",
    )
    parser.add_argument("--join-window", type=float, default=10.0, help="seconds (10)")
    parser.add_argument("--chat-s", type=float, default=20.0, help="seconds of chat (20)")
    parser.add_argument("--chat-rate", type=float, default=1.0, help="msg/s per client (1)")
    parser.add_argument("--client-procs", type=int, default=2, help="client processes (2)")
    parser.add_argument("--timeout", type=float, default=15.0, help="per join, seconds (15)")
    parser.add_argument("--drain", type=float, default=5.0, help="wait for late chat, s (5)")
    parser.add_argument(
        "--quiet-wait",
        type=float,
        default=120.0,
        help=f"wait at most this long for the machine to be quiet (< {QUIET_PCT:g}%% of a core)"
        " before each configuration's clients start (120)",
    )
    parser.add_argument(
        "--memory-bus",
        action="store_true",
        help="run the one-node configuration on the embedded memory bus instead of Redis",
    )
    parser.add_argument("--json", type=Path, metavar="PATH", help="also write the figures here")
    parser.add_argument(
        "--quick", action="store_true", help="smoke run: 100 clients, 2 s of joins, 5 s of chat"
    )
    return parser


def main() -> int:
    args = _parser().parse_args()
    if args.quick:
        args.clients, args.join_window, args.chat_s = 100, 2.0, 5.0
    if args.clients < 2 or args.clients % 2:
        raise SystemExit("bench: --clients must be an even number >= 2 (customer + agent)")
    if args.join_window <= 0 or args.chat_s <= 0 or not 0 < args.chat_rate <= 20:
        raise SystemExit("bench: --join-window > 0, --chat-s > 0, 0 < --chat-rate <= 20")
    if not 1 <= args.client_procs <= args.clients // 2:
        raise SystemExit("bench: --client-procs between 1 and the number of cases")
    counts = [int(part) for part in args.nodes.split(",")]
    memory = [count == 1 and args.memory_bus for count in counts]
    target = None if all(memory) else RedisTarget.find()
    outcomes: list[Outcome] = []
    try:
        for count, on_memory in zip(counts, memory, strict=True):
            outcomes.append(run_config(args, count, None if on_memory else target))
    except KeyboardInterrupt:
        print("bench: interrupted", file=sys.stderr)
        return 130
    finally:
        figures = report(args, outcomes, target) if outcomes else None
        if target is not None:
            target.close()
    if args.json is not None and figures is not None:
        args.json.write_text(json.dumps(figures, indent=2) + "\n")
        print(f"figures written to {args.json}")
    return 1 if any(outcome.errors for outcome in outcomes) else 0


if __name__ == "__main__":
    sys.exit(main())
