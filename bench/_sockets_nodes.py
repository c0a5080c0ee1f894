"""The service under ``bench/sockets.py``: the Redis its nodes share, the ``inspectd serve``
nodes themselves (their logs and metrics), and the setup through the REST API (one return case
and one logged-in agent per pair of clients)."""

from __future__ import annotations

import asyncio
import contextlib
import re
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import redis

from bench._inspectd import Server, inspectd_command, spawn, stop_all
from tests.redis_server import RedisProcess, start_redis

__all__ = [
    "Layout",
    "Node",
    "RedisTarget",
    "admin_token",
    "inspectd_nodes",
    "node_metrics",
    "setup",
]

LOCAL_REDIS = ("127.0.0.1", 6379)
AGENT_PASSWORD = "bench-agent-pass"
#: Concurrent REST requests while setting up (cases, accounts, logins).
SETUP_CONCURRENCY = 16
#: Log lines of a node that count as errors.
LOG_ERROR = re.compile(r" (ERROR|CRITICAL) |^Traceback ")


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
