"""Several nodes: room homes, routing of signaling to the home node, node RPC, and captures
run on the home node."""

from __future__ import annotations

from .captures import HomeMedia, RoutedCaptures
from .routing import HubSide, RoomRouter
from .rpc import (
    NodeRpc,
    NodeUnreachable,
    RemoteFailure,
    RoomMoved,
)

__all__ = [
    "HomeMedia",
    "HubSide",
    "NodeRpc",
    "NodeUnreachable",
    "RemoteFailure",
    "RoomMoved",
    "RoomRouter",
    "RoutedCaptures",
]
