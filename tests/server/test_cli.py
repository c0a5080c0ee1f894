"""``inspectd`` as a newcomer runs it: a real process, real sockets."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import ssl
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from server.app import free_port

INSPECTD = [sys.executable, "-m", "server.cli"]


async def _start(tmp_path: Path, *args: str) -> tuple[asyncio.subprocess.Process, int]:
    port = free_port()
    env = {**os.environ, "INSPECT_DATA_DIR": str(tmp_path / "var"), "INSPECT_PORT": str(port)}
    process = await asyncio.create_subprocess_exec(
        *INSPECTD,
        "serve",
        *args,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    return process, port


async def _lines_until(process: asyncio.subprocess.Process, pattern: str) -> list[str]:
    assert process.stdout is not None
    lines: list[str] = []
    async with asyncio.timeout(30):
        while True:
            raw = await process.stdout.readline()
            if not raw:
                raise AssertionError("inspectd exited:\n" + "".join(lines))
            lines.append(raw.decode())
            if re.search(pattern, lines[-1]):
                return lines


@pytest.fixture
async def stop() -> AsyncIterator[list[asyncio.subprocess.Process]]:
    processes: list[asyncio.subprocess.Process] = []
    yield processes
    for process in processes:
        if process.returncode is None:
            process.send_signal(signal.SIGTERM)
            async with asyncio.timeout(15):
                await process.wait()


async def test_serve_demo_prints_a_working_agent_login_and_customer_link(
    tmp_path: Path, stop: list[asyncio.subprocess.Process]
) -> None:
    process, port = await _start(tmp_path, "--demo")
    stop.append(process)
    lines = "".join(await _lines_until(process, r"Customer link"))
    login = re.search(r"log in as (\S+) / (\S+)\)", lines)
    link = re.search(r"Customer link : (\S+)", lines)
    assert login and link, lines
    page, _, token = link.group(1).partition("#t=")
    assert page == f"http://127.0.0.1:{port}/join" and token  # the token is in the fragment
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as session:
        # What the link page's script does: hand the token over, go on to the page it names.
        session_url = f"http://127.0.0.1:{port}/join/session"
        async with session.post(session_url, json={"token": token}) as response:
            assert response.status == 200
            landing = (await response.json())["url"]
        async with session.get(f"http://127.0.0.1:{port}{landing}") as response:
            assert response.status == 200
            assert "Demo Customer" in await response.text() or "camera" in await response.text()
        body = {"username": login.group(1), "password": login.group(2)}
        async with session.post(f"http://127.0.0.1:{port}/api/login", json=body) as response:
            assert response.status == 200
        async with session.get(f"http://127.0.0.1:{port}/api/cases") as response:
            cases = (await response.json())["cases"]
            assert [c["order_id"] for c in cases] == ["DEMO-1001"]
    process.send_signal(signal.SIGTERM)
    async with asyncio.timeout(15):
        assert await process.wait() == 0

    # A second start reuses the account and the open demo case.
    again, _ = await _start(tmp_path, "--demo")
    stop.append(again)
    lines_again = "".join(await _lines_until(again, r"Customer link"))
    assert f"log in as {login.group(1)} / {login.group(2)})" in lines_again


async def test_tls_self_signed_serves_https(
    tmp_path: Path, stop: list[asyncio.subprocess.Process]
) -> None:
    process, port = await _start(tmp_path, "--tls-self-signed")
    stop.append(process)
    await _lines_until(process, r"listening on https://")
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    async with aiohttp.ClientSession() as session:
        async with session.get(f"https://127.0.0.1:{port}/healthz", ssl=context) as response:
            assert response.status == 200
    assert (tmp_path / "var").is_dir()


async def test_a_bad_setting_exits_naming_the_variable(tmp_path: Path) -> None:
    env = {**os.environ, "INSPECT_PORT": "not-a-port", "INSPECT_DATA_DIR": str(tmp_path)}
    process = await asyncio.create_subprocess_exec(
        *INSPECTD, "serve", env=env, stderr=asyncio.subprocess.PIPE
    )
    _, stderr = await process.communicate()
    assert process.returncode == 2
    assert b"INSPECT_PORT" in stderr


async def test_a_model_that_breaks_the_contract_stops_the_start(tmp_path: Path) -> None:
    broken = tmp_path / "broken.onnx"
    broken.write_bytes(b"this is not an ONNX model")
    env = {
        **os.environ,
        "INSPECT_DATA_DIR": str(tmp_path / "var"),
        "INSPECT_MODEL_PATH": str(broken),
        "INSPECT_PORT": str(free_port()),
    }
    process = await asyncio.create_subprocess_exec(
        *INSPECTD, "serve", env=env, stderr=asyncio.subprocess.PIPE
    )
    async with asyncio.timeout(60):
        _, stderr = await process.communicate()
    assert process.returncode == 2
    assert b"grading model" in stderr and b"broken.onnx" in stderr
