"""The fan-out half of forwarding: :class:`Fanout` feeds encoded frames of one kind to the
:class:`Outlet`\\ s attached to it, and names the published track (:class:`Origin`) behind it.

A published :class:`~media.source.TrackSource` and a shared
:class:`~media.transcode.Transcode` are fan-outs; a :class:`~media.subscriber.SubscriberTrack`
is an outlet. Both sides are typed here by Protocols, so this module imports neither of them
and none of them has to import another to name what it is attached to.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from .keyframes import EncodedFrame

__all__ = ["Fanout", "Origin", "Outlet"]


class Origin(Protocol):
    """The published track behind a fan-out (a ``TrackSource``)."""

    @property
    def kind(self) -> str: ...

    @property
    def room_id(self) -> str: ...

    @property
    def publisher_id(self) -> str: ...

    @property
    def track_id(self) -> str: ...

    @property
    def live(self) -> bool: ...


class Outlet(Protocol):
    """What a :class:`Fanout` feeds (a ``SubscriberTrack``). Only fan-outs call the methods:
    they move an outlet from one fan-out to another and hand it frames."""

    @property
    def kind(self) -> str: ...

    @property
    def codec(self) -> str | None: ...

    @property
    def source(self) -> Fanout | None: ...

    def set_source(self, source: Fanout | None) -> None:
        """The fan-out that feeds the outlet from now on (``None``: none, it idles)."""
        ...

    def put(self, frame: EncodedFrame) -> None:
        """One encoded frame for the outlet's queue; must not block."""
        ...

    def replay(self, frames: Sequence[EncodedFrame]) -> None:
        """Start with a cached keyframe group (a source that cannot be asked for a keyframe)."""
        ...


class Fanout:
    """What an :class:`Outlet` can be attached to: encoded frames of one kind."""

    kind: str
    room_id: str
    publisher_id: str
    track_id: str
    live: bool

    def __init__(self) -> None:
        self._outlets: set[Outlet] = set()

    @property
    def origin(self) -> Origin:
        """The published track behind this fan-out."""
        raise NotImplementedError

    @property
    def subscribers(self) -> frozenset[Outlet]:
        return frozenset(self._outlets)

    def request_keyframe(self) -> None:
        raise NotImplementedError

    def attach(self, outlet: Outlet) -> None:
        """Feed ``outlet`` from here, taking it away from whatever fed it before."""
        if outlet.kind != self.kind:
            raise ValueError(f"cannot feed a {outlet.kind} subscriber from a {self.kind} track")
        previous = outlet.source
        if previous is self:
            return
        if previous is not None:
            previous.detach(outlet)
        outlet.set_source(self)
        self._outlets.add(outlet)
        if self.kind == "video":
            self.request_keyframe()

    def detach(self, outlet: Outlet) -> None:
        """Stop feeding ``outlet``; it idles until attached again."""
        if outlet in self._outlets:
            self._outlets.discard(outlet)
            outlet.set_source(None)

    def _detach_all(self) -> None:
        for outlet in tuple(self._outlets):
            self.detach(outlet)

    def _fan(self, frame: EncodedFrame) -> None:
        for outlet in tuple(self._outlets):
            outlet.put(frame)
