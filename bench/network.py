"""Network bench (issue 18): video and audio to the agent over impaired legs, peer to peer and
through the server, in the same run.

Each peer's UDP sits behind a leg of ``tests/fakes/impair.py`` (loss, one-way delay, a rate
cap, blackouts, applied in user space to every socket the peer gathers). The customer, an
aiortc peer, sends a numbered 320x240 camera at 15 fps and a 440 Hz tone; the agent, an aiortc
peer, receives them. Every cell is measured on two paths, one after the other, with legs of the
same conditions and seeds:

- ``direct``: the customer's peer offers straight to the agent's;
- ``server``: the real service runs in this process (``server.app.running_service``, a fresh
  data directory, grading and live captions off); the customer joins a case with its token,
  the agent (logged in) accepts it, the customer publishes and the agent receives only, the
  service forwarding the encoded media between its two peers. The legs impair the
  participants' peers only, so the service sits, unimpaired, between the two legs.

Figures, at the agent, over ``--seconds`` from its first video frame: delivered fps, freezes
(gaps between video frames over 500 ms: count and total seconds), recovery after a 2 s
blackout (from the blackout's end to the next frame), the share of the tone's 20 ms audio frames
that arrived, and glass-to-glass latency (median over the frames whose number reads back: the
agent's arrival of the decoded frame minus the moment the camera handed it to its sender, one
process, one clock). Medians over ``--repeats``; the line under each cell is server/direct for
each figure. Everything runs in one process on one event loop, so the peers, their codecs and
the service share the cores: figures measured on a loaded machine move together on both paths.
The peers' host candidates are the machine's own address, which the kernel routes through
``lo``: nothing leaves the machine.

Matrix: loss 0/2/5/10 % x one-way delay 0/100/150 ms on both legs; a blackout of the customer's
leg, then of the agent's; a 300 kbit/s and a 1 Mbit/s cap on the agent's leg.

    .venv/bin/python -m bench.network --quick          # 4 cells, 8 s, 1 repeat: about 2 minutes
    .venv/bin/python -m bench.network                  # 18 cells, 15 s, 3 repeats
    .venv/bin/python -m bench.network --cells loss5 --seconds 10 --repeats 2 --json out.json
    .venv/bin/python -m bench.network --cells none --chromium --seconds 8 --repeats 1

``--cells`` keeps the cells whose name contains the given text (comma-separated: any of them).
``--chromium`` adds, through the server only, a Chromium customer (``/usr/bin/chromium``
headless through playwright, its fake camera and microphone, on the real join page) whose
agent, an aiortc peer, sits behind a leg capped at 1 Mbit/s; Chromium's own sockets are not
impaired. For that cell: fps, freezes and audio share over ``--seconds`` after the first 5 s
(while Chromium's estimate ramps up), and the picture sizes that reached the agent; no
glass-to-glass (its frames carry no number).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from collections.abc import Awaitable
from dataclasses import asdict
from pathlib import Path
from typing import Any

if not __package__:
    # Run by path (python bench/network.py): import from the repository root, as
    # ``python -m bench.network`` does.
    sys.path[0] = str(Path(__file__).resolve().parent.parent)

from bench._netcall import (  # noqa: E402
    BROWSER_SETTLE_S,
    BrowserResult,
    Cell,
    Result,
    Service,
    median,
    run_chromium,
    run_direct,
    run_server,
    serving,
)
from tests.fakes.impair import Conditions  # noqa: E402

QUICK_CELLS = ("loss0-delay0", "loss5-delay100", "blackout-agent", "cap300k-agent")
PATHS = ("direct", "server")
#: The Chromium customer's cell: the agent's leg capped at this rate.
CHROMIUM_CAP_BPS = 1_000_000
_HEADER = (
    f"{'cell':20} {'path':7} {'fps':>5} {'freezes':>7} {'freeze s':>8} {'recovery s':>10} "
    f"{'audio %':>7} {'g2g ms':>7}"
)


def matrix() -> list[Cell]:
    """Every cell, in the order they run."""
    cells = []
    for loss in (0.0, 0.02, 0.05, 0.10):
        for delay in (0.0, 0.1, 0.15):
            both = Conditions(loss=loss, delay_s=delay)
            cells.append(Cell(f"loss{loss * 100:.0f}-delay{delay * 1000:.0f}", both, both))
    cells.append(Cell("blackout-customer", Conditions(), Conditions(), "customer"))
    cells.append(Cell("blackout-agent", Conditions(), Conditions(), "agent"))
    for rate in (300_000, 1_000_000):
        cells.append(Cell(f"cap{rate // 1000}k-agent", Conditions(), Conditions(rate_bps=rate)))
    return cells


def _number(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def _row(name: str, path: str, result: Result | None, failed: int) -> str:
    if result is None:
        return f"{name:20} {path:7} {'no call set up (' + str(failed) + ' failed)':>50}"
    line = (
        f"{name:20} {path:7} {result.fps:5.1f} {result.freezes:7.1f} {result.freeze_s:8.2f} "
        f"{_number(result.recovery_s, '.2f'):>10} {result.audio_share * 100:7.1f} "
        f"{_number(result.g2g_ms, '.0f'):>7}"
    )
    return line + (f"  ({failed} failed)" if failed else "")


def _ratio(server: float | None, direct: float | None, width: int) -> str:
    if server is None or direct is None:
        return f"{'-':>{width}}"
    if direct == 0:
        return f"{'=' if server == 0 else 'inf':>{width}}"
    return f"{server / direct:{width}.2f}"


def _ratio_row(direct: Result | None, server: Result | None) -> str:
    if direct is None or server is None:
        return f"{'':20} {'srv/dir':7} {'-':>5}"
    return (
        f"{'':20} {'srv/dir':7} {_ratio(server.fps, direct.fps, 5)} "
        f"{_ratio(server.freezes, direct.freezes, 7)} "
        f"{_ratio(server.freeze_s, direct.freeze_s, 8)} "
        f"{_ratio(server.recovery_s, direct.recovery_s, 10)} "
        f"{_ratio(server.audio_share, direct.audio_share, 7)} "
        f"{_ratio(server.g2g_ms, direct.g2g_ms, 7)}"
    )


async def _attempt(call: Awaitable[Result]) -> Result | None:
    """One call; ``None`` when it could not be set up (or broke) on its legs."""
    try:
        return await call
    except (TimeoutError, AssertionError) as exc:
        print(f"  call failed: {type(exc).__name__} {exc}", file=sys.stderr)
        return None


def _browser_rows(results: list[BrowserResult]) -> list[str]:
    rows = [
        f"\nchromium customer -> server -> aiortc agent, agent leg capped at "
        f"{CHROMIUM_CAP_BPS / 1000:.0f} kbit/s, after the first {BROWSER_SETTLE_S:g} s",
        f"{'run':>3} {'fps':>5} {'freezes':>7} {'freeze s':>8} {'audio %':>7}  "
        "picture at the agent",
    ]
    for index, r in enumerate(results, 1):
        rows.append(
            f"{index:>3} {r.fps:5.1f} {r.freezes:7d} {r.freeze_s:8.2f} "
            f"{r.audio_share * 100:7.1f}  {', '.join(r.sizes) or '-'}"
        )
    return rows


async def bench(
    cells: list[Cell], seconds: float, repeats: int, *, chromium: bool = False
) -> dict[str, Any]:
    """Run every cell ``repeats`` times on both paths (direct then server, so a slow spell of
    the machine meets both) and print the table as it goes; then, if asked, the Chromium
    customer's calls."""
    out: dict[str, Any] = {}
    if cells:
        print(_HEADER, flush=True)
    async with serving() as service:
        await _cells(service, cells, seconds, repeats, out)
        if chromium:
            browser = [
                await run_chromium(service, seconds, CHROMIUM_CAP_BPS) for _ in range(repeats)
            ]
            for row in _browser_rows(browser):
                print(row, flush=True)
            out["chromium-cap1000k-agent"] = [asdict(r) for r in browser]
    return out


async def _cells(
    service: Service, cells: list[Cell], seconds: float, repeats: int, out: dict[str, Any]
) -> None:
    """Each cell ``repeats`` times on both paths, its rows printed once it is done."""
    for cell in cells:
        runs: dict[str, list[Result | None]] = {path: [] for path in PATHS}
        for _ in range(repeats):
            runs["direct"].append(await _attempt(run_direct(cell, seconds)))
            runs["server"].append(await _attempt(run_server(service, cell, seconds)))
        medians: dict[str, Result | None] = {}
        out[cell.name] = {
            "customer": cell.customer.describe(),
            "agent": cell.agent.describe(),
            "blackout": cell.blackout,
        }
        for path in PATHS:
            done = [r for r in runs[path] if r is not None]
            middle = median(done) if done else None
            medians[path] = middle
            failed = len(runs[path]) - len(done)
            print(_row(cell.name, path, middle, failed), flush=True)
            out[cell.name][path] = {
                "median": asdict(middle) if middle is not None else None,
                "runs": [asdict(r) if r is not None else None for r in runs[path]],
            }
        print(_ratio_row(medians["direct"], medians["server"]), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="4 cells, 8 s, 1 repeat")
    parser.add_argument("--seconds", type=float, default=15.0, help="window per call")
    parser.add_argument("--repeats", type=int, default=3, help="calls per cell and path")
    parser.add_argument("--cells", default="", help="keep cells whose name contains any of these")
    parser.add_argument("--json", default=None, help="write every run's figures here")
    parser.add_argument(
        "--chromium", action="store_true", help="add a Chromium customer on a 1 Mbit/s agent leg"
    )
    args = parser.parse_args()
    cells = matrix()
    seconds, repeats = args.seconds, args.repeats
    if args.quick:
        cells = [c for c in cells if c.name in QUICK_CELLS]
        seconds, repeats = min(seconds, 8.0), 1
    if args.cells:
        wanted = [part for part in args.cells.split(",") if part]
        cells = [c for c in cells if any(part in c.name for part in wanted)]
    if not cells and not args.chromium:
        parser.error(f"no cell matches {args.cells!r}")
    began = time.perf_counter()
    out = asyncio.run(bench(cells, seconds, repeats, chromium=args.chromium))
    print(
        f"{len(cells)} cells x {repeats} repeats x 2 paths, {seconds:g} s windows, "
        f"{time.perf_counter() - began:.0f} s wall"
    )
    if args.json:
        document = {"seconds": seconds, "repeats": repeats, "cells": out}
        Path(args.json).write_text(json.dumps(document, indent=2))


if __name__ == "__main__":
    main()
