"""coturn as deployed (deploy/coturn/turnserver.conf started by start.sh, Debian's
turnserver) accepts the TURN credentials server/ice.py issues from the shared secret, and
refuses a wrong secret and an expired credential."""

from __future__ import annotations

import asyncio
import os
import secrets
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from aioice import stun, turn

from server.ice import IceServers, turn_credentials
from server.settings import Settings

from ._deploy import TURN_CONF, TURN_START, require_tool, turn_conf

SUBJECT = "participant-7"


def test_the_config_uses_use_auth_secret_and_keeps_the_secret_out() -> None:
    options = turn_conf(TURN_CONF.read_text(encoding="utf-8"))
    names = [name for name, _ in options]
    assert "use-auth-secret" in names
    assert "static-auth-secret" not in names, "the secret is appended at start, never committed"
    assert "realm" not in names, "start.sh sets the realm from TURN_REALM"
    assert "lt-cred-mech" not in names and "no-auth" not in names
    start = TURN_START.read_text(encoding="utf-8")
    assert "static-auth-secret=%s" in start and '"$TURN_SECRET"' in start
    assert 'exec turnserver -c "$conf"' in start


def _udp_port_bound(port: int) -> bool:
    with open("/proc/net/udp", encoding="ascii") as table:
        next(table)
        return any(int(line.split()[1].split(":")[1], 16) == port for line in table)


def _answers_stun(port: int) -> bool:
    request = stun.Message(message_method=stun.Method.BINDING, message_class=stun.Class.REQUEST)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(0.2)
        sock.sendto(bytes(request), ("127.0.0.1", port))
        try:
            data, _ = sock.recvfrom(2048)
        except OSError:
            return False
    return stun.parse_message(data).transaction_id == request.transaction_id


def _free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def coturn(tmp_path: Path) -> Iterator[tuple[int, str]]:
    """deploy/coturn/start.sh on loopback, with a fresh secret: (port, secret)."""
    turnserver = require_tool("turnserver")
    port = _free_udp_port()
    relay = _free_udp_port()
    secret = secrets.token_hex(32)
    env = {
        "PATH": f"{Path(turnserver).parent}:{os.environ.get('PATH', '/usr/bin:/bin')}",
        "TMPDIR": str(tmp_path),
        "TURN_SECRET": secret,
        "TURN_REALM": "inspect.test",
    }
    # Loopback addresses and a few relay ports instead of the deployed ones; everything else is
    # the file as deployed.
    overrides = ["--listening-ip", "127.0.0.1", "--relay-ip", "127.0.0.1"]
    overrides += ["--listening-port", str(port), "--min-port", str(relay)]
    overrides += ["--max-port", str(relay), "--pidfile", str(tmp_path / "turnserver.pid")]
    overrides += ["--userdb", str(tmp_path / "turndb")]
    log = (tmp_path / "turnserver.log").open("wb")
    process = subprocess.Popen(
        ["sh", str(TURN_START), *overrides], env=env, stdout=log, stderr=subprocess.STDOUT
    )
    try:
        deadline = time.monotonic() + 15
        while not _udp_port_bound(port):
            if process.poll() is not None or time.monotonic() > deadline:
                log.flush()
                output = (tmp_path / "turnserver.log").read_text(errors="replace")
                raise AssertionError(f"turnserver did not start:\n{output[-3000:]}")
            time.sleep(0.05)
        # Bound is not ready: wait until it answers a STUN Binding request.
        while not _answers_stun(port):
            if process.poll() is not None or time.monotonic() > deadline:
                raise AssertionError("turnserver bound its port but never answered STUN")
        written = (tmp_path / "turnserver.conf").read_text(encoding="utf-8")
        assert f"static-auth-secret={secret}\n" in written
        yield port, secret
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()


async def _allocate(port: int, username: str, password: str) -> tuple[str, int]:
    transport, _ = await asyncio.wait_for(
        turn.create_turn_endpoint(
            asyncio.DatagramProtocol,
            server_addr=("127.0.0.1", port),
            username=username,
            password=password,
        ),
        timeout=10,
    )
    try:
        relayed: tuple[str, int] = transport.get_extra_info("sockname")
        return relayed
    finally:
        transport.close()


async def test_coturn_relays_for_the_credentials_inspectd_issues(coturn: tuple[int, str]) -> None:
    port, secret = coturn
    settings = Settings(ice_servers=(f"turn:127.0.0.1:{port}",), turn_secret=secret)
    (server,) = IceServers(settings).for_subject(SUBJECT)
    assert server["urls"] == [f"turn:127.0.0.1:{port}"]
    host, relayed_port = await _allocate(port, server["username"], server["credential"])
    assert host == "127.0.0.1" and relayed_port > 0


async def test_coturn_refuses_a_wrong_secret_and_an_expired_credential(
    coturn: tuple[int, str],
) -> None:
    port, secret = coturn
    username, password = turn_credentials("not-the-secret", SUBJECT, 3600, time.time())
    with pytest.raises(stun.TransactionFailed) as wrong:
        await _allocate(port, username, password)
    assert wrong.value.response.attributes["ERROR-CODE"][0] == 401
    username, password = turn_credentials(secret, SUBJECT, 60, time.time() - 3600)
    with pytest.raises(stun.TransactionFailed) as expired:
        await _allocate(port, username, password)
    assert expired.value.response.attributes["ERROR-CODE"][0] == 401
