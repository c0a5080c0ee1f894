"""SIGKILL during a recording: after a restart the clip is filed (it plays up to near the kill),
and the archive's index and log agree."""

from __future__ import annotations

import asyncio
import io
import os
import signal
import sys
from pathlib import Path

import aiohttp
import av

from server.app import free_port
from tests.fakes import NumberedVideoTrack, ToneAudioTrack, read_frame_number
from tests.fakes.signal_client import Participant

PASSWORD = "agent-pass-123"


async def start(data_dir: Path, port: int) -> asyncio.subprocess.Process:
    env = {
        **os.environ,
        "INSPECT_DATA_DIR": str(data_dir),
        "INSPECT_PORT": str(port),
        "INSPECT_GRADING": "false",
        "INSPECT_LOG_LEVEL": "WARNING",
    }
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "server.cli", "serve", env=env,
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
    )  # fmt: skip
    async with asyncio.timeout(30), aiohttp.ClientSession() as session:
        while True:
            try:
                async with session.get(f"http://127.0.0.1:{port}/healthz") as response:
                    if response.status == 200:
                        return process
            except aiohttp.ClientConnectionError:
                pass
            await asyncio.sleep(0.1)  # the process is starting: nothing to wait on but time


async def cli(data_dir: Path, *args: str) -> str:
    env = {**os.environ, "INSPECT_DATA_DIR": str(data_dir)}
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "server.cli", *args, env=env, stdout=asyncio.subprocess.PIPE
    )
    out, _ = await process.communicate()
    assert process.returncode == 0
    return out.decode().strip()


async def test_a_recording_cut_off_by_sigkill_is_recovered_and_consistent(tmp_path: Path) -> None:
    data_dir = tmp_path / "var"
    await cli(data_dir, "add-user", "agent", "--role", "agent", "--password", PASSWORD)
    await cli(data_dir, "add-user", "rev", "--role", "reviewer", "--password", PASSWORD)
    token = await cli(data_dir, "add-token", "tests")
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    server = await start(data_dir, port)
    headers = {"Authorization": f"Bearer {token}"}
    jar = aiohttp.CookieJar(unsafe=True)
    async with aiohttp.ClientSession() as session, aiohttp.ClientSession(cookie_jar=jar) as agent:
        try:
            body = {"kind": "return", "customer_name": "K", "order_id": "ORD-KILL"}
            async with session.post(f"{base}/api/cases", json=body, headers=headers) as r:
                created = await r.json()
            case_id = created["case"]["id"]
            login = {"username": "agent", "password": PASSWORD}
            async with agent.post(f"{base}/api/login", json=login) as response:
                assert response.status == 200
            customer = Participant(session, base, token=created["join_token"])
            console = Participant(agent, base)
            await console.join()
            await customer.join()
            await console.send({"type": "accept", "case_id": case_id})
            await console.expect("joined", where=lambda m: m["case"] is not None)
            camera = NumberedVideoTrack()
            await customer.publish(camera, ToneAudioTrack())
            await console.publish(ToneAudioTrack(660.0), receive_video=True)
            await console.sinks_ready("video")

            async with agent.post(f"{base}/api/cases/{case_id}/captures", json={}) as response:
                assert response.status == 201, await response.text()
            await asyncio.sleep(4.0)  # four seconds of recording, then the power goes
            sent_at_kill = camera.frames_sent
            server.send_signal(signal.SIGKILL)
            await server.wait()
        finally:
            if server.returncode is None:
                server.kill()
                await server.wait()
            await customer.aclose()
            await console.aclose()

    server = await start(data_dir, port)
    try:
        async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as rev:
            login = {"username": "rev", "password": PASSWORD}
            async with rev.post(f"{base}/api/login", json=login) as response:
                assert response.status == 200
            async with rev.get(f"{base}/api/evidence", params={"case_id": case_id}) as response:
                items = (await response.json())["items"]
            clips = [item for item in items if item["record"]["kind"] == "clip"]
            assert len(clips) == 1, items
            clip = clips[0]
            assert "recovered" in clip["record"]["note"]
            reason = {"reason": "crash check"}
            async with rev.post(f"{base}/api/evidence/{clip['item_id']}/view", json=reason) as r:
                detail = await r.json()
            assert detail["integrity"]["ok"] is True, detail["integrity"]
            video = next(f for f in detail["item"]["files"] if f["name"].startswith("video-"))
            read = f"{base}/api/evidence/{clip['item_id']}/files/{video['name']}/read"
            async with rev.post(read, json=reason) as response:
                ticket = await response.json()
            async with rev.get(base + ticket["url"]) as response:
                data = await response.read()
    finally:
        server.send_signal(signal.SIGTERM)
        async with asyncio.timeout(15):
            await server.wait()

    numbers = []
    with av.open(io.BytesIO(data)) as container:
        for frame in container.decode(video=0):
            number = read_frame_number(frame)
            if number is not None:
                numbers.append(number)
    assert numbers, "the cut-off file still plays"
    assert numbers == sorted(numbers)
    # It plays up to near the kill: within ~2 s (30 frames at 15 fps) of the last frame sent.
    assert numbers[-1] >= sent_at_kill - 30, (numbers[-1], sent_at_kill)
