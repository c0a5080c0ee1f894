"""Site cameras on this node: the page publishing each camera, and the staff watching them.

A camera page publishes into its camera's media room; the newest page of a camera wins. A
viewer in a site room has one server-side peer per camera it watches, named
``<participant id>-<camera id>``, so every track that peer receives is known to be that
camera's (and ``renegotiate`` for it can say which camera it is for)."""

from __future__ import annotations

from dataclasses import dataclass

from ._connection import Connection
from .ports import MediaGateway

__all__ = ["CameraWatching", "Watch"]


@dataclass(frozen=True, slots=True)
class Watch:
    """One viewer's server-side peer for one camera."""

    conn: Connection
    camera_id: str
    peer_id: str


def _peer_id(conn: Connection, camera_id: str) -> str:
    return f"{conn.participant_id}-{camera_id}"


class CameraWatching:
    def __init__(self, media: MediaGateway) -> None:
        self._media = media
        #: Viewers' per-camera peers, by the peer's media participant id.
        self._watches: dict[str, Watch] = {}
        #: The socket publishing each camera (the newest page wins).
        self._publishers: dict[str, Connection] = {}

    # -- publishers ---------------------------------------------------------------------------

    def publisher(self, camera_id: str) -> Connection | None:
        return self._publishers.get(camera_id)

    def publish(self, camera_id: str, conn: Connection) -> Connection | None:
        """``conn`` publishes ``camera_id`` now; the page it replaces, if any."""
        previous = self._publishers.get(camera_id)
        self._publishers[camera_id] = conn
        return previous if previous is not conn else None

    def stop_publishing(self, camera_id: str, conn: Connection) -> None:
        """``conn`` left; a newer page that replaced it keeps publishing."""
        if self._publishers.get(camera_id) is conn:
            del self._publishers[camera_id]

    # -- viewers ------------------------------------------------------------------------------

    def peer(self, conn: Connection, camera_id: str) -> str | None:
        """The peer through which ``conn`` watches ``camera_id``, if it does."""
        watch = self._watches.get(_peer_id(conn, camera_id))
        return watch.peer_id if watch is not None else None

    def watch(self, conn: Connection, camera_id: str) -> str:
        """Start watching: the media participant id of the viewer's peer for that camera."""
        peer_id = _peer_id(conn, camera_id)
        self._watches.setdefault(peer_id, Watch(conn, camera_id, peer_id))
        return peer_id

    def watcher(self, peer_id: str) -> Watch | None:
        """Whose peer ``peer_id`` is, if it is a viewer's per-camera peer."""
        return self._watches.get(peer_id)

    async def unwatch(self, conn: Connection, camera_id: str) -> None:
        """Close the viewer's peer for that camera (nothing if it has none)."""
        watch = self._watches.pop(_peer_id(conn, camera_id), None)
        if watch is not None:
            await self._media.close_peer(watch.peer_id)

    async def unwatch_all(self, conn: Connection) -> None:
        for watch in [w for w in self._watches.values() if w.conn is conn]:
            await self.unwatch(conn, watch.camera_id)
