"""How the Hub behaves: limits, timers and what the staff consoles are told."""

from __future__ import annotations

from dataclasses import dataclass, field

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
    #: Origins (``scheme://host[:port]``, lower case) whose pages may open ``/ws``. Empty: only
    #: a page of the very origin the upgrade was sent to. An upgrade without ``Origin`` (not a
    #: browser: it carries no ambient cookie a page could abuse) is always let through.
    allowed_origins: frozenset[str] = field(default_factory=frozenset)
    #: A socket that has not joined this long after the upgrade is closed (1008).
    join_deadline_s: float = 10.0
    #: Open sockets per client address that came without a staff credential (customers,
    #: camera pages, anyone before ``join``); past it the upgrade is refused with 429.
    max_sockets_per_address: int = 32
    #: Chat one participant (one subject: every socket of one join link counts together) may
    #: send per minute, in messages and in UTF-8 bytes of text; and the same for a whole room.
    chat_messages_per_min: int = 60
    chat_bytes_per_min: int = 64 * 1024
    chat_room_messages_per_min: int = 180
    chat_room_bytes_per_min: int = 192 * 1024
    #: Chat replayed on ``join`` is sent in pages of at most this many messages and bytes.
    chat_page_size: int = 100
    chat_page_bytes: int = 256 * 1024
    #: How often an open staff socket's credential is checked again (a session that expired or
    #: a token that was revoked is closed with 4401 within this period).
    recheck_s: float = 60.0

    def __post_init__(self) -> None:
        for origin in self.allowed_origins:
            if origin != origin.lower() or "://" not in origin or origin.endswith("/"):
                raise ValueError(f"allowed origin {origin!r} is not a lower-case scheme://host")
        if self.chat_page_size < 1 or self.chat_page_bytes < 1:
            raise ValueError("chat pages need room for at least one message")
