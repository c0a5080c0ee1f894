"""Captures and snapshots with several nodes: they run where the room's media is.

:class:`HomeMedia` has the media engine's capture methods (what ``CaptureService`` calls) and
runs each on the room's home node, here or by request (:mod:`.node_rpc`). Files go where the
caller says, under the data directory the nodes share, so their paths hold on every node.

:class:`RoutedCaptures` is the ``CaptureService`` of a node among several: a stop request may
reach a node other than the one that started the capture (the HTTP port is shared), so a
capture unknown here is stopped by whichever live node has it, and the evidence item it filed
is read back from the shared archive.
"""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import logging
from collections.abc import Collection, Mapping
from pathlib import Path
from typing import Any

from evidence import EvidenceArchive, EvidenceItem
from media import CaptureHandle, Gap, RecordedFile, SourceStats
from server.capture.service import CaptureService, CaptureTarget
from server.cluster.routing import RoomRouter
from server.errors import NotFound
from signaling import Identity, Role

__all__ = ["HomeMedia", "RoutedCaptures"]

logger = logging.getLogger(__name__)

#: A capture's files are finished and filed within this (long recordings flush as they go).
CAPTURE_TIMEOUT_S = 30.0


def _handle_json(handle: CaptureHandle) -> dict[str, Any]:
    return {**dataclasses.asdict(handle), "files": [str(path) for path in handle.files]}


def _handle(data: Mapping[str, Any]) -> CaptureHandle:
    return CaptureHandle(
        id=str(data["id"]),
        room_id=str(data["room_id"]),
        name=str(data["name"]),
        files=tuple(Path(path) for path in data["files"]),
        requested_at=float(data["requested_at"]),
    )


def _file_json(recorded: RecordedFile) -> dict[str, Any]:
    return {
        **dataclasses.asdict(recorded),
        "path": str(recorded.path),
        "gaps": [gap.to_json() for gap in recorded.gaps],
    }


def _file(data: Mapping[str, Any]) -> RecordedFile:
    fields = dict(data)
    fields["path"] = Path(fields["path"])
    fields["codecs"] = tuple(fields["codecs"])
    # A home node from before gaps were recorded sends none.
    fields["gaps"] = tuple(Gap.from_json(gap) for gap in fields.get("gaps") or ())
    return RecordedFile(**fields)


def _publishers(participants: Collection[str] | None) -> list[str] | None:
    return None if participants is None else list(participants)


class HomeMedia:
    """The engine's ``start_capture`` / ``stop_capture`` / ``save_last`` / ``snapshot`` /
    ``source_stats``, each run on the room's home node (here when this node is the home or
    the room has none: then nothing is published and the engine says so)."""

    def __init__(self, router: RoomRouter) -> None:
        self._router = router
        self._engine = router.engine
        self._node = router.node_id
        #: Running captures started through this node: capture id -> the node recording it.
        self._captures: dict[str, str] = {}
        for method, handler in (
            ("start_capture", self._serve_start),
            ("stop_capture", self._serve_stop),
            ("save_last", self._serve_save_last),
            ("snapshot", self._serve_snapshot),
            ("source_stats", self._serve_stats),
        ):
            router.rpc.handle(method, handler)

    async def _home(self, room_id: str) -> str:
        return await self._router.home_of(room_id) or self._node

    async def _call(self, node: str, method: str, args: Mapping[str, Any]) -> Any:
        return await self._router.rpc.call(node, method, args, timeout_s=CAPTURE_TIMEOUT_S)

    async def start_capture(
        self,
        room_id: str,
        directory: Path,
        *,
        name: str,
        preroll: bool = True,
        preroll_seconds: float | None = None,
        participants: Collection[str] | None = None,
    ) -> CaptureHandle:
        home = await self._home(room_id)
        if home == self._node:
            handle = await self._engine.start_capture(
                room_id, directory, name=name, preroll=preroll,
                preroll_seconds=preroll_seconds, participants=participants,
            )  # fmt: skip
        else:
            args = {
                "room": room_id, "directory": str(directory), "name": name, "preroll": preroll,
                "preroll_seconds": preroll_seconds, "participants": _publishers(participants),
            }  # fmt: skip
            handle = _handle(await self._call(home, "start_capture", args))
        self._captures[handle.id] = home
        return handle

    async def stop_capture(self, handle: CaptureHandle) -> list[RecordedFile]:
        home = self._captures.pop(handle.id, self._node)
        if home == self._node:
            return await self._engine.stop_capture(handle)
        files = await self._call(home, "stop_capture", {"handle": _handle_json(handle)})
        return [_file(data) for data in files]

    async def save_last(
        self,
        room_id: str,
        seconds: float,
        directory: Path,
        *,
        name: str,
        participants: Collection[str] | None = None,
    ) -> list[RecordedFile]:
        home = await self._home(room_id)
        if home == self._node:
            return await self._engine.save_last(
                room_id, seconds, directory, name=name, participants=participants
            )
        args = {
            "room": room_id, "seconds": seconds, "directory": str(directory), "name": name,
            "participants": _publishers(participants),
        }  # fmt: skip
        return [_file(data) for data in await self._call(home, "save_last", args)]

    async def snapshot(
        self, room_id: str, participants: Collection[str] | None = None
    ) -> bytes | None:
        home = await self._home(room_id)
        if home == self._node:
            return await self._engine.snapshot(room_id, participants)
        args = {"room": room_id, "participants": _publishers(participants)}
        jpeg = await self._call(home, "snapshot", args)
        return None if jpeg is None else base64.b64decode(jpeg)

    async def source_stats(self, room_id: str) -> list[SourceStats]:
        home = await self._home(room_id)
        if home == self._node:
            return self._engine.source_stats(room_id)
        stats = await self._call(home, "source_stats", {"room": room_id})
        return [SourceStats(**data) for data in stats]

    # -- requests from other nodes ----------------------------------------------------------------

    async def _serve_start(self, origin: str, args: Mapping[str, Any]) -> dict[str, Any]:
        handle = await self._engine.start_capture(
            str(args["room"]), Path(args["directory"]), name=str(args["name"]),
            preroll=bool(args["preroll"]), preroll_seconds=args.get("preroll_seconds"),
            participants=args.get("participants"),
        )  # fmt: skip
        return _handle_json(handle)

    async def _serve_stop(self, origin: str, args: Mapping[str, Any]) -> list[dict[str, Any]]:
        files = await self._engine.stop_capture(_handle(args["handle"]))
        return [_file_json(recorded) for recorded in files]

    async def _serve_save_last(self, origin: str, args: Mapping[str, Any]) -> list[dict[str, Any]]:
        files = await self._engine.save_last(
            str(args["room"]), float(args["seconds"]), Path(args["directory"]),
            name=str(args["name"]), participants=args.get("participants"),
        )  # fmt: skip
        return [_file_json(recorded) for recorded in files]

    async def _serve_snapshot(self, origin: str, args: Mapping[str, Any]) -> str | None:
        jpeg = await self._engine.snapshot(str(args["room"]), args.get("participants"))
        return None if jpeg is None else base64.b64encode(jpeg).decode("ascii")

    async def _serve_stats(self, origin: str, args: Mapping[str, Any]) -> list[dict[str, Any]]:
        return [dataclasses.asdict(stats) for stats in self._engine.source_stats(str(args["room"]))]


def _identity_json(identity: Identity) -> dict[str, Any]:
    return {**dataclasses.asdict(identity), "role": identity.role.value}


def _identity(data: Mapping[str, Any]) -> Identity:
    return Identity(**{**data, "role": Role(data["role"])})


class RoutedCaptures(CaptureService):
    """A ``CaptureService`` whose stop also finds captures another node started."""

    def __init__(
        self, *args: Any, router: RoomRouter, shared_archive: EvidenceArchive, **kwargs: Any
    ) -> None:
        super().__init__(*args, **kwargs)
        self._router = router
        self._shared_archive = shared_archive
        router.rpc.handle("capture_stop", self._serve_stop)

    async def stop_target(
        self,
        target: CaptureTarget,
        capture_id: str,
        operator: Identity,
        case: Any = None,
    ) -> EvidenceItem:
        try:
            return await super().stop_target(target, capture_id, operator, case)
        except NotFound:
            item_id = await self._stop_elsewhere(target, capture_id, operator)
            if item_id is None:
                raise
        return await self._shared_archive.peek(item_id)

    async def _stop_elsewhere(
        self, target: CaptureTarget, capture_id: str, operator: Identity
    ) -> str | None:
        """Ask every other live node to stop the capture; the one running it answers with the
        item it filed."""
        nodes = [
            node for node in await self._router.bus.live_nodes() if node != self._router.node_id
        ]
        args = {
            "target": target.to_manifest(),
            "capture": capture_id,
            "operator": _identity_json(operator),
        }

        async def ask(node: str) -> str | None:
            try:
                return str(
                    await self._router.rpc.call(
                        node, "capture_stop", args, timeout_s=CAPTURE_TIMEOUT_S
                    )
                )
            except NotFound:
                return None

        results = await asyncio.gather(*(ask(node) for node in nodes), return_exceptions=True)
        for result in results:
            if isinstance(result, str):
                return result
        for result in results:  # nobody said they have it; one that failed otherwise may
            if isinstance(result, BaseException):
                raise result
        return None

    async def _serve_stop(self, origin: str, args: Mapping[str, Any]) -> str:
        target = CaptureTarget.from_manifest(args["target"])
        item = await super().stop_target(target, str(args["capture"]), _identity(args["operator"]))
        return item.item_id
