"""Signaling at scale: many WebSocket clients joining across nodes, then chatting.

Starts ``inspectd serve`` nodes as subprocesses on free loopback ports, sharing one fresh data
directory and one Redis (the machine's own at 127.0.0.1:6379 with a fresh key prefix when it
answers, else a ``redis-server`` started for the run; the prefix's keys are deleted after).
Through the REST API (an admin token from ``inspectd add-token``) it creates one return case
and one agent account per pair of clients, and logs each agent in on its node. API rate limits
are raised for the nodes (``INSPECT_API_RATE_PER_S``/``INSPECT_API_BURST``) so that this setup
is not throttled; the measured phases do not use the API.

Then the clients (aiohttp WebSockets, in ``--client-procs`` processes of their own,
``bench/_sockets_clients.py``) open their sockets at evenly spaced times over
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

    .venv/bin/python bench/sockets.py [--clients 1000] [--nodes 1,2] [--json PATH] [--quick]
    .venv/bin/python -m bench.sockets --quick

``--nodes 1,2`` (the default) runs one node (the baseline, same Redis bus) and then two, each
with a fresh data directory, key prefix and processes. Exits 1 if any error occurred (figures
are still printed).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if not __package__:
    # Run by path (python bench/sockets.py): import from the repository root, as
    # ``python -m bench.sockets`` does, never from bench/ itself.
    sys.path[0] = str(ROOT)

from bench._sockets_nodes import RedisTarget  # noqa: E402
from bench._sockets_report import report  # noqa: E402
from bench._sockets_run import QUIET_PCT, Outcome, run_config  # noqa: E402


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
