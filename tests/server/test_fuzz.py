"""Hostile input: generated WebSocket messages and REST requests against a real ``inspectd``.

The REST part is schemathesis driving every operation of ``/api/openapi.json`` with generated
bodies, parameters and headers, as an admin (so the deep paths are reached) and without a
token. Nothing may answer 500, and the process must neither die nor keep connections or file
descriptors it should have freed. The signaling part feeds the parser and a live ``/ws`` with
generated JSON: every bad message gets an ``error``, never a crash or a silent drop.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from signaling.errors import ProtocolError
from signaling.messages import parse_client_message

ROOT = Path(__file__).resolve().parents[2]
INSPECTD = Path(sys.executable).with_name("inspectd")
#: Writes that need no credentials: logging in and out.
ANONYMOUS_WRITES = {"/api/login", "/api/logout"}


@dataclass
class Service:
    base_url: str
    token: str
    process: subprocess.Popen[bytes]
    log: Path

    def fd_count(self) -> int:
        return len(os.listdir(f"/proc/{self.process.pid}/fd"))

    def alive(self) -> bool:
        return self.process.poll() is None


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    data = tmp_path_factory.mktemp("fuzz-data")
    env = {**os.environ, "INSPECT_DATA_DIR": str(data), "INSPECT_GRADING": "false"}
    token = subprocess.run(
        [str(INSPECTD), "add-token", "fuzz", "--role", "admin"],
        env=env,
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    port = _free_port()
    log = data / "inspectd.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [str(INSPECTD), "serve", "--host", "127.0.0.1", "--port", str(port)],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=ROOT,
        )
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        try:
            if requests.get(f"{base}/healthz", timeout=1).ok:
                break
        except requests.ConnectionError:
            pass
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            raise AssertionError(f"inspectd did not start:\n{log.read_text()[-3000:]}")
        time.sleep(0.1)
    yield Service(base, token, process, log)
    process.terminate()
    try:
        process.wait(10)
    except subprocess.TimeoutExpired:
        process.kill()
    text = log.read_text()
    assert "Traceback" not in text, text[-4000:]
    assert token not in text  # secrets never logged


def test_rest_api_never_answers_500(service: Service) -> None:
    """Every operation of the OpenAPI document, with generated input, as admin and as nobody.

    (schemathesis's pytest plugin does not load under pytest 9, so its strategies are driven
    by hypothesis directly: the same generation, one hypothesis run per operation.)
    """
    api = schemathesis.openapi.from_url(f"{service.base_url}/api/openapi.json")
    operations = [result.ok() for result in api.get_all_operations()]
    assert len(operations) >= 20, "the OpenAPI document lost its operations"
    admin = {"Authorization": f"Bearer {service.token}"}
    failures: list[str] = []

    for operation in operations:

        @given(case=operation.as_strategy())
        @settings(max_examples=30, deadline=None, suppress_health_check=list(HealthCheck))
        def run(case: Any) -> None:
            for headers in (admin, None):
                response = case.call(headers=headers, timeout=10)
                if response.status_code >= 500:
                    failures.append(
                        f"{case.method} {case.formatted_path} -> {response.status_code} "
                        f"{response.text[:200]}"
                    )
                if (
                    headers is None
                    and response.status_code < 400
                    and case.method.upper() not in ("GET", "HEAD", "OPTIONS")
                    and case.path not in ANONYMOUS_WRITES
                ):
                    failures.append(f"{case.method} {case.formatted_path} accepted anonymously")
            assert service.alive(), service.log.read_text()[-3000:]

        run()
    assert not failures, "\n".join(sorted(set(failures))[:20])


def test_service_kept_no_connections_after_fuzzing(service: Service) -> None:
    """Runs after the generated requests (file order): descriptors back near the baseline."""
    before = service.fd_count()
    for _ in range(50):
        requests.get(f"{service.base_url}/api/cases", timeout=5)
    time.sleep(0.5)
    assert service.fd_count() <= before + 5
    metrics = requests.get(f"{service.base_url}/metrics", timeout=5).text
    assert "inspect_ws_connections 0.0" in metrics
    assert 'inspect_media_published_tracks{kind="video"} 0.0' in metrics
    assert "inspect_media_forwarded_frames_total" in metrics


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=40),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4)
    ),
    max_leaves=12,
)
TYPES = ["join", "offer", "answer", "candidate", "chat", "accept", "leave", "ping", "renegotiate"]
messages = st.one_of(
    st.text(max_size=200),
    st.binary(max_size=200).map(lambda b: b.decode("latin-1")),
    json_values.map(json.dumps),
    st.fixed_dictionaries(
        {"type": st.sampled_from(TYPES)},
        optional={
            "token": json_values,
            "sdp": json_values,
            "candidate": json_values,
            "text": json_values,
            "client_id": json_values,
            "case_id": json_values,
            "since": json_values,
        },
    ).map(json.dumps),
)


@given(messages)
@settings(max_examples=400, deadline=None)
def test_parser_accepts_or_names_the_problem(raw: str) -> None:
    try:
        parse_client_message(raw, max_bytes=64 * 1024)
    except ProtocolError as exc:
        assert exc.code and str(exc)


async def _exchange(url: str, batch: list[str]) -> None:
    async with (
        aiohttp.ClientSession() as session,
        session.ws_connect(url, timeout=aiohttp.ClientWSTimeout(ws_close=2)) as ws,
    ):
        for raw in batch:
            if ws.closed:
                break  # e.g. the server closed after a first message that was no join
            await ws.send_str(raw)
            reply = await ws.receive(timeout=5)
            if reply.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED):
                break
            assert reply.type == aiohttp.WSMsgType.TEXT, reply
            message = json.loads(reply.data)
            assert message["type"] == "error", message
            assert message["code"] and message["message"], message


@given(st.lists(messages, min_size=1, max_size=8))
@settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
def test_live_socket_answers_every_bad_message_with_an_error(
    service: Service, batch: list[str]
) -> None:
    asyncio.run(_exchange(service.base_url.replace("http", "ws") + "/ws", batch))
    assert service.alive()


def test_tokens_in_paths_never_reach_the_access_log(service: Service) -> None:
    from server.access_log import mask_path

    assert mask_path("/join/abc.def?x=1") == "/join/***?x=1"
    assert mask_path("/camera/cam_xyz") == "/camera/***"
    assert mask_path("/ws?token=s3cret&a=b") == "/ws?token=***&a=b"
    secret = "join-secret-4f9a"
    requests.get(f"{service.base_url}/join/{secret}", timeout=5)
    requests.get(
        f"{service.base_url}/static/css/app.css",
        headers={"Referer": f"{service.base_url}/camera/cam_{secret}?token={secret}"},
        timeout=5,
    )
    time.sleep(0.2)
    text = service.log.read_text()
    assert "/join/***" in text and "/camera/***" in text
    assert secret not in text
