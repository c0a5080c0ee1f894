"""A network in user space for test peers: random loss, one-way delay with jitter, a rate cap
and blackouts on their UDP, per leg and per direction, changeable while packets flow.

Kernel netem is not available here, so the impairment sits between a socket and its user:

- A :class:`Leg` is one peer's link to the rest of the network: :attr:`Leg.up` impairs what the
  peer sends, :attr:`Leg.down` what it receives. Each is a :class:`Direction` with its own
  :class:`Conditions` (assign new ones at any time) and its own seeded random generator.
- :meth:`Leg.attach` impairs every socket of an aiortc ``RTCPeerConnection`` (STUN, DTLS, SRTP
  and SRTCP alike: a blackout also silences ICE consent); :meth:`Leg.wrap` impairs a plain
  asyncio datagram endpoint; :class:`UdpRelay` is a relay on loopback that impairs what passes
  through it, for a peer whose sockets this process does not own (a browser).

A packet entering a direction meets, in order: a blackout (dropped while one is on), random
loss (Bernoulli, ``loss``), the rate cap (a token bucket of ``rate_bps`` with ``burst_bytes``
of burst, feeding a FIFO of at most ``queue_bytes`` that drops the tail), then ``delay_s`` of
one-way delay plus a uniform ``±jitter_s``. Packets keep their order unless ``reorder`` is set
(then each packet's delay is drawn on its own and jitter larger than the gap between packets
reorders them, as netem does). A packet still in flight when a blackout starts is dropped when
it comes due. Delivery runs on the event loop's clock (``loop.time()``); timers are shared per
direction, so the cost is one heap operation per packet.

The aiortc and aioice internals this module relies on (aiortc 1.16, aioice 0.13) are named in
:data:`INTERNALS` and checked by :func:`check_internals`, which ``tests/media/test_impair.py``
runs: it fails loudly when one of them moves.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import itertools
import random
import re
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from typing import Any, cast

from aioice import ice as aioice_ice
from aiortc import RTCIceGatherer, RTCIceTransport, RTCPeerConnection, RTCSessionDescription

__all__ = [
    "INTERNALS",
    "Conditions",
    "Direction",
    "DirectionStats",
    "Leg",
    "UdpRelay",
    "check_internals",
    "relay_candidates",
]

Address = tuple[Any, ...]
Deliver = Callable[[bytes, Any], None]

#: What this module touches beyond aiortc's and aioice's public API.
INTERNALS = (
    "aiortc RTCIceGatherer._connection: the aioice Connection behind an ICE transport",
    "aioice Connection._protocols: its StunProtocol per local socket (created while gathering)",
    "aioice StunProtocol.transport: the asyncio DatagramTransport every packet is sent with "
    "(send_stun, send_data)",
    "aioice StunProtocol.datagram_received: called by the event loop per datagram, looked up "
    "on the instance",
)

#: When no ``queue_bytes`` is given, the cap's FIFO holds this long at its rate.
DEFAULT_QUEUE_S = 0.2
#: Timers fire this early at most (the loop's clock resolution).
_EPSILON_S = 0.0005


@dataclass(frozen=True, slots=True)
class Conditions:
    """How one direction of a leg treats packets. Times in seconds, rates in bit/s."""

    loss: float = 0.0
    delay_s: float = 0.0
    jitter_s: float = 0.0
    rate_bps: float | None = None
    #: The cap's queue (tail drop); ``None``: :data:`DEFAULT_QUEUE_S` at the rate, at least
    #: ``burst_bytes``.
    queue_bytes: int | None = None
    #: The token bucket's depth: this much goes at line rate after a quiet spell.
    burst_bytes: int = 3000
    reorder: bool = False

    def __post_init__(self) -> None:
        if not 0.0 <= self.loss <= 1.0:
            raise ValueError("loss must be within [0, 1]")
        if self.delay_s < 0 or self.jitter_s < 0:
            raise ValueError("delay_s and jitter_s must not be negative")
        if self.rate_bps is not None and self.rate_bps <= 0:
            raise ValueError("rate_bps must be positive (None: no cap)")
        if self.queue_bytes is not None and self.queue_bytes <= 0:
            raise ValueError("queue_bytes must be positive")
        if self.burst_bytes <= 0:
            raise ValueError("burst_bytes must be positive")

    @property
    def clean(self) -> bool:
        return not (self.loss or self.delay_s or self.jitter_s or self.rate_bps)

    @property
    def queue_limit(self) -> int | None:
        if self.rate_bps is None:
            return None
        if self.queue_bytes is not None:
            return self.queue_bytes
        return max(self.burst_bytes, int(self.rate_bps * DEFAULT_QUEUE_S / 8))

    def describe(self) -> str:
        parts: list[str] = []
        if self.loss:
            parts.append(f"loss {self.loss:.0%}")
        if self.delay_s or self.jitter_s:
            jitter = f"±{self.jitter_s * 1000:.0f}" if self.jitter_s else ""
            parts.append(f"delay {self.delay_s * 1000:.0f}{jitter} ms")
        if self.rate_bps:
            parts.append(f"cap {self.rate_bps / 1000:.0f} kbit/s")
        return ", ".join(parts) or "clean"


@dataclass(slots=True)
class DirectionStats:
    """What a direction did with the packets it was offered."""

    offered: int = 0
    delivered: int = 0
    lost: int = 0
    blacked_out: int = 0
    overflowed: int = 0
    bytes_offered: int = 0
    bytes_delivered: int = 0

    @property
    def dropped(self) -> int:
        return self.lost + self.blacked_out + self.overflowed


@dataclass(order=True, slots=True)
class _Pending:
    due: float
    order: int
    data: bytes = field(compare=False)
    addr: Any = field(compare=False)
    deliver: Deliver = field(compare=False)


class Direction:
    """One way through a leg. ``conditions`` may be replaced at any time; it applies to the
    packets that enter from then on (those in flight keep the delay they were given)."""

    def __init__(self, name: str, conditions: Conditions | None = None, *, seed: int = 0):
        self.name = name
        self._conditions = conditions or Conditions()
        self._random = random.Random(seed)
        self.stats = DirectionStats()
        #: Blackouts as (start, end) on the loop's clock, in the order they were set.
        self.blackouts: list[tuple[float, float]] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self._heap: list[_Pending] = []
        self._order = itertools.count()
        self._timer: asyncio.TimerHandle | None = None
        self._last_due = 0.0
        # The rate cap: the token bucket's theoretical arrival time (GCRA) and the FIFO, as
        # (time it leaves the bottleneck, bytes).
        self._tat = 0.0
        self._queue: deque[tuple[float, int]] = deque()
        self._queued_bytes = 0
        self._closed = False

    @property
    def conditions(self) -> Conditions:
        return self._conditions

    @conditions.setter
    def conditions(self, value: Conditions) -> None:
        if value.rate_bps is None:
            self._queue.clear()
            self._queued_bytes = 0
        self._conditions = value

    def update(self, **changes: Any) -> None:
        """Change some fields of the conditions (``direction.update(loss=0.05)``)."""
        self.conditions = replace(self._conditions, **changes)

    def _time(self) -> float:
        if self._loop is None:
            self._loop = asyncio.get_running_loop()
        return self._loop.time()

    def black_out(self, duration_s: float, *, start_in_s: float = 0.0) -> tuple[float, float]:
        """Drop everything for ``duration_s``, from ``start_in_s`` from now; returns the
        window on the loop's clock."""
        if duration_s <= 0 or start_in_s < 0:
            raise ValueError("duration_s > 0 and start_in_s >= 0")
        start = self._time() + start_in_s
        window = (start, start + duration_s)
        self.blackouts.append(window)
        return window

    def dark(self, at: float | None = None) -> bool:
        """Whether a blackout is on at ``at`` (default: now)."""
        when = self._time() if at is None else at
        return any(start <= when < end for start, end in self.blackouts)

    @property
    def in_flight(self) -> int:
        return len(self._heap)

    def send(self, data: bytes, addr: Any, deliver: Deliver) -> None:
        """Offer one packet; ``deliver(data, addr)`` is called when (if) it comes out."""
        stats = self.stats
        stats.offered += 1
        stats.bytes_offered += len(data)
        if self._closed:
            return
        now = self._time()
        if self.dark(now):
            stats.blacked_out += 1
            return
        conditions = self._conditions
        if conditions.loss and self._random.random() < conditions.loss:
            stats.lost += 1
            return
        leaves = now
        if conditions.rate_bps is not None:
            left = self._through_cap(now, len(data), conditions)
            if left is None:
                stats.overflowed += 1
                return
            leaves = left
        due = leaves + conditions.delay_s
        if conditions.jitter_s:
            due += self._random.uniform(-conditions.jitter_s, conditions.jitter_s)
        due = max(due, leaves)
        if not conditions.reorder:
            due = max(due, self._last_due)
        self._last_due = max(self._last_due, due)
        if due <= now and not self._heap:
            self._deliver(data, addr, deliver)
            return
        heapq.heappush(self._heap, _Pending(due, next(self._order), data, addr, deliver))
        self._arm()

    def _through_cap(self, now: float, size: int, conditions: Conditions) -> float | None:
        """When a packet of ``size`` bytes leaves the bottleneck, or ``None`` (tail drop)."""
        assert conditions.rate_bps is not None
        queue = self._queue
        while queue and queue[0][0] <= now:
            self._queued_bytes -= queue.popleft()[1]
        limit = conditions.queue_limit
        assert limit is not None
        if self._queued_bytes + size > limit:
            return None
        tat = max(self._tat, now)
        leaves = max(now, tat - conditions.burst_bytes * 8 / conditions.rate_bps)
        self._tat = tat + size * 8 / conditions.rate_bps
        if leaves > now:
            queue.append((leaves, size))
            self._queued_bytes += size
        return leaves

    def _deliver(self, data: bytes, addr: Any, deliver: Deliver) -> None:
        self.stats.delivered += 1
        self.stats.bytes_delivered += len(data)
        deliver(data, addr)

    def _arm(self) -> None:
        if not self._heap:
            return
        due = self._heap[0].due
        if self._timer is not None:
            if self._timer.when() <= due:
                return
            self._timer.cancel()
        assert self._loop is not None
        self._timer = self._loop.call_at(due, self._fire)

    def _fire(self) -> None:
        self._timer = None
        now = self._time()
        while self._heap and self._heap[0].due <= now + _EPSILON_S:
            item = heapq.heappop(self._heap)
            if self.dark(now):
                self.stats.blacked_out += 1
                continue
            try:
                self._deliver(item.data, item.addr, item.deliver)
            except Exception:  # noqa: BLE001 - one receiver's error must not stop the link
                # The socket or its user went away while the packet was in flight.
                continue
        self._arm()

    def close(self) -> None:
        """Drop what is in flight and everything offered from now on."""
        self._closed = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._heap.clear()


class _ImpairedTransport(asyncio.DatagramTransport):
    """A datagram transport whose ``sendto`` passes through a :class:`Direction` first."""

    def __init__(self, inner: asyncio.DatagramTransport, direction: Direction) -> None:
        super().__init__()
        self.inner = inner
        self.direction = direction

    def sendto(self, data: bytes | bytearray | memoryview, addr: Any = None) -> None:
        self.direction.send(bytes(data), addr, self._send_now)

    def _send_now(self, data: bytes, addr: Any) -> None:
        if not self.inner.is_closing():
            self.inner.sendto(data, addr)

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return self.inner.get_extra_info(name, default)

    def is_closing(self) -> bool:
        return self.inner.is_closing()

    def close(self) -> None:
        self.inner.close()

    def abort(self) -> None:
        self.inner.abort()

    def set_protocol(self, protocol: asyncio.BaseProtocol) -> None:
        self.inner.set_protocol(protocol)

    def get_protocol(self) -> asyncio.BaseProtocol:
        return self.inner.get_protocol()

    def get_write_buffer_size(self) -> int:
        return self.inner.get_write_buffer_size()


class Leg:
    """One peer's link: ``up`` (what it sends) and ``down`` (what it receives).

    ``Leg(Conditions(loss=0.05, delay_s=0.1))`` impairs both directions alike; ``up=`` and
    ``down=`` set them apart. ``seed`` makes the loss and jitter of a run repeatable.
    """

    def __init__(
        self,
        both: Conditions | None = None,
        *,
        up: Conditions | None = None,
        down: Conditions | None = None,
        seed: int = 0,
        name: str = "leg",
    ) -> None:
        self.name = name
        self.up = Direction(f"{name} up", up or both, seed=seed * 2 + 1)
        self.down = Direction(f"{name} down", down or both, seed=seed * 2 + 2)
        self._wrapped: list[tuple[Any, _ImpairedTransport | None]] = []
        self._hooked_pcs: list[RTCPeerConnection] = []

    @property
    def directions(self) -> tuple[Direction, Direction]:
        return self.up, self.down

    def set(
        self,
        both: Conditions | None = None,
        *,
        up: Conditions | None = None,
        down: Conditions | None = None,
    ) -> None:
        """New conditions, for both directions or each apart, while packets flow."""
        if both is not None:
            self.up.conditions = both
            self.down.conditions = both
        if up is not None:
            self.up.conditions = up
        if down is not None:
            self.down.conditions = down

    def black_out(self, duration_s: float, *, start_in_s: float = 0.0) -> tuple[float, float]:
        """The link goes down both ways for ``duration_s`` (from ``start_in_s`` from now)."""
        window = self.up.black_out(duration_s, start_in_s=start_in_s)
        self.down.blackouts.append(window)
        return window

    @property
    def blackouts(self) -> list[tuple[float, float]]:
        return list(self.up.blackouts)

    # -- hooks -----------------------------------------------------------------------------

    def wrap(
        self, transport: asyncio.DatagramTransport, protocol: asyncio.DatagramProtocol
    ) -> asyncio.DatagramTransport:
        """Impair one asyncio datagram endpoint: what the loop hands to
        ``protocol.datagram_received`` goes ``down`` first; send through the returned
        transport to go ``up``."""
        if not hasattr(protocol, "__dict__"):
            raise TypeError(f"{type(protocol).__name__} has slots: its datagram_received stays")
        received = protocol.datagram_received
        down = self.down

        def datagram_received(data: bytes, addr: Any) -> None:
            down.send(data, addr, received)

        protocol.datagram_received = datagram_received  # type: ignore[method-assign]
        proxy = _ImpairedTransport(transport, self.up)
        self._wrapped.append((protocol, proxy))
        return proxy

    def _wrap_stun(self, protocol: aioice_ice.StunProtocol) -> bool:
        if isinstance(protocol.transport, _ImpairedTransport):
            return False
        protocol.transport = self.wrap(protocol.transport, protocol)
        return True

    def attach(self, pc: RTCPeerConnection) -> int:
        """Impair every socket of ``pc``, now and after each ``setLocalDescription`` (where
        aiortc gathers, so where new sockets appear). Returns how many were hooked now."""
        if all(pc is not seen for seen in self._hooked_pcs):
            self._hooked_pcs.append(pc)
            original = pc.setLocalDescription

            async def set_local_description(
                sessionDescription: RTCSessionDescription | None = None,
            ) -> None:
                await original(sessionDescription)
                # Before the checks start: aiortc connects in a task of its own.
                self.hook_sockets(pc)

            pc.setLocalDescription = set_local_description  # type: ignore[method-assign]
        return self.hook_sockets(pc)

    def hook_sockets(self, pc: RTCPeerConnection) -> int:
        """Impair the sockets ``pc`` has now that are not impaired yet; how many."""
        hooked = 0
        for protocol in _stun_protocols(pc):
            hooked += self._wrap_stun(protocol)
        return hooked

    @property
    def sockets(self) -> int:
        return len(self._wrapped)

    def detach(self) -> None:
        """Take the hooks out (packets in flight are dropped)."""
        for protocol, proxy in self._wrapped:
            with contextlib.suppress(AttributeError):
                del protocol.datagram_received
            if proxy is not None and getattr(protocol, "transport", None) is proxy:
                protocol.transport = proxy.inner
        self._wrapped.clear()
        self.close()

    def close(self) -> None:
        for direction in self.directions:
            direction.close()


# -- the internals -------------------------------------------------------------------------------


def _ice_transports(pc: RTCPeerConnection) -> Iterator[RTCIceTransport]:
    seen: list[RTCIceTransport] = []
    dtls = [t.sender.transport for t in pc.getTransceivers()]
    dtls += [t.receiver.transport for t in pc.getTransceivers()]
    if pc.sctp is not None:
        dtls.append(pc.sctp.transport)
    for transport in dtls:
        if transport is None:
            continue
        ice = transport.transport
        if all(ice is not other for other in seen):
            seen.append(ice)
            yield ice


def _connection(ice: RTCIceTransport) -> aioice_ice.Connection:
    connection: aioice_ice.Connection = ice.iceGatherer._connection
    return connection


def _stun_protocols(pc: RTCPeerConnection) -> list[aioice_ice.StunProtocol]:
    protocols: list[aioice_ice.StunProtocol] = []
    for ice in _ice_transports(pc):
        for protocol in _connection(ice)._protocols:
            if isinstance(protocol, aioice_ice.StunProtocol) and hasattr(protocol, "transport"):
                protocols.append(protocol)
    return protocols


def check_internals() -> None:
    """Raise ``AssertionError`` naming what moved if aiortc or aioice no longer have the
    internals of :data:`INTERNALS` where this module expects them."""
    gatherer = RTCIceGatherer(iceServers=[])  # no socket until it gathers
    connection = getattr(gatherer, "_connection", None)
    assert isinstance(connection, aioice_ice.Connection), (
        "aiortc RTCIceGatherer._connection is gone or no aioice Connection"
    )
    assert isinstance(getattr(connection, "_protocols", None), list), (
        "aioice Connection._protocols is gone"
    )
    assert RTCIceTransport(gatherer).iceGatherer is gatherer, "RTCIceTransport.iceGatherer moved"
    protocol_type = aioice_ice.StunProtocol
    for method in ("datagram_received", "send_stun", "send_data", "connection_made"):
        assert callable(getattr(protocol_type, method, None)), f"StunProtocol.{method} is gone"
    assert "transport" in getattr(protocol_type, "__annotations__", {}), (
        "aioice StunProtocol.transport is gone"
    )
    assert "__slots__" not in vars(protocol_type), "StunProtocol has slots: hooks cannot stick"


# -- a relay for peers this process does not own ---------------------------------------------


class _RelaySide(asyncio.DatagramProtocol):
    def __init__(self, relay: UdpRelay, side: str) -> None:
        self.relay = relay
        self.side = side
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # Python 3.11's selector datagram transport does not derive from DatagramTransport.
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: Address) -> None:
        self.relay._received(self.side, data, (addr[0], addr[1]))


class UdpRelay:
    """Two sockets on loopback between a peer *A* (a browser, say) and its remote *B*, so that
    each talks to the relay as if it were the other: *A* is given :attr:`a_facing` as *B*'s
    candidate, *B* is given :attr:`b_facing` as *A*'s. What *A* sends goes ``leg.up`` and out
    of ``b_facing`` to *B*; what *B* sends goes ``leg.down`` and out of ``a_facing`` to *A*.
    Each side's address is learned from what arrives (or set: :attr:`a_addr`, :attr:`b_addr`).

    Use :func:`relay_candidates` to put the relay's addresses into the SDP each side sees.
    """

    def __init__(self, leg: Leg) -> None:
        self.leg = leg
        self.a_addr: Address | None = None
        self.b_addr: Address | None = None
        self._a = _RelaySide(self, "a")
        self._b = _RelaySide(self, "b")

    @classmethod
    async def start(cls, leg: Leg, host: str = "127.0.0.1") -> UdpRelay:
        relay = cls(leg)
        loop = asyncio.get_running_loop()
        await loop.create_datagram_endpoint(lambda: relay._a, local_addr=(host, 0))
        await loop.create_datagram_endpoint(lambda: relay._b, local_addr=(host, 0))
        return relay

    @property
    def a_facing(self) -> tuple[str, int]:
        assert self._a.transport is not None
        host, port = self._a.transport.get_extra_info("sockname")[:2]
        return str(host), int(port)

    @property
    def b_facing(self) -> tuple[str, int]:
        assert self._b.transport is not None
        host, port = self._b.transport.get_extra_info("sockname")[:2]
        return str(host), int(port)

    def _received(self, side: str, data: bytes, addr: Address) -> None:
        if side == "a":
            self.a_addr = addr
            if self.b_addr is not None:
                self.leg.up.send(data, self.b_addr, self._out_b)
        else:
            self.b_addr = addr
            if self.a_addr is not None:
                self.leg.down.send(data, self.a_addr, self._out_a)

    def _out_a(self, data: bytes, addr: Any) -> None:
        if self._a.transport is not None and not self._a.transport.is_closing():
            self._a.transport.sendto(data, addr)

    def _out_b(self, data: bytes, addr: Any) -> None:
        if self._b.transport is not None and not self._b.transport.is_closing():
            self._b.transport.sendto(data, addr)

    def close(self) -> None:
        self.leg.close()
        for side in (self._a, self._b):
            if side.transport is not None:
                side.transport.close()


_CANDIDATE = re.compile(
    r"^a=candidate:(?P<foundation>\S+) (?P<component>\d+) (?P<transport>\S+) (?P<priority>\d+) "
    r"(?P<host>\S+) (?P<port>\d+) typ (?P<type>\S+)(?P<rest>.*)$"
)


def relay_candidates(sdp: str, address: tuple[str, int]) -> tuple[str, tuple[str, int] | None]:
    """``sdp`` with its ICE candidates replaced by one host candidate at ``address`` (the
    relay), in every media section; returns it and the original IPv4 UDP host candidate the
    relay stands for (``None`` if it had none). End-of-candidates lines stay."""
    original: tuple[str, int] | None = None
    lines: list[str] = []
    placed_in_section = False
    for line in sdp.splitlines():
        if line.startswith("m="):
            placed_in_section = False
        match = _CANDIDATE.match(line)
        if match is None:
            lines.append(line)
            continue
        host = match["host"]
        ipv4 = re.fullmatch(r"\d+\.\d+\.\d+\.\d+", host) is not None
        if match["transport"].lower() != "udp" or not ipv4 or match["component"] != "1":
            continue
        if original is None and match["type"] == "host":
            original = (host, int(match["port"]))
        if placed_in_section:
            continue
        placed_in_section = True
        lines.append(
            f"a=candidate:{match['foundation']} 1 udp {match['priority']} {address[0]} "
            f"{address[1]} typ host"
        )
    return "\r\n".join(lines) + "\r\n", original
