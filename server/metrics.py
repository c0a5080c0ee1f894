"""Prometheus metrics with a registry per app (several apps can live in one test process).

Gauges that mirror state elsewhere (cases by state, live calls, peers) are read when scraped;
counters are bumped by the hub and the webhook dispatcher through small methods.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Awaitable, Callable, Mapping
from typing import Literal

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    generate_latest,
)

__all__ = ["CONTENT_TYPE", "Metrics"]

logger = logging.getLogger(__name__)

CONTENT_TYPE = CONTENT_TYPE_LATEST

_LABEL = re.compile(r"[a-z][a-z0-9_.-]{0,31}")
#: Message types arrive from clients: cap the label values so garbage cannot blow up the series.
_MAX_TYPES = 64

CaseCounts = Callable[[], Awaitable[Mapping[str, int]]]


class Metrics:
    """The service's metrics. Other packages register theirs on :attr:`registry`."""

    def __init__(self, namespace: str = "inspect") -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.cases = Gauge(
            "cases",
            "Cases by state (read from the database when scraped)",
            ["state"],
            namespace=namespace,
            registry=r,
        )
        self.live_calls = Gauge(
            "live_calls", "Cases with an agent in the call", namespace=namespace, registry=r
        )
        self.peers = Gauge(
            "peers", "Server-side WebRTC peer connections", namespace=namespace, registry=r
        )
        self.ws_connections = Gauge(
            "ws_connections", "Open /ws WebSocket connections", namespace=namespace, registry=r
        )
        self.ws_messages = Counter(
            "ws_messages",
            "WebSocket messages by direction and type",
            ["direction", "type"],
            namespace=namespace,
            registry=r,
        )
        self.webhook_deliveries = Counter(
            "webhook_deliveries",
            "Webhook delivery attempts by outcome",
            ["outcome"],
            namespace=namespace,
            registry=r,
        )
        self._case_counts: CaseCounts | None = None
        self._types: set[str] = set()

    # -- sources read at scrape time -----------------------------------------------------------

    def set_case_counts(self, source: CaseCounts) -> None:
        """``source()`` returns ``{state: count}``; awaited on every scrape."""
        self._case_counts = source

    def watch(self, name: Literal["live_calls", "peers"], read: Callable[[], float]) -> None:
        """Have a gauge report ``read()`` when scraped (the hub's live calls, media's peers)."""
        gauge = self.live_calls if name == "live_calls" else self.peers
        gauge.set_function(read)

    # -- events --------------------------------------------------------------------------------

    def ws_connected(self, delta: int = 1) -> None:
        """+1 when a socket opens, -1 when it closes."""
        self.ws_connections.inc(delta)

    def ws_message(self, direction: Literal["in", "out"], type_: str) -> None:
        label = type_ if _LABEL.fullmatch(type_) else "other"
        if label not in self._types:
            if len(self._types) >= _MAX_TYPES:
                label = "other"
            else:
                self._types.add(label)
        self.ws_messages.labels(direction=direction, type=label).inc()

    def webhook_delivery(self, outcome: str) -> None:
        """``delivered``, ``retry`` or ``failed``."""
        self.webhook_deliveries.labels(outcome=outcome).inc()

    # -- exposition ----------------------------------------------------------------------------

    async def render(self) -> bytes:
        """The Prometheus text exposition, after refreshing the scrape-time gauges."""
        if self._case_counts is not None:
            try:
                counts = await self._case_counts()
            except Exception:
                logger.exception("reading case counts for /metrics failed")
            else:
                for state, count in counts.items():
                    self.cases.labels(state=state).set(count)
        return generate_latest(self.registry)
