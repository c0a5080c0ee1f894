"""One node or several: the bus (memory, or Redis with the room router that sends each room's
media to its home node), and the capture service that fits it."""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass

from evidence import EvidenceArchive
from media import MediaEngine
from server.capture import (
    CaptureConfig,
    CaptureService,
    FiledHook,
    FrameSource,
    TranscriptSource,
)
from server.cluster import HomeMedia, RoomRouter, RoutedCaptures
from server.settings import Settings
from signaling import Bus, MediaGateway, MemoryBus, RedisBus

__all__ = ["Nodes", "capture_config", "open_captures", "open_nodes"]


@dataclass(slots=True)
class Nodes:
    """The bus, and with Redis the router that sends each room's media to its home node."""

    bus: Bus
    gateway: MediaGateway
    node_id: str
    router: RoomRouter | None = None


def open_nodes(settings: Settings, media: MediaEngine) -> Nodes:
    """The memory bus (one process), or Redis and the room router (several nodes)."""
    if not settings.redis_url:
        return Nodes(MemoryBus(), media, f"{socket.gethostname()}-{os.getpid()}")
    beat = settings.node_heartbeat_s
    bus = RedisBus(
        settings.redis_url,
        node_id=settings.node_id or None,
        prefix=settings.redis_prefix,
        heartbeat_s=beat,
        presence_ttl_s=5 * beat,
        room_home_ttl_s=5 * beat,
    )
    router = RoomRouter(media, bus, heartbeat_s=beat)
    return Nodes(bus, router, bus.node_id, router)


def capture_config(settings: Settings, spool_dir: str | None = None) -> CaptureConfig:
    return CaptureConfig(
        spool_dir=settings.data_dir / (spool_dir or "recording"),
        preroll_s=settings.preroll_s,
        privacy_notice_version=settings.privacy_notice_version,
        retention_class=settings.evidence_retention_class,
        stamp_timezone=settings.stamp_timezone,
    )


def open_captures(
    settings: Settings,
    media: MediaEngine,
    nodes: Nodes,
    archive: EvidenceArchive,
    frames: FrameSource,
    on_filed: FiledHook,
    worker: int,
    transcripts: TranscriptSource | None = None,
) -> CaptureService:
    """Captures run on this node's engine, or (several nodes) on the room's home node.
    ``transcripts``: the captions a case's clips carry in their records."""
    if nodes.router is None:
        return CaptureService(
            capture_config(settings),
            media,
            archive,
            frames,
            on_filed=on_filed,
            transcripts=transcripts,
        )
    # Each node keeps its own recording spool (the recovery at start files only what this
    # node, in an earlier life, left behind; never another node's running recording).
    slot = f"{socket.gethostname()}-{settings.port}-{worker}"
    return RoutedCaptures(
        capture_config(settings, f"nodes/{slot}/recording"),
        HomeMedia(nodes.router),
        archive,
        frames,
        on_filed=on_filed,
        transcripts=transcripts,
        router=nodes.router,
        shared_archive=archive,
    )
