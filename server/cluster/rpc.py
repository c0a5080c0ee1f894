"""Requests between the nodes of a deployment over the shared Redis bus.

Each node follows two topics of its own: ``rpc:<node>`` (requests and one-way notices to it)
and ``rpc-reply:<node>`` (answers to its requests). A request names its sender; the handler's
result (JSON) or its error goes back on the sender's reply topic. Errors cross as data and are
raised again on the caller's side as the same kinds (``server.cluster.errors``).

A request that nobody follows (Redis counts the receivers of a publish: 0 means the node's
reader is gone, e.g. the process died) fails at once with :class:`NodeUnreachable`
(``listening`` False); one that gets no answer in time fails with it too (``listening`` True).
Replies lost while Redis reconnects surface as timeouts.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from server.cluster.errors import EXPECTED, RemoteFailure, RoomMoved, decode_error, encode_error
from signaling import Lagged, RedisBus, SignalingError, SignalingErrorCode, Subscription

__all__ = ["NodeRpc", "NodeUnreachable", "RemoteFailure", "RoomMoved"]

logger = logging.getLogger(__name__)

#: ``handler(sender node, args)`` -> a JSON-serialisable result.
Handler = Callable[[str, Mapping[str, Any]], Awaitable[Any]]


class NodeUnreachable(SignalingError, ConnectionError):
    """Another node did not take or answer a request. ``message`` is fit for a client."""

    code = SignalingErrorCode.UNAVAILABLE
    retryable = True

    def __init__(self, node: str, detail: str, *, listening: bool) -> None:
        super().__init__(
            message="the server holding this call's media did not answer; retry shortly"
        )
        self.node = node
        self.detail = detail
        #: False: nobody follows the node's topic (gone, or reconnecting to Redis).
        self.listening = listening

    def __str__(self) -> str:
        return f"{self.message} (node {self.node}: {self.detail})"


class NodeRpc:
    """This node's requests to others and its answers to theirs. ``start()`` / ``aclose()``."""

    def __init__(self, bus: RedisBus, *, timeout_s: float = 10.0) -> None:
        self.bus = bus
        self.node_id = bus.node_id
        self.timeout_s = timeout_s
        self._handlers: dict[str, Handler] = {}
        self._pending: dict[str, asyncio.Future[Any]] = {}
        self._subscriptions: list[Subscription] = []
        self._tasks: set[asyncio.Task[None]] = set()
        self._started = False
        self._closed = False

    @staticmethod
    def request_topic(node: str) -> str:
        return f"rpc:{node}"

    @staticmethod
    def reply_topic(node: str) -> str:
        return f"rpc-reply:{node}"

    def handle(self, method: str, handler: Handler) -> None:
        """Serve ``method`` (a request's result, or nothing for a notice)."""
        self._handlers[method] = handler

    async def start(self) -> None:
        if self._started:
            return
        self._started = True
        for topic, on_event in (
            (self.request_topic(self.node_id), self._on_request),
            (self.reply_topic(self.node_id), self._on_reply),
        ):
            subscription = self.bus.subscribe(topic)
            self._subscriptions.append(subscription)
            self._spawn(self._pump(topic, subscription, on_event), f"rpc-pump-{topic}")

    async def aclose(self) -> None:
        """Stop serving; pending requests fail with :class:`NodeUnreachable`. Idempotent."""
        if self._closed:
            return
        self._closed = True
        for subscription in self._subscriptions:
            await subscription.aclose()
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for request_id, future in list(self._pending.items()):
            if not future.done():
                future.set_exception(NodeUnreachable("-", "this node is stopping", listening=True))
            self._pending.pop(request_id, None)

    # -- calling ------------------------------------------------------------------------------

    async def call(
        self,
        node: str,
        method: str,
        args: Mapping[str, Any],
        *,
        timeout_s: float | None = None,
    ) -> Any:
        """Run ``method`` on ``node`` and return its result (raising its error)."""
        if self._closed:
            raise NodeUnreachable(node, "this node is stopping", listening=True)
        request_id = uuid.uuid4().hex
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._pending[request_id] = future
        request = {"id": request_id, "from": self.node_id, "method": method, "args": dict(args)}
        try:
            receivers = await self.bus.send(self.request_topic(node), request)
            if receivers == 0:
                raise NodeUnreachable(
                    node, f"nobody follows its requests ({method})", listening=False
                )
            wait = self.timeout_s if timeout_s is None else timeout_s
            try:
                async with asyncio.timeout(wait):
                    return await future
            except TimeoutError:
                raise NodeUnreachable(
                    node, f"no answer to {method} within {wait:g}s", listening=True
                ) from None
        finally:
            self._pending.pop(request_id, None)

    async def notify(self, node: str, method: str, args: Mapping[str, Any]) -> bool:
        """Send a one-way notice; False when nobody follows the node's topic."""
        notice = {"id": None, "from": self.node_id, "method": method, "args": dict(args)}
        return await self.bus.send(self.request_topic(node), notice) > 0

    async def listening(self, node: str) -> bool:
        """Whether ``node``'s reader follows its topic right now (a notice nobody serves)."""
        return await self.notify(node, "ping", {})

    # -- serving ------------------------------------------------------------------------------

    def _spawn(self, coro: Any, name: str) -> None:
        task = asyncio.create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _pump(
        self,
        topic: str,
        subscription: Subscription,
        on_event: Callable[[Mapping[str, Any]], None],
    ) -> None:
        while not self._closed:
            try:
                async for event in subscription:
                    on_event(event)
                return
            except Lagged:
                # Requests or replies were lost (Redis reconnected): their callers time out.
                logger.info("node %s: messages on %s may have been lost", self.node_id, topic)
            except Exception:
                logger.exception("node %s: reading %s failed", self.node_id, topic)
                await asyncio.sleep(0.1)

    def _on_reply(self, event: Mapping[str, Any]) -> None:
        future = self._pending.get(str(event.get("id")))
        if future is None or future.done():
            return  # timed out meanwhile
        if event.get("ok"):
            future.set_result(event.get("result"))
        else:
            future.set_exception(decode_error(event.get("error") or {}, str(event.get("node"))))

    def _on_request(self, event: Mapping[str, Any]) -> None:
        method = str(event.get("method"))
        if method == "ping":
            return
        handler = self._handlers.get(method)
        if handler is None:
            logger.warning("node %s: unknown request %r", self.node_id, method)
        self._spawn(self._serve(event, handler), f"rpc-{method}")

    async def _serve(self, event: Mapping[str, Any], handler: Handler | None) -> None:
        request_id = event.get("id")
        sender = str(event.get("from"))
        reply: dict[str, Any] = {"id": request_id, "node": self.node_id}
        try:
            if handler is None:
                raise RemoteFailure(message=f"unknown request {event.get('method')!r}")
            result = await handler(sender, event.get("args") or {})
            reply.update(ok=True, result=result)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            if not isinstance(exc, EXPECTED):
                logger.exception("node %s: %s failed", self.node_id, event.get("method"))
            reply.update(ok=False, error=encode_error(exc))
        if request_id is None:
            return  # a notice
        with contextlib.suppress(SignalingError):  # Redis gone: the caller times out
            await self.bus.send(self.reply_topic(sender), reply)
