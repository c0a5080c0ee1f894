"""ICE servers for browsers and server peers, with short-lived TURN credentials.

TURN credentials follow coturn's ``use-auth-secret`` (the TURN REST API): the username is
``<expiry unix time>:<subject>`` and the password is base64(HMAC-SHA1(secret, username)).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from collections.abc import Callable
from typing import Any

from server.settings import Settings

__all__ = ["IceServers", "turn_credentials"]


def turn_credentials(secret: str, subject: str, ttl_s: int, now: float) -> tuple[str, str]:
    """A (username, credential) pair valid for ``ttl_s`` seconds."""
    username = f"{int(now) + ttl_s}:{subject}"
    digest = hmac.new(secret.encode(), username.encode(), hashlib.sha1).digest()
    return username, base64.b64encode(digest).decode()


class IceServers:
    """Builds the ``iceServers`` list handed to each participant from the settings."""

    def __init__(self, settings: Settings, clock: Callable[[], float] = time.time) -> None:
        self._urls = settings.ice_servers
        self._secret = settings.turn_secret
        self._ttl_s = settings.turn_ttl_s
        self._clock = clock

    def for_subject(self, subject: str) -> list[dict[str, Any]]:
        stun = [url for url in self._urls if url.startswith("stun:")]
        turn = [url for url in self._urls if not url.startswith("stun:")]
        servers: list[dict[str, Any]] = []
        if stun:
            servers.append({"urls": stun})
        if turn:
            entry: dict[str, Any] = {"urls": turn}
            if self._secret:
                entry["username"], entry["credential"] = turn_credentials(
                    self._secret, subject, self._ttl_s, self._clock()
                )
            servers.append(entry)
        return servers
