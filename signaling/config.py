"""How the Hub behaves: limits, timers and what the staff consoles are told."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["HubConfig"]


@dataclass(frozen=True, slots=True)
class HubConfig:
    max_message_bytes: int = 64 * 1024
    heartbeat_s: float = 20.0
    #: A waiting customer whose socket drops keeps their queue place this long.
    waiting_grace_s: float = 15.0
    shutdown_timeout_s: float = 5.0
    #: Whether the server grades video live (staff consoles show it, or say it is off).
    grading: bool = False
    #: Seconds of pre-roll a capture reaches back (None: recording is off).
    preroll_s: float | None = None
    #: Messages one socket may send: per second, and in a burst (a browser's offer with its
    #: trickled candidates is a burst of ~20). Past it a message gets ``rate_limited``.
    message_rate: float = 30.0
    message_burst: float = 80.0
    #: A socket refused this many times in a row is closed (policy violation).
    max_refused: int = 200
    #: Messages queued for one socket; a client that lets more pile up is closed (4008) and
    #: resumes, rather than the server buffering for it without bound.
    outbox_limit: int = 512
