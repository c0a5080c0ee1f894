"""The outbound guard: which addresses webhooks and RTSP pulls may reach. Names are answered by
a stub resolver and nothing connects: every check here happens before a packet could leave."""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Sequence

import pytest

from server.outbound import AddressRefused, GuardedResolver, OutboundGuard


class StubDns:
    def __init__(self, answers: dict[str, list[str]]) -> None:
        self.answers = answers
        self.lookups: list[tuple[str, int]] = []

    async def __call__(self, host: str, port: int) -> Sequence[str]:
        self.lookups.append((host, port))
        if host not in self.answers:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return self.answers[host]


REFUSED = {
    "127.0.0.1": "loopback",
    "127.8.9.10": "loopback",
    "::1": "loopback",
    "0.0.0.0": "unspecified",
    "::": "unspecified",
    "169.254.10.20": "link-local",
    "fe80::1": "link-local",
    "10.0.0.7": "private",
    "172.16.0.1": "private",
    "172.31.255.255": "private",
    "192.168.1.50": "private",
    "fc00::1": "private",
    "fd12:3456::1": "private",
    "100.64.0.1": "carrier-grade NAT",
    "100.127.255.254": "carrier-grade NAT",
    "224.0.0.251": "multicast",
    "239.1.2.3": "multicast",
    "ff02::1": "multicast",
    "240.0.0.1": "address",
    "255.255.255.255": "address",
    "192.0.2.10": "address",
    "198.18.0.1": "address",
    "2001:db8::1": "address",
    "169.254.169.254": "metadata",
    "fd00:ec2::254": "metadata",
    "168.63.129.16": "metadata",
    "100.100.100.200": "metadata",
    # The same hosts in IPv6 clothing.
    "::ffff:127.0.0.1": "loopback",
    "::ffff:10.1.2.3": "private",
    "::ffff:169.254.169.254": "metadata",
    "64:ff9b::a00:1": "NAT64 form of 10.0.0.1",
    "64:ff9b::7f00:1": "NAT64 form of 127.0.0.1",
    "2002:c0a8:101::1": "6to4 form of 192.168.1.1",
}
PUBLIC = ["93.184.215.14", "8.8.8.8", "2606:4700::1111", "64:ff9b::808:808", "::ffff:1.1.1.1"]


@pytest.mark.parametrize(("address", "kind"), sorted(REFUSED.items()))
def test_internal_addresses_are_refused(address: str, kind: str) -> None:
    reason = OutboundGuard().refusal(ipaddress.ip_address(address))
    assert reason is not None and kind in reason


@pytest.mark.parametrize("address", PUBLIC)
def test_public_addresses_pass(address: str) -> None:
    assert OutboundGuard().refusal(ipaddress.ip_address(address)) is None


def test_the_allowlist_opens_networks_addresses_and_names_but_not_metadata() -> None:
    guard = OutboundGuard(("192.168.1.0/24", "127.0.0.1", "::1", "cams.lan", "169.254.0.0/16"))
    allowed = ("192.168.1.50", "127.0.0.1", "::1", "::ffff:192.168.1.7", "169.254.1.1")
    for address in allowed:
        assert guard.refusal(ipaddress.ip_address(address)) is None, address
    for address in ("192.168.2.1", "127.0.0.2", "10.0.0.1"):
        assert guard.refusal(ipaddress.ip_address(address)) is not None, address
    # A wider network or a name never opens the metadata service; listing it alone does.
    metadata = ipaddress.ip_address("169.254.169.254")
    assert guard.refusal(metadata) == "a cloud metadata address"
    assert guard.refusal(metadata, host_allowed=True) == "a cloud metadata address"
    assert OutboundGuard(("169.254.169.254",)).refusal(metadata) is None


@pytest.mark.parametrize(
    "host",
    [
        "127.0.0.1",
        "127.1",
        "2130706433",
        "0x7f.0.0.1",
        "017700000001",
        "localhost",
        "LocalHost.",
        "cam.localhost",
        "[::1]",
        "::ffff:127.0.0.1",
        "10.0.0.7",
        "fe80::1%eth0",
    ],
)
def test_literal_and_localhost_hosts_are_refused_without_dns(host: str) -> None:
    with pytest.raises(AddressRefused) as caught:
        OutboundGuard().check_host(host)
    assert "INSPECT_OUTBOUND_ALLOW" in str(caught.value)


def test_names_pass_the_static_check_and_allowed_names_pass_everything() -> None:
    OutboundGuard().check_host("cam-7.warehouse.example.com")
    OutboundGuard(("localhost",)).check_host("localhost")
    OutboundGuard(("127.0.0.0/8",)).check_host("localhost")


async def test_resolve_checks_every_answer_and_returns_them_to_connect_to() -> None:
    dns = StubDns(
        {
            "hooks.example.com": ["93.184.215.14", "2606:4700::1111", "93.184.215.14"],
            "rebind.example.com": ["93.184.215.14", "10.0.0.7"],
            "mapped.example.com": ["::ffff:8.8.4.4"],
        }
    )
    guard = OutboundGuard(resolver=dns)
    destination = await guard.resolve("hooks.example.com", 443)
    assert destination.addresses == ("93.184.215.14", "2606:4700::1111")
    assert destination.address == "93.184.215.14"
    with pytest.raises(AddressRefused, match=r"rebind\.example\.com \(10\.0\.0\.7\) is a private"):
        await guard.resolve("rebind.example.com", 443)
    assert (await guard.resolve("mapped.example.com", 80)).addresses == ("8.8.4.4",)
    with pytest.raises(OSError):
        await guard.resolve("nowhere.example.com", 443)
    assert dns.lookups == [
        ("hooks.example.com", 443),
        ("rebind.example.com", 443),
        ("mapped.example.com", 80),
        ("nowhere.example.com", 443),
    ]


async def test_resolve_takes_literals_without_dns_and_honours_allowed_names() -> None:
    dns = StubDns({"nvr.lan": ["192.168.1.20"], "other.lan": ["192.168.1.21"]})
    guard = OutboundGuard(("nvr.lan", "127.0.0.1"), resolver=dns)
    assert (await guard.resolve("127.0.0.1", 8080)).addresses == ("127.0.0.1",)
    assert (await guard.resolve("[::ffff:127.0.0.1]", 8080)).addresses == ("127.0.0.1",)
    with pytest.raises(AddressRefused):
        await guard.resolve("127.0.0.2", 8080)
    assert (await guard.resolve("NVR.lan.", 554)).addresses == ("192.168.1.20",)
    with pytest.raises(AddressRefused):
        await guard.resolve("other.lan", 554)
    assert [host for host, _ in dns.lookups] == ["nvr.lan", "other.lan"]


async def test_the_aiohttp_resolver_answers_with_the_checked_addresses_only() -> None:
    dns = StubDns({"hooks.example.com": ["93.184.215.14", "2606:4700::1111"]})
    resolver = GuardedResolver(OutboundGuard(resolver=dns))
    results = await resolver.resolve("hooks.example.com", 443, socket.AF_UNSPEC)
    assert [(r["hostname"], r["host"], r["port"], r["family"]) for r in results] == [
        ("hooks.example.com", "93.184.215.14", 443, socket.AF_INET),
        ("hooks.example.com", "2606:4700::1111", 443, socket.AF_INET6),
    ]
    only_v4 = await resolver.resolve("hooks.example.com", 443, socket.AF_INET)
    assert [r["host"] for r in only_v4] == ["93.184.215.14"]
    dns.answers["hooks.example.com"] = ["169.254.169.254"]
    with pytest.raises(AddressRefused, match="metadata"):
        await resolver.resolve("hooks.example.com", 443, socket.AF_UNSPEC)
    await resolver.close()
