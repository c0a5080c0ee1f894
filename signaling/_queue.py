"""The agent queue: waiting customers, the lobby's broadcasts of it, and the accept race.

The queue itself lives on the bus (shared by every node); this keeps what one node adds to it:
coalesced broadcasts to the lobby, case events to the case's room, and the grace period a
waiting customer whose socket dropped keeps their place for."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from aioutil import OwnedTasks

from . import outbound
from ._audience import LOBBY, room_topic
from .bus import Bus, QueueEntry
from .errors import SignalingError, SignalingErrorCode
from .ids import RoomId
from .messages import Role
from .ports import CaseDirectory, CaseStatus, CaseSummary, Identity

__all__ = ["AgentQueue"]

logger = logging.getLogger(__name__)


class AgentQueue:
    """Waiting cases and who takes them."""

    def __init__(
        self,
        *,
        bus: Bus,
        cases: CaseDirectory,
        clock: Callable[[], float],
        grace_s: float,
        tasks: OwnedTasks,
    ) -> None:
        self._bus = bus
        self._cases = cases
        self._clock = clock
        self._grace_s = grace_s
        self._tasks = tasks
        self._departures: dict[str, asyncio.TimerHandle] = {}
        self._closed = False
        #: A queue broadcast is being sent / another change came while it was.
        self._sending = False
        self._dirty = False

    def close(self) -> None:
        """Stop the grace timers: a hub going away does not take customers off the queue."""
        self._closed = True
        for handle in self._departures.values():
            handle.cancel()
        self._departures.clear()

    async def accept(self, case_id: str, agent: Identity) -> CaseSummary:
        """Take a waiting case: exactly one of several racing agents wins; the others get
        ``already_accepted``."""
        summary = await self._cases.get(case_id)
        if summary is None:
            raise SignalingError(SignalingErrorCode.NOT_FOUND, "no such case", ref="accept")
        if not await self._bus.queue_claim(case_id, agent.subject):
            fresh = await self._cases.get(case_id)
            if fresh is not None and fresh.status is CaseStatus.IN_CALL:
                raise SignalingError(
                    SignalingErrorCode.ALREADY_ACCEPTED,
                    "another agent already accepted this case",
                    ref="accept",
                )
            raise SignalingError(
                SignalingErrorCode.NOT_WAITING, "the customer is not waiting", ref="accept"
            )
        summary = await self._cases.call_started(case_id, agent)
        await self.publish_case(summary)
        await self.publish()
        return summary

    async def message(self) -> outbound.Message:
        """The queue as it is now, as the lobby is sent it."""
        return outbound.queue(await self._bus.queue_entries())

    async def publish(self) -> None:
        """Send the lobby the queue as it is now. Changes that come while a broadcast is on its
        way are sent together once it is done (the newest queue, not one message per change):
        a burst of arrivals costs a few broadcasts, not one per customer for every agent."""
        if self._sending:
            self._dirty = True
            return
        self._sending = True
        try:
            while True:
                self._dirty = False
                await self._bus.publish(LOBBY, await self.message())
                if not self._dirty:
                    return
        finally:
            self._sending = False

    async def publish_case(self, summary: CaseSummary) -> None:
        await self._bus.publish(room_topic(RoomId.case(summary.case_id)), outbound.case(summary))

    async def case_changed(self, summary: CaseSummary) -> None:
        await self.publish_case(summary)
        if summary.status is not CaseStatus.WAITING and await self._bus.queue_remove(
            summary.case_id
        ):
            await self.publish()

    async def enqueue(self, summary: CaseSummary) -> bool:
        """Put a waiting case on the queue unless it is there; whether it was added."""
        entries = {entry.case_id for entry in await self._bus.queue_entries()}
        if summary.case_id in entries:
            return False
        await self._bus.queue_put(
            QueueEntry(summary.case_id, summary.waiting_since or self._clock(), summary.to_json())
        )
        return True

    # -- a customer's socket dropping and coming back ----------------------------------------

    def customer_back(self, case_id: str) -> None:
        """The customer reconnected within the grace period: they keep their place."""
        pending = self._departures.pop(case_id, None)
        if pending is not None:
            pending.cancel()

    def customer_gone(self, case_id: str) -> None:
        """A waiting customer keeps their place for a grace period (a phone changing network)."""
        if self._closed:
            return
        self.customer_back(case_id)

        def expire() -> None:
            self._departures.pop(case_id, None)
            self._tasks.spawn(self._departed(case_id), name=f"depart-{case_id}")

        loop = asyncio.get_running_loop()
        self._departures[case_id] = loop.call_later(self._grace_s, expire)

    async def _departed(self, case_id: str) -> None:
        try:
            present = [
                p
                for p in await self._bus.presence_list(RoomId.case(case_id))
                if p.get("role") == Role.CUSTOMER
            ]
            if present:
                return
            if await self._bus.queue_remove(case_id):
                summary = await self._cases.customer_left(case_id)
                await self.publish_case(summary)
                await self.publish()
        except Exception:
            logger.exception("case %s: departure handling failed", case_id)
