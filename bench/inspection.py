"""Inspection tools benchmark, on loopback: how long a stroke the agent draws takes to reach the
customer's socket, and how long a photo takes from the agent's request to the agent's console
hearing it was filed (the customer's page sends it in 512 KiB pieces; the server reads it, grades
it, reads its codes and label text, stamps a copy and files both).

    python bench/inspection.py [--strokes 200] [--photos 20] [--json]

Baselines, measured in the same run over the same sockets: the agent's ping answered by the
server (a message there and back, nothing relayed) beside the stroke (agent -> bus -> customer); the
agent's snapshot (``POST /api/cases/{id}/snapshots``: the newest frame filed as evidence) beside
the photo. Prints figures, not pass/fail. The service runs in this process (memory bus, SQLite,
the shipped CPU model).
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

if not __package__:
    # Run by path (python bench/inspection.py): import from the repository root.
    sys.path[0] = str(Path(__file__).resolve().parent.parent)

import aiohttp  # noqa: E402
from PIL import Image  # noqa: E402

from bench._stats import percentile  # noqa: E402
from server.app import running_service  # noqa: E402
from server.settings import Settings  # noqa: E402
from signaling import Role  # noqa: E402
from tests.fakes import ToneAudioTrack  # noqa: E402
from tests.fakes.labels import draw_label  # noqa: E402
from tests.fakes.scene import SceneVideoTrack  # noqa: E402
from tests.fakes.signal_client import Participant  # noqa: E402

PASSWORD = "bench-agent-password-1"
PIECE = 512 * 1024


def _photo() -> bytes:
    image = Image.fromarray(draw_label(seed=4).image).resize((1920, 1080))
    out = io.BytesIO()
    image.save(out, "JPEG", quality=92)
    return out.getvalue()


def _summary(samples: list[float]) -> dict[str, float]:
    return {
        "n": len(samples),
        "p50_ms": round(percentile(samples, 50), 2),
        "p95_ms": round(percentile(samples, 95), 2),
    }


async def _send_photo(
    http: aiohttp.ClientSession, base: str, token: str, data: bytes, request_id: str
) -> None:
    cookie = {"Cookie": f"inspect_join={token}"}
    body = {"size": len(data), "content_type": "image/jpeg", "request_id": request_id}
    async with http.post(f"{base}/uploads", json=body, headers=cookie) as response:
        upload = (await response.json())["upload"]
    offset = 0
    while offset < len(data):
        piece = data[offset : offset + PIECE]
        headers = {**cookie, "Upload-Offset": str(offset)}
        async with http.patch(
            f"{base}/uploads/{upload['id']}", data=piece, headers=headers
        ) as response:
            assert response.status == 200, await response.text()
            offset = (await response.json())["upload"]["offset"]


async def run(strokes: int, photos: int) -> dict[str, Any]:
    data_dir = Path(tempfile.mkdtemp(prefix="bench-inspection-"))
    settings = Settings(data_dir=data_dir, port=0, shutdown_timeout_s=2.0, grading=True)
    async with running_service(settings) as running:
        state = running.state
        await state.accounts.create_user("agent", PASSWORD, name="Bench Agent", role=Role.AGENT)
        token, _ = await state.accounts.create_api_token("bench", role=Role.ADMIN)
        admin = {"Authorization": f"Bearer {token}"}
        base = running.base_url
        jar = aiohttp.CookieJar(unsafe=True)
        async with aiohttp.ClientSession(cookie_jar=jar) as staff, aiohttp.ClientSession() as http:
            async with staff.post(
                f"{base}/api/login", json={"username": "agent", "password": PASSWORD}
            ) as response:
                assert response.status == 200
            async with http.post(
                f"{base}/api/cases",
                json={"kind": "return", "customer_name": "Bench", "order_id": "ORD-1"},
                headers=admin,
            ) as response:
                created = await response.json()
            case_id = created["case"]["id"]
            join_token = created["join_token"]
            customer = Participant(http, base, token=join_token)
            agent = Participant(staff, base)
            await agent.join()
            await customer.join()
            await agent.send({"type": "accept", "case_id": case_id})
            await agent.expect("joined", where=lambda m: m["case"] is not None)
            await customer.publish(SceneVideoTrack(code="UNIT-1"), ToneAudioTrack())
            await agent.publish(ToneAudioTrack(660.0), receive_video=True)
            api = f"{base}/api/cases/{case_id}"
            frame: dict[str, Any] = {}
            for _ in range(100):
                async with staff.post(f"{api}/frozen") as response:
                    if response.status == 201:
                        frame = (await response.json())["frame"]
                        break
                await asyncio.sleep(0.1)
            await customer.expect("frozen")

            stroke_ms: list[float] = []
            chat_ms: list[float] = []
            for i in range(strokes):
                stroke = {
                    "id": f"b{i}", "tool": "freehand", "color": "#ff0000",
                    "points": [[0.1 + 0.001 * j, 0.2 + 0.002 * j] for j in range(40)],
                }  # fmt: skip
                started = time.perf_counter()
                await agent.send(
                    {"type": "markup", "frame_id": frame["frame_id"], "op": "add", "stroke": stroke}
                )
                await customer.expect("markup", where=lambda m, i=i: m["stroke_id"] == f"b{i}")
                stroke_ms.append((time.perf_counter() - started) * 1000)
                if i % 50 == 49:
                    await agent.send(
                        {"type": "markup", "frame_id": frame["frame_id"], "op": "clear"}
                    )
                started = time.perf_counter()
                await agent.send({"type": "ping", "nonce": f"n{i}"})
                await agent.expect("pong", where=lambda m, i=i: m["nonce"] == f"n{i}")
                chat_ms.append((time.perf_counter() - started) * 1000)
                # Under the socket's message rate (30 a second): a stroke every 80 ms, as a hand.
                await asyncio.sleep(0.08)
            async with staff.post(f"{api}/frozen/{frame['frame_id']}/release", json={}) as response:
                assert response.status == 200

            data = _photo()
            page = f"{base}/join/c/{case_id}"
            photo_ms: list[float] = []
            snapshot_ms: list[float] = []
            for i in range(photos):
                started = time.perf_counter()
                await agent.send({"type": "photo_request", "request_id": f"r{i}"})
                request = await customer.expect("photo_request")
                await _send_photo(http, page, join_token, data, request["request_id"])
                await agent.expect(
                    "photo", wait_s=60, where=lambda m, i=i: m["request_id"] == f"r{i}"
                )
                photo_ms.append((time.perf_counter() - started) * 1000)
                started = time.perf_counter()
                async with staff.post(f"{api}/snapshots", json={}) as response:
                    assert response.status == 201, await response.text()
                snapshot_ms.append((time.perf_counter() - started) * 1000)
            await customer.aclose()
            await agent.aclose()
    return {
        "cpus": os.cpu_count(),
        "stroke": _summary(stroke_ms),
        "ping": _summary(chat_ms),
        "photo": {**_summary(photo_ms), "bytes": len(data), "size": "1920x1080 JPEG"},
        "snapshot": _summary(snapshot_ms),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--strokes", type=int, default=200)
    parser.add_argument("--photos", type=int, default=20)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    result = asyncio.run(run(args.strokes, args.photos))
    if args.json:
        print(json.dumps(result, indent=2))
        return
    s, c, p, n = result["stroke"], result["ping"], result["photo"], result["snapshot"]
    print(f"{result['cpus']} CPUs, loopback, memory bus, SQLite, CPU model")

    def line(name: str, row: dict[str, Any], note: str) -> None:
        print(f"{name:26} p50 {row['p50_ms']:8.2f} ms  p95 {row['p95_ms']:8.2f} ms  {note}")

    line("stroke agent -> customer", s, f"(n={s['n']})")
    line("ping agent -> server -> agent", c, "(baseline)")
    print(f"  stroke/ping p50 ratio {s['p50_ms'] / c['p50_ms']:.2f}")
    line("photo ask -> filed, seen", p, f"({p['size']}, {p['bytes'] // 1024} KiB, n={p['n']})")
    line("snapshot (newest frame)", n, "(baseline)")
    print(f"  photo/snapshot p50 ratio {p['p50_ms'] / n['p50_ms']:.2f}")


if __name__ == "__main__":
    main()
