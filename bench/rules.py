"""Return rules benchmark: what a case event costs with a rule table, in this process (SQLite).

    python bench/rules.py [--rules 50] [--cases 300] [--json]

Two figures per table size:

- **evaluation**: :func:`server.returns.evaluate` of the table on one case's facts at one
  moment (pure: the conditions of every rule that runs at that moment), per call;
- **case event**: ``ReturnsService.verify`` on a case (the verified reason written, its timeline
  entry, the table evaluated and every matching action applied, each one a transaction with its
  timeline entry and webhook row), against the same call with an empty table (the baseline,
  measured in the same run on the same database).

The generated tables mix every condition kind (reasons, numbers, labels, the mismatch); about
one rule in eight matches a case (two actions each), so the actions written are those of a busy
table.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

if not __package__:
    # Run by path (python bench/rules.py): import from the repository root.
    sys.path[0] = str(Path(__file__).resolve().parent.parent)

from bench._stats import percentile  # noqa: E402
from server.cases import CaseKind, CaseService, NewCase  # noqa: E402
from server.returns import ReturnReason, ReturnsService, Trigger, check, evaluate  # noqa: E402
from server.storage.sqlite import Database, SqliteCaseStore, SqliteRulesStore  # noqa: E402

REASONS = [reason.value for reason in ReturnReason]
CARRIERS = ["UPS", "DHL", "FedEx", "DPD", "GLS"]


def table(n: int, seed: int = 7) -> dict[str, Any]:
    """``n`` rules over every condition kind; actions that write (hold, route, webhook)."""
    rng = random.Random(seed)
    rules = []
    for index in range(n):
        when: dict[str, Any] = {"verified_reason": {"in": rng.sample(REASONS, 2)}}
        if index % 3 == 0:
            when["order_value"] = {"gte": rng.choice([20, 50, 100, 200])}
        if index % 4 == 1:
            when["carrier"] = {"any": [rng.choice(CARRIERS).lower()]}
        if index % 5 == 2:
            when["mismatch"] = True
        then = [
            {"action": "webhook", "event": f"erp.rule{index}"},
            {"action": "route_disposition", "channel": rng.choice(["restock", "discount"])},
        ]
        rules.append({"id": f"r{index}", "on": ["verified"], "when": when, "then": then})
    return {"rules": rules, "alerts": []}


def facts(rng: random.Random) -> dict[str, Any]:
    claimed, verified = rng.choice(REASONS), rng.choice(REASONS)
    return {
        "claimed_reason": claimed, "verified_reason": verified, "mismatch": claimed != verified,
        "grade": rng.choice("ABCD"), "damage": ["scratch"], "sku": f"SKU-{rng.randrange(50)}",
        "category": "audio", "order_value": rng.uniform(5, 400), "refund_amount": None,
        "country": "DE", "carrier": rng.choice(CARRIERS), "stage": "in_call", "decision": None,
        "past_returns": rng.randrange(4),
    }  # fmt: skip


def bench_evaluation(n_rules: int, calls: int = 20_000) -> dict[str, float]:
    checked = check(table(n_rules))
    rng = random.Random(1)
    samples = [facts(rng) for _ in range(1000)]
    matched = 0
    started = time.perf_counter()
    for index in range(calls):
        matched += len(evaluate(checked, samples[index % len(samples)], Trigger.VERIFIED))
    elapsed = time.perf_counter() - started
    return {"us_per_call": elapsed / calls * 1e6, "matches_per_call": matched / calls}


async def _verify_times(
    directory: Path, body: dict[str, Any] | None, cases: int
) -> tuple[list[float], int]:
    db = await Database.open(directory / "inspect.db")
    try:
        service = CaseService(SqliteCaseStore(db))
        returns = ReturnsService(service, SqliteRulesStore(db))
        if body is not None:
            await returns.save(body, actor="bench", note=None)
        rng = random.Random(3)
        times: list[float] = []
        actions = 0
        for _ in range(cases):
            case = await service.create(
                NewCase(
                    CaseKind.RETURN, "Bench", claimed_reason=rng.choice(REASONS),
                    order_value=None, carrier=rng.choice(CARRIERS),
                ),
                actor="bench",
            )  # fmt: skip
            reason = ReturnReason(rng.choice(REASONS))
            started = time.perf_counter()
            await returns.verify(case.id, reason, actor="bench", note=None)
            times.append(time.perf_counter() - started)
            events = await service.events(case.id)
            actions += sum(1 for e in events if e.type == "returns.rule_action")
        return times, actions
    finally:
        await db.aclose()


async def bench_events(n_rules: int, cases: int) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as base, tempfile.TemporaryDirectory() as ruled:
        baseline, _ = await _verify_times(Path(base), None, cases)
        timed, actions = await _verify_times(Path(ruled), table(n_rules), cases)
    return {
        "baseline_p50_ms": percentile(baseline, 50) * 1000,
        "baseline_p95_ms": percentile(baseline, 95) * 1000,
        "rules_p50_ms": percentile(timed, 50) * 1000,
        "rules_p95_ms": percentile(timed, 95) * 1000,
        "actions_per_event": actions / cases,
        "ratio_p50": percentile(timed, 50) / percentile(baseline, 50),
    }


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rules", default="10,50,200", help="table sizes, comma-separated")
    parser.add_argument("--cases", type=int, default=300, help="case events per table size")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON too")
    args = parser.parse_args()
    sizes = [int(part) for part in args.rules.split(",") if part.strip()]
    figures: dict[str, Any] = {}
    print(f"{'rules':>6} {'eval us':>9} {'matches':>8} {'event p50 ms':>13} {'p95':>7} "
          f"{'empty p50':>10} {'p95':>7} {'actions':>8} {'x empty':>8}")  # fmt: skip
    for size in sizes:
        pure = bench_evaluation(size)
        event = await bench_events(size, args.cases)
        figures[str(size)] = {**pure, **event}
        print(
            f"{size:>6} {pure['us_per_call']:>9.1f} {pure['matches_per_call']:>8.2f} "
            f"{event['rules_p50_ms']:>13.2f} {event['rules_p95_ms']:>7.2f} "
            f"{event['baseline_p50_ms']:>10.2f} {event['baseline_p95_ms']:>7.2f} "
            f"{event['actions_per_event']:>8.2f} {event['ratio_p50']:>8.2f}"
        )
    if args.json:
        print(json.dumps(figures, indent=2))


if __name__ == "__main__":
    asyncio.run(main())
