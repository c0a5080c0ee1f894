"""Where the service may connect on an admin's say-so: webhook receivers and RTSP cameras.

An address an admin types in is a request the server makes on their behalf, from inside the
network: without a guard, a webhook to ``http://169.254.169.254/`` reads the cloud's metadata
(credentials) and an RTSP camera at ``rtsp://10.0.0.7:6379/`` probes the LAN. So only public
addresses are reached, plus what the operator allows (``INSPECT_OUTBOUND_ALLOW``: host names,
addresses or CIDR networks, say the cameras' LAN). Refused unless allowed: loopback, link-local,
private (RFC 1918, fc00::/7), carrier-grade NAT, unspecified, multicast, reserved and other
special-purpose ranges, IPv4-mapped, NAT64 and 6to4 forms of those, and the cloud metadata
addresses (those only when allowed one by one, never by a wider network or a name).

Two checks, because a name's answer can change between them (DNS rebinding):

- :meth:`OutboundGuard.check_host` when an address is saved: literal addresses and
  ``localhost`` names, without DNS (an answer at save time proves nothing later);
- :meth:`OutboundGuard.resolve` before each connection: one lookup, every answer checked, and
  the caller connects to the addresses it returns and to nothing else
  (:class:`GuardedResolver` does that for aiohttp).
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass

from aiohttp.abc import AbstractResolver, ResolveResult

__all__ = [
    "AddressRefused",
    "Destination",
    "GuardedResolver",
    "OutboundGuard",
    "Resolver",
    "system_resolver",
]

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

#: ``(host, port)`` -> the addresses the host name resolves to (as text).
Resolver = Callable[[str, int], Awaitable[Sequence[str]]]

#: Cloud metadata services (AWS, GCP, Azure, OpenStack: 169.254.169.254; AWS IPv6; Azure's
#: wire server; Alibaba). Most sit in ranges refused anyway; Azure's is a public address.
_METADATA = frozenset(
    ipaddress.ip_address(text)
    for text in ("169.254.169.254", "fd00:ec2::254", "168.63.129.16", "100.100.100.200")
)
#: Special-purpose ranges (IANA registries) named here because ``ipaddress`` does not treat
#: every one of them as non-global in every Python version.
_SPECIAL = tuple(
    ipaddress.ip_network(text)
    for text in (
        "0.0.0.0/8",
        "100.64.0.0/10",
        "192.0.0.0/24",
        "192.0.2.0/24",
        "192.88.99.0/24",
        "198.18.0.0/15",
        "198.51.100.0/24",
        "203.0.113.0/24",
        "240.0.0.0/4",
        "255.255.255.255/32",
        "64:ff9b:1::/48",
        "100::/64",
        "2001::/23",
        "2001:db8::/32",
        "fec0::/10",
    )
)
_CGNAT = ipaddress.ip_network("100.64.0.0/10")
_NAT64 = ipaddress.ip_network("64:ff9b::/96")


class AddressRefused(OSError):
    """The host is, or resolves to, an address outbound requests may not reach. The message
    names the address and why (fit for admins and the log, not for everyone)."""

    def __init__(self, host: str, reason: str) -> None:
        super().__init__(f"{host}: {reason}")
        self.host = host
        self.reason = reason


@dataclass(frozen=True, slots=True)
class Destination:
    """A host with the checked addresses to connect to (in the resolver's order)."""

    host: str
    port: int
    addresses: tuple[str, ...]

    @property
    def address(self) -> str:
        return self.addresses[0]


async def system_resolver(host: str, port: int) -> Sequence[str]:
    """The system's resolver (``getaddrinfo`` in the loop's executor)."""
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return [str(info[4][0]) for info in infos]


def _literal(host: str) -> IPAddress | None:
    """``host`` as an address if it is one, legacy IPv4 forms (``127.1``, ``2130706433``,
    ``0x7f.1``) included: the system's resolver maps those without asking DNS."""
    try:
        return ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        pass
    if host and all(c in "0123456789abcdefx." for c in host):
        try:
            return ipaddress.IPv4Address(socket.inet_aton(host))
        except OSError:
            return None
    return None


def _normal(host: str) -> str:
    return host.strip().strip("[]").rstrip(".").lower()


def _not_public(address: IPAddress) -> str | None:
    """What kind of non-public address this is, or ``None`` for a public one."""
    if address.is_unspecified:
        return "an unspecified address"
    if address.is_loopback:
        return "a loopback address"
    if address.is_link_local:
        return "a link-local address"
    if address.is_multicast:
        return "a multicast address"
    if address in _CGNAT:
        return "a carrier-grade NAT address"
    if address.is_private:
        return "a private address"
    if address.is_reserved:
        return "a reserved address"
    if any(address in network for network in _SPECIAL) or not address.is_global:
        return "a special-purpose address"
    return None


def _embedded_v4(address: IPAddress) -> tuple[str, ipaddress.IPv4Address] | None:
    """The IPv4 address a NAT64 or 6to4 address reaches, with the form's name."""
    if isinstance(address, ipaddress.IPv4Address):
        return None
    if address in _NAT64:
        return "NAT64", ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    if address.sixtofour is not None:
        return "6to4", address.sixtofour
    return None


class OutboundGuard:
    """Decides which addresses outbound requests may reach (see the module docstring).

    ``allow`` holds host names, addresses and CIDR networks (``Settings.outbound_allow``);
    ``resolver`` looks names up (tests pass a stub: a test never asks DNS)."""

    def __init__(
        self,
        allow: Iterable[str] = (),
        *,
        resolver: Resolver | None = None,
        timeout_s: float = 5.0,
    ) -> None:
        networks: list[ipaddress.IPv4Network | ipaddress.IPv6Network] = []
        names: set[str] = set()
        for entry in allow:
            try:
                networks.append(ipaddress.ip_network(entry.strip(), strict=False))
            except ValueError:
                names.add(_normal(entry))
        self._networks = tuple(networks)
        self._names = frozenset(names)
        self._resolver = resolver or system_resolver
        self._timeout_s = timeout_s

    def refusal(self, address: IPAddress, *, host_allowed: bool = False) -> str | None:
        """Why ``address`` may not be reached, or ``None`` if it may. ``host_allowed``: the
        name it was resolved from is on the allowlist."""
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
            address = address.ipv4_mapped  # the very same host as its IPv4 address
        if address in _METADATA:
            if any(network.num_addresses == 1 and address in network for network in self._networks):
                return None
            return "a cloud metadata address"
        if host_allowed or any(address in network for network in self._networks):
            return None
        embedded = _embedded_v4(address)
        if embedded is not None:
            form, inner = embedded
            inner_refusal = self.refusal(inner)
            if inner_refusal is not None:
                return f"a {form} form of {inner}, {inner_refusal}"
            if form == "NAT64":
                # The translator's prefix sits in ::/8, which ipaddress calls reserved; what
                # the connection reaches is the public IPv4 address inside it.
                return None
        return _not_public(address)

    def _refuse(self, host: str, address: IPAddress, reason: str) -> AddressRefused:
        shown = host if str(address) == host else f"{host} ({address})"
        return AddressRefused(
            host,
            f"{shown} is {reason}; outbound requests reach only public addresses "
            "unless INSPECT_OUTBOUND_ALLOW lists it",
        )

    def check_host(self, host: str) -> None:
        """Refuse, without DNS, a host that is a non-allowed address or a ``localhost`` name.

        Raises :class:`AddressRefused`. A host name passes: it is checked when it is resolved
        before each connection (:meth:`resolve`)."""
        name = _normal(host)
        address = _literal(name)
        if address is None:
            if name in self._names:
                return
            if name == "localhost" or name.endswith(".localhost"):
                # RFC 6761: always loopback, whatever a resolver says.
                address = ipaddress.IPv4Address("127.0.0.1")
            else:
                return
        reason = self.refusal(address)
        if reason is not None:
            raise self._refuse(name, address, reason)

    async def resolve(self, host: str, port: int) -> Destination:
        """Resolve ``host`` once and check every address it resolves to.

        Raises :class:`AddressRefused` if any of them may not be reached (a name that mixes
        public and internal answers is not trusted with either), ``OSError`` (or
        ``TimeoutError``) if the name does not resolve. Connect to the returned addresses only:
        a second lookup could answer differently."""
        self.check_host(host)
        name = _normal(host)
        literal = _literal(name)
        if literal is not None:
            if isinstance(literal, ipaddress.IPv6Address) and literal.ipv4_mapped is not None:
                literal = literal.ipv4_mapped
            return Destination(host, port, (str(literal),))
        async with asyncio.timeout(self._timeout_s):
            answers = await self._resolver(name, port)
        host_allowed = name in self._names
        addresses: list[str] = []
        for text in answers:
            address = ipaddress.ip_address(text.split("%", 1)[0])
            reason = self.refusal(address, host_allowed=host_allowed)
            if reason is not None:
                raise self._refuse(name, address, reason)
            if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
                address = address.ipv4_mapped
            if str(address) not in addresses:
                addresses.append(str(address))
        if not addresses:
            raise OSError(f"{name} resolves to no address")
        return Destination(host, port, tuple(addresses))


class GuardedResolver(AbstractResolver):
    """An aiohttp resolver that answers only with addresses :class:`OutboundGuard` accepts, so
    a connection goes to the address that was checked (TLS SNI and ``Host`` stay the URL's
    host). Use it with ``TCPConnector(resolver=..., use_dns_cache=False)``; aiohttp does not
    resolve literal addresses, so check those with :meth:`OutboundGuard.check_host` first."""

    def __init__(self, guard: OutboundGuard) -> None:
        self._guard = guard

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        destination = await self._guard.resolve(host, port)
        results: list[ResolveResult] = []
        for address in destination.addresses:
            found = socket.AF_INET6 if ":" in address else socket.AF_INET
            if family not in (socket.AF_UNSPEC, found):
                continue
            results.append(
                {
                    "hostname": host,
                    "host": address,
                    "port": port,
                    "family": found,
                    "proto": 0,
                    "flags": socket.AI_NUMERICHOST,
                }
            )
        if not results:
            raise OSError(f"{host} has no address of the family asked for")
        return results

    async def close(self) -> None:
        """Nothing to release: the guard's resolver holds no connection."""
