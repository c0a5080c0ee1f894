"""coturn as deployed (deploy/coturn/turnserver.conf started by start.sh, Debian's
turnserver) accepts the TURN credentials server/ice.py issues from the shared secret, refuses a
wrong secret and an expired credential, refuses to start with a weak secret, never relays to
private or special-purpose addresses (except the media hosts an operator allows) and hands
out UDP relays only.

Every packet goes to 127.0.0.1: the relay's refusals are shown by parsing the config and by
CreatePermission requests, which coturn answers from its deny list without sending anything to
the peer named in them."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import ipaddress
import os
import secrets
import socket
import subprocess
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from aioice import stun, turn

from server.ice import IceServers, turn_credentials
from server.settings import Settings

from ._deploy import (
    REFUSED,
    TURN_CONF,
    TURN_START,
    env_example,
    fake_turnserver,
    require_tool,
    turn_conf,
)

SUBJECT = "participant-7"
#: A media host at a private address that the fixture's relay allows (TURN_ALLOWED_PEER_IPS).
ALLOWED_MEDIA_HOST = "10.0.1.5"
TCP_TRANSPORT = 0x06000000  # REQUESTED-TRANSPORT: TCP (RFC 6062)

IpAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

#: What the relay must never reach: IANA's special-purpose ranges that are not globally
#: reachable, and the IPv6 forms that embed an IPv4 address.
MUST_DENY = [
    "0.0.0.0/8",
    "10.0.0.0/8",
    "100.64.0.0/10",
    "127.0.0.0/8",
    "169.254.0.0/16",
    "172.16.0.0/12",
    "192.0.0.0/24",
    "192.0.2.0/24",
    "192.88.99.0/24",
    "192.168.0.0/16",
    "198.18.0.0/15",
    "198.51.100.0/24",
    "203.0.113.0/24",
    "224.0.0.0/4",
    "240.0.0.0/4",
    "255.255.255.255/32",
    # Not "::/128": coturn 4.6 cannot deny it (see turnserver.conf).
    "::1/128",
    "::ffff:0:0/96",
    "64:ff9b::/96",
    "64:ff9b:1::/48",
    "100::/64",
    "2001:db8::/32",
    "2002::/16",
    "fc00::/7",
    "fe80::/10",
    "fec0::/10",
    "ff00::/8",
]
#: Public addresses, several just outside a denied range: the relay must reach them.
MUST_ALLOW = [
    "1.1.1.1",
    "8.8.8.8",
    "11.0.0.1",
    "100.63.255.254",
    "100.128.0.1",
    "172.15.255.254",
    "172.32.0.1",
    "192.167.255.254",
    "192.169.0.1",
    "198.17.255.254",
    "198.20.0.1",
    "223.255.255.254",
    "2606:4700:4700::1111",
    "2001:4860:4860::8888",
    "2003::1",
]


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


def _denied() -> list[tuple[IpAddress, IpAddress]]:
    """The denied-peer-ip ranges of turnserver.conf, as (first, last) addresses."""
    ranges = []
    for name, value in turn_conf(TURN_CONF.read_text(encoding="utf-8")):
        if name == "denied-peer-ip":
            first, _, last = value.partition("-")
            ranges.append((ipaddress.ip_address(first), ipaddress.ip_address(last or first)))
    return ranges


def _is_denied(first: IpAddress, last: IpAddress) -> bool:
    """Whether every address from first to last lies in the union of the denied ranges."""
    position = int(first)
    for low, high in sorted(r for r in _denied() if r[0].version == first.version):
        if int(low) <= position <= int(high):
            position = int(high) + 1
        if position > int(last):
            return True
    return False


@pytest.mark.parametrize("network", MUST_DENY)
def test_the_config_denies_every_private_and_special_purpose_range(network: str) -> None:
    parsed = ipaddress.ip_network(network)
    assert _is_denied(parsed[0], parsed[-1]), f"turnserver.conf does not deny {network}"


@pytest.mark.parametrize("address", MUST_ALLOW)
def test_the_config_leaves_public_addresses_reachable(address: str) -> None:
    parsed = ipaddress.ip_address(address)
    assert not _is_denied(parsed, parsed), f"turnserver.conf denies the public {address}"


def test_the_config_allows_no_peer_and_no_tcp_relay() -> None:
    options = turn_conf(TURN_CONF.read_text(encoding="utf-8"))
    names = [name for name, _ in options]
    # allowed-peer-ip wins over denied-peer-ip: the operator's hosts come from
    # TURN_ALLOWED_PEER_IPS at start, never from the shipped file.
    assert "allowed-peer-ip" not in names
    assert "allow-loopback-peers" not in names
    assert "no-tcp-relay" in names and "no-multicast-peers" in names
    # coturn 4.6 treats a range starting at :: as holding every peer (it then relays nowhere).
    assert all(int(first) != 0 or first.version == 4 for first, _ in _denied())


def _start_with_stand_in(
    tmp_path: Path, **environ: str
) -> tuple[subprocess.CompletedProcess[str], Path]:
    """start.sh with ``environ`` and a stand-in turnserver: (result, its folder)."""
    fake = fake_turnserver(tmp_path / "bin")
    env = {"PATH": f"{fake}:/usr/bin:/bin", "TMPDIR": str(tmp_path), **environ}
    result = subprocess.run(
        ["sh", str(TURN_START)], capture_output=True, text=True, env=env, timeout=30, check=False
    )
    return result, fake


WEAK_SECRETS = {
    "env.example placeholder": env_example()["TURN_SECRET"],
    "short": secrets.token_hex(8),
    "low entropy": "ab" * 32,
}


@pytest.mark.parametrize("secret", WEAK_SECRETS.values(), ids=WEAK_SECRETS.keys())
def test_start_refuses_a_weak_turn_secret(secret: str, tmp_path: Path) -> None:
    result, fake = _start_with_stand_in(tmp_path, TURN_SECRET=secret, TURN_REALM="inspect.test")
    assert result.returncode == REFUSED, result
    assert "refusing to start: TURN_SECRET " in result.stderr
    assert "openssl rand -hex 32" in result.stderr
    assert not (fake / "argv").exists(), "turnserver must not run"
    assert not (tmp_path / "turnserver.conf").exists()


def test_start_refuses_a_missing_turn_secret(tmp_path: Path) -> None:
    result, fake = _start_with_stand_in(tmp_path, TURN_REALM="inspect.test")
    assert result.returncode == REFUSED
    assert "refusing to start: TURN_SECRET is not set or empty" in result.stderr
    assert not (fake / "argv").exists()


@pytest.mark.parametrize(
    "entry", ["10.0.0.1\nno-auth", "*", "10.0.0.0-", "1.2.3.4-1.2.3.5-1.2.3.6", "media.internal"]
)
def test_start_refuses_an_allowed_peer_entry_that_is_not_an_address(
    entry: str, tmp_path: Path
) -> None:
    result, fake = _start_with_stand_in(
        tmp_path,
        TURN_SECRET=secrets.token_hex(32),
        TURN_REALM="inspect.test",
        TURN_ALLOWED_PEER_IPS=entry,
    )
    assert result.returncode == REFUSED, result
    assert "TURN_ALLOWED_PEER_IPS" in result.stderr
    assert not (fake / "argv").exists()


def test_start_appends_one_allowed_peer_ip_per_media_host(tmp_path: Path) -> None:
    secret = secrets.token_hex(32)
    result, fake = _start_with_stand_in(
        tmp_path,
        TURN_SECRET=secret,
        TURN_REALM="inspect.test",
        TURN_ALLOWED_PEER_IPS="10.0.1.5, 10.0.1.8-10.0.1.9,fd00::5",
    )
    assert result.returncode == 0, result
    written = turn_conf((fake / "written.conf").read_text(encoding="utf-8"))
    allowed = [value for name, value in written if name == "allowed-peer-ip"]
    assert allowed == ["10.0.1.5", "10.0.1.8-10.0.1.9", "fd00::5"]
    assert ("static-auth-secret", secret) in written and ("realm", "inspect.test") in written


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


def _free_udp_and_tcp_port() -> int:
    """A loopback port free for UDP and TCP both (coturn listens on both)."""
    while True:
        port = _free_udp_port()
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port


@dataclasses.dataclass(frozen=True)
class Relay:
    port: int
    secret: str
    log: Path

    def credentials(self) -> tuple[str, str]:
        return turn_credentials(self.secret, SUBJECT, 3600, time.time())


@pytest.fixture
def coturn(tmp_path: Path) -> Iterator[Relay]:
    """deploy/coturn/start.sh on loopback, with a fresh secret and one allowed media host."""
    turnserver = require_tool("turnserver")
    port = _free_udp_and_tcp_port()
    relay = _free_udp_port()
    secret = secrets.token_hex(32)
    env = {
        "PATH": f"{Path(turnserver).parent}:{os.environ.get('PATH', '/usr/bin:/bin')}",
        "TMPDIR": str(tmp_path),
        "TURN_SECRET": secret,
        "TURN_REALM": "inspect.test",
        "TURN_ALLOWED_PEER_IPS": ALLOWED_MEDIA_HOST,
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
        log.flush()
        yield Relay(port, secret, tmp_path / "turnserver.log")
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


async def test_coturn_relays_for_the_credentials_inspectd_issues(coturn: Relay) -> None:
    settings = Settings(ice_servers=(f"turn:127.0.0.1:{coturn.port}",), turn_secret=coturn.secret)
    (server,) = IceServers(settings).for_subject(SUBJECT)
    assert server["urls"] == [f"turn:127.0.0.1:{coturn.port}"]
    host, relayed_port = await _allocate(coturn.port, server["username"], server["credential"])
    assert host == "127.0.0.1" and relayed_port > 0


async def test_coturn_refuses_a_wrong_secret_and_an_expired_credential(coturn: Relay) -> None:
    username, password = turn_credentials("not-the-secret", SUBJECT, 3600, time.time())
    with pytest.raises(stun.TransactionFailed) as wrong:
        await _allocate(coturn.port, username, password)
    assert wrong.value.response.attributes["ERROR-CODE"][0] == 401
    username, password = turn_credentials(coturn.secret, SUBJECT, 60, time.time() - 3600)
    with pytest.raises(stun.TransactionFailed) as expired:
        await _allocate(coturn.port, username, password)
    assert expired.value.response.attributes["ERROR-CODE"][0] == 401


def test_turnserver_reads_every_denied_and_allowed_range(coturn: Relay) -> None:
    # coturn logs a range it cannot parse and goes on without it: a typo would open a range.
    output = coturn.log.read_text(errors="replace")
    assert "Wrong address" not in output, output[-3000:]
    for name, value in turn_conf(TURN_CONF.read_text(encoding="utf-8")):
        if name == "denied-peer-ip":
            assert f"Black listing: {value}\n" in output, value
    assert f"White listing: {ALLOWED_MEDIA_HOST}\n" in output
    assert "TCP relay endpoints are not allowed" in output


@contextlib.asynccontextmanager
async def _client(relay: Relay, transport: str = "udp") -> AsyncIterator[turn.TurnClientMixin]:
    """A TURN client connected to the loopback relay over ``transport`` (no allocation yet)."""
    loop = asyncio.get_running_loop()
    server = ("127.0.0.1", relay.port)
    username, password = relay.credentials()
    protocol: turn.TurnClientMixin
    if transport == "tcp":
        _, protocol = await loop.create_connection(
            lambda: turn.TurnClientTcpProtocol(
                server,
                username=username,
                password=password,
                lifetime=600,
                channel_refresh_time=500,
            ),
            *server,
        )
    else:
        _, protocol = await loop.create_datagram_endpoint(
            lambda: turn.TurnClientUdpProtocol(
                server,
                username=username,
                password=password,
                lifetime=600,
                channel_refresh_time=500,
            ),
            remote_addr=server,
        )
    try:
        yield protocol
    finally:
        await protocol.delete()


async def _permission(client: turn.TurnClientMixin, peer: str) -> int:
    """The relay's answer to a CreatePermission for ``peer``: 200 or the error code. coturn
    grants or refuses it from its peer lists and sends nothing to the peer."""
    request = stun.Message(
        message_method=stun.Method.CREATE_PERMISSION, message_class=stun.Class.REQUEST
    )
    request.attributes["XOR-PEER-ADDRESS"] = (peer, 9)
    try:
        await asyncio.wait_for(client.request_with_retry(request), timeout=10)
    except stun.TransactionFailed as exc:
        code: int = exc.response.attributes["ERROR-CODE"][0]
        return code
    return 200


def _inside(network: str) -> list[str]:
    parsed = ipaddress.ip_network(network)
    return sorted({str(parsed[1 if parsed.num_addresses > 1 else 0]), str(parsed[-1])})


DENIED_SAMPLES = [a for n in MUST_DENY if ":" not in n for a in _inside(n)]


async def test_coturn_refuses_permissions_for_denied_peers(coturn: Relay) -> None:
    async with _client(coturn) as client:
        await client.connect()
        answers = {peer: await _permission(client, peer) for peer in DENIED_SAMPLES}
        assert answers == dict.fromkeys(DENIED_SAMPLES, 403)
        public = [a for a in MUST_ALLOW if ":" not in a]
        answers = {peer: await _permission(client, peer) for peer in public}
        assert answers == dict.fromkeys(public, 200)
        # The operator's own media host at a private address (TURN_ALLOWED_PEER_IPS), and
        # only that one.
        assert await _permission(client, ALLOWED_MEDIA_HOST) == 200
        assert await _permission(client, "10.0.1.6") == 403


async def test_clients_over_tcp_get_a_udp_relay_and_no_tcp_relay(coturn: Relay) -> None:
    # turn:...?transport=tcp (the URL inspectd hands out) is TCP from the client to coturn;
    # the allocation it asks for is still UDP, which no-tcp-relay keeps.
    async with _client(coturn, "tcp") as client:
        host, port = await client.connect()
        assert host == "127.0.0.1" and port > 0
    async with _client(coturn, "tcp") as client:
        request = stun.Message(
            message_method=stun.Method.ALLOCATE, message_class=stun.Class.REQUEST
        )
        request.attributes["LIFETIME"] = 600
        request.attributes["REQUESTED-TRANSPORT"] = TCP_TRANSPORT
        with pytest.raises(stun.TransactionFailed) as refused:
            await asyncio.wait_for(client.request_with_retry(request), timeout=10)
        assert refused.value.response.attributes["ERROR-CODE"][0] == 442
