"""One configuration of ``bench/sockets.py``: the client processes, the schedule they join
and chat by, CPU snapshots of everything that runs, and the figures and errors of the run."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import secrets
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

from bench._proc import machine_busy_s, process_cpu_s, process_rss_mb, wait_quiet
from bench._sockets_nodes import (
    Layout,
    Node,
    RedisTarget,
    admin_token,
    inspectd_nodes,
    node_metrics,
    setup,
)
from bench._stats import percentile

__all__ = ["QUIET_PCT", "Outcome", "run_config"]

CHILD = Path(__file__).resolve().parent / "_sockets_clients.py"
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


# -- the client processes ------------------------------------------------------------------------


class ClientProcess:
    """One ``bench/_sockets_clients.py`` process: JSON lines over its stdin and stdout."""

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
        figures["busy_before_pct"] = await wait_quiet(args.quiet_wait, QUIET_PCT, interval_s=1.0)
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
