"""What ``bench/sockets.py`` prints: one column of figures per configuration, the errors, the
notes on noise, and the method and machine; the same as JSON."""

from __future__ import annotations

import argparse
import os
import platform
import shlex
import sys
from typing import Any

import aiohttp

from bench._proc import cpu_model
from bench._sockets_nodes import RedisTarget
from bench._sockets_run import QUIET_PCT, Outcome

__all__ = ["report"]


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
