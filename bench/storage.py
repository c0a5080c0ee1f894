"""Storage benchmark: the case lifecycle and evidence appends on SQLite and PostgreSQL.

    python bench/storage.py [--cases 600] [--clients 16] [--appends 200] [--json]

Cases: ``--clients`` concurrent agents per node each take a case through what a support
centre does to it: created, the customer arrives (waiting), an agent accepts it, the agent
decides it; each step is the domain's call (``CaseService``) on the configured store, with its
timeline entry and webhook outbox row in the same transaction. Measured on SQLite (one node:
the embedded default), PostgreSQL with one node and with two nodes (two processes, one
database; ``--cases`` is the total, split between them). Printed: each step's rate (steps per
second over the whole run) and p95 latency, and each configuration against SQLite's figures
measured in the same run.

Evidence: four processes append ``--appends`` log entries each to one archive (each append
checks and catches up with the others' entries first): SQLite with its file lock, PostgreSQL
with its advisory lock. Printed: appends per second, and whether the log is one unforked tree
of all of them.

PostgreSQL: ``INSPECT_TEST_POSTGRES_URL``, else the one at 127.0.0.1:5432 (database ``test``),
else one started from Debian's binaries for the run; each configuration gets its own schema.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

if not __package__:
    # Run by path (python bench/storage.py): import from the repository root.
    sys.path[0] = str(Path(__file__).resolve().parent.parent)

from bench._proc import cpu_model  # noqa: E402
from bench._stats import percentile  # noqa: E402

STEPS = ("create", "accept", "decide")


@dataclass(frozen=True, slots=True)
class NodeJob:
    data_dir: str
    database_url: str
    schema: str
    cases: int
    clients: int


def _node(job: NodeJob, start: Any, results: Any) -> None:
    """One node's process: the case lifecycle, ``job.clients`` at a time."""
    results.put(asyncio.run(_run_node(job, start)))


async def _run_node(job: NodeJob, start: Any) -> dict[str, Any]:
    from server.cases import (
        CaseKind,
        CaseService,
        Cosmetic,
        Functional,
        NewCase,
        Packaging,
        ReturnDecision,
        ReturnFacts,
        ReturnVerdict,
    )
    from server.settings import Settings
    from server.wiring.storage import open_stores
    from signaling import Role
    from signaling.ports import Identity

    settings = Settings(
        data_dir=Path(job.data_dir), database_url=job.database_url, database_schema=job.schema
    )
    stores = await open_stores(settings)
    service = CaseService(stores.cases)
    facts = ReturnFacts(Cosmetic.LIGHT_WEAR, Functional.WORKS, Packaging.DAMAGED, True)
    verdict = ReturnVerdict(ReturnDecision.REFUND, facts)
    latencies: dict[str, list[float]] = {step: [] for step in STEPS}
    share, extra = divmod(job.cases, job.clients)

    async def client(index: int, count: int) -> None:
        agent = Identity(subject=f"u_agent{index}", name=f"Agent {index}", role=Role.AGENT)
        for n in range(count):
            t0 = time.perf_counter()
            case = await service.create(
                NewCase(CaseKind.RETURN, customer_name=f"Customer {index}-{n}", order_id=f"O{n}"),
                actor="bench",
            )
            t1 = time.perf_counter()
            await service.customer_arrived(case.id)
            t2 = time.perf_counter()
            await service.accept(case.id, agent)
            t3 = time.perf_counter()
            await service.decide(case.id, verdict, actor=agent.subject)
            t4 = time.perf_counter()
            latencies["create"].append(t1 - t0)
            latencies["accept"].append(t3 - t2)
            latencies["decide"].append(t4 - t3)

    try:
        await asyncio.to_thread(start.wait)
        began = time.perf_counter()
        await asyncio.gather(
            *(client(i, share + (1 if i < extra else 0)) for i in range(job.clients))
        )
        wall = time.perf_counter() - began
    finally:
        await stores.database.aclose()
    return {"wall_s": wall, "latencies": latencies}


def _run_nodes(jobs: list[NodeJob]) -> dict[str, Any]:
    """Start one process per job, let them go at once; their combined figures."""
    ctx = multiprocessing.get_context("spawn")
    start = ctx.Event()
    results = ctx.Queue()
    procs = [ctx.Process(target=_node, args=(job, start, results)) for job in jobs]
    for proc in procs:
        proc.start()
    time.sleep(0.5)  # all of them opened their stores and wait
    start.set()
    outcomes = [results.get(timeout=600) for _ in procs]
    for proc in procs:
        proc.join(30)
        if proc.exitcode != 0:
            raise SystemExit(f"a node process failed (exit {proc.exitcode})")
    wall = max(o["wall_s"] for o in outcomes)
    figures: dict[str, Any] = {"wall_s": round(wall, 2)}
    for step in STEPS:
        values = [v for o in outcomes for v in o["latencies"][step]]
        figures[step] = {
            "per_s": round(len(values) / wall, 1),
            "p95_ms": round(percentile(values, 95) * 1000, 2),
        }
    return figures


def _append_worker(data_dir: str, url: str, schema: str, count: int, start: Any, out: Any) -> None:
    out.put(asyncio.run(_append(data_dir, url, schema, count, start)))


async def _append(data_dir: str, url: str, schema: str, count: int, start: Any) -> float:
    from evidence.log import EntryKind
    from server.settings import Settings
    from server.wiring.storage import open_archive

    settings = Settings(data_dir=Path(data_dir), database_url=url, database_schema=schema)
    archive = await open_archive(settings)
    try:
        await asyncio.to_thread(start.wait)
        began = time.perf_counter()
        for n in range(count):
            await archive.log.append(
                EntryKind.LIVE_VIEWED,
                actor="bench",
                reason=f"append {os.getpid()}-{n}",
                item_id=None,
                fields={"n": n},
            )
        return time.perf_counter() - began
    finally:
        await archive.aclose()


def _appends(data_dir: str, url: str, schema: str, writers: int, count: int) -> dict[str, Any]:
    ctx = multiprocessing.get_context("spawn")
    start = ctx.Event()
    out = ctx.Queue()
    procs = [
        ctx.Process(target=_append_worker, args=(data_dir, url, schema, count, start, out))
        for _ in range(writers)
    ]
    for proc in procs:
        proc.start()
    time.sleep(1.0)
    start.set()
    walls = [out.get(timeout=600) for _ in procs]
    for proc in procs:
        proc.join(30)
    wall = max(walls)
    size = asyncio.run(_log_size(data_dir, url, schema))
    return {
        "appends_per_s": round(writers * count / wall, 1),
        "wall_s": round(wall, 2),
        "log_size": size,
        "one_tree": size == writers * count,
    }


async def _log_size(data_dir: str, url: str, schema: str) -> int:
    from server.settings import Settings
    from server.wiring.storage import open_archive

    archive = await open_archive(
        Settings(data_dir=Path(data_dir), database_url=url, database_schema=schema)
    )
    try:
        return await archive.refresh()
    finally:
        await archive.aclose()


def _postgres() -> tuple[str, Callable[[], None]]:
    from tests.postgres_server import LOCAL, LOCAL_URL, _answers, start_postgres

    configured = os.environ.get("INSPECT_TEST_POSTGRES_URL")
    if configured:
        return configured, lambda: None
    if _answers(*LOCAL):
        return LOCAL_URL, lambda: None
    server = start_postgres()
    return server.url, server.stop


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cases", type=int, default=600, help="cases per configuration")
    parser.add_argument("--clients", type=int, default=16, help="concurrent agents per node")
    parser.add_argument("--appends", type=int, default=200, help="log entries per writer")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    from tests.postgres_server import create_schema, drop_schemas

    url, stop = _postgres()
    schemas: list[str] = []
    report: dict[str, Any] = {"cpu": cpu_model(), "cores": os.cpu_count(), "cases": {}}
    try:
        with tempfile.TemporaryDirectory(prefix="bench-storage-") as tmp:
            configs = [("SQLite, 1 node", "", 1), ("PostgreSQL, 1 node", url, 1),
                       ("PostgreSQL, 2 nodes", url, 2)]  # fmt: skip
            for index, (name, database, nodes) in enumerate(configs):
                schema = asyncio.run(create_schema(url)) if database else ""
                if schema:
                    schemas.append(schema)
                data_dir = str(Path(tmp) / f"run{index}")
                share, extra = divmod(args.cases, nodes)
                jobs = [
                    NodeJob(data_dir, database, schema, share + (1 if n < extra else 0),
                            args.clients)
                    for n in range(nodes)
                ]  # fmt: skip
                report["cases"][name] = _run_nodes(jobs)
            evidence: dict[str, Any] = {}
            evidence["SQLite (file lock)"] = _appends(
                str(Path(tmp) / "ev-sqlite"), "", "", 4, args.appends
            )
            schema = asyncio.run(create_schema(url))
            schemas.append(schema)
            evidence["PostgreSQL (advisory lock)"] = _appends(
                str(Path(tmp) / "ev-pg"), url, schema, 4, args.appends
            )
            report["evidence_4_writers"] = evidence
    finally:
        if schemas:
            asyncio.run(drop_schemas(url, schemas))
        stop()

    if args.json:
        print(json.dumps(report, indent=2))
        return
    base = report["cases"]["SQLite, 1 node"]
    print(f"{report['cpu']} ({report['cores']} cores); {args.cases} cases per configuration,")
    print(f"{args.clients} concurrent agents per node")
    print(f"{'':22} " + "  ".join(f"{s + '/s':>9} {'p95 ms':>7} {'x SQLite':>8}" for s in STEPS))
    for name, figures in report["cases"].items():
        cells = []
        for step in STEPS:
            rate = figures[step]["per_s"]
            ratio = rate / base[step]["per_s"] if base[step]["per_s"] else 0.0
            cells.append(f"{rate:>9.1f} {figures[step]['p95_ms']:>7.1f} {ratio:>8.2f}")
        print(f"{name:22} " + "  ".join(cells))
    print(f"evidence log, 4 writer processes x {args.appends} appends:")
    for name, figures in report["evidence_4_writers"].items():
        tree = "one tree of all" if figures["one_tree"] else "FORKED OR LOST ENTRIES"
        print(f"  {name:28} {figures['appends_per_s']:>8.1f} appends/s ({tree}: "
              f"{figures['log_size']} entries)")  # fmt: skip


if __name__ == "__main__":
    main()
