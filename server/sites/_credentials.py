"""RTSP camera URLs and their credentials: split apart on the way in (the URL is shown, the
credentials never are), kept encrypted, put back together only for the RTSP puller."""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
from urllib.parse import quote, unquote, urlsplit, urlunsplit

from cryptography.fernet import Fernet, InvalidToken

from server.errors import InvalidRequest
from server.outbound import AddressRefused, OutboundGuard

__all__ = ["CredentialBox", "check_rtsp_host", "split_rtsp_url", "with_credentials"]

logger = logging.getLogger(__name__)


class CredentialBox:
    """Encrypts stored camera credentials with a key derived from the service's secret key
    (its own purpose label: nothing else signed or encrypted with that key opens them)."""

    def __init__(self, secret_key: bytes) -> None:
        key = hmac.new(secret_key, b"inspect/camera-credentials/v1", hashlib.sha256).digest()
        self._fernet = Fernet(base64.urlsafe_b64encode(key))

    def seal(self, secret: str | None) -> str | None:
        if not secret:
            return None
        return self._fernet.encrypt(secret.encode("utf-8")).decode("ascii")

    def open(self, stored: str | None) -> str | None:
        if not stored:
            return None
        try:
            return self._fernet.decrypt(stored.encode("ascii")).decode("utf-8")
        except InvalidToken:
            logger.error(
                "a stored camera password cannot be decrypted: was the secret key changed?"
            )
            return None


def split_rtsp_url(url: str) -> tuple[str, str | None, str | None]:
    """``rtsp://user:pass@host:554/path`` -> (``rtsp://host:554/path``, user, pass).

    Raises :class:`InvalidRequest` for anything but an ``rtsp://``/``rtsps://`` URL with a host.
    The message never repeats the URL (it may hold a password)."""
    try:
        parts = urlsplit(url.strip())
        host = parts.hostname
        port = parts.port
    except ValueError:
        raise InvalidRequest("rtsp_url: not a valid URL", fields=("rtsp_url",)) from None
    if parts.scheme.lower() not in ("rtsp", "rtsps") or not host:
        raise InvalidRequest(
            "rtsp_url: must be rtsp://host[:port]/path or rtsps://...", fields=("rtsp_url",)
        )
    netloc = f"[{host}]" if ":" in host else host
    if port is not None:
        netloc = f"{netloc}:{port}"
    clean = urlunsplit((parts.scheme.lower(), netloc, parts.path, parts.query, ""))
    username = unquote(parts.username) if parts.username else None
    password = unquote(parts.password) if parts.password else None
    return clean, username, password


def check_rtsp_host(url: str, guard: OutboundGuard) -> None:
    """Refuse a camera URL (from :func:`split_rtsp_url`) whose host the guard refuses without
    DNS: a literal internal address or ``localhost``, unless ``INSPECT_OUTBOUND_ALLOW`` lists
    it. A host name is checked when it is resolved, before each connection."""
    host = urlsplit(url).hostname or ""
    try:
        guard.check_host(host)
    except AddressRefused as exc:
        raise InvalidRequest(
            f"rtsp_url: the camera's address is not allowed: {exc.reason}", fields=("rtsp_url",)
        ) from None


def with_credentials(url: str, username: str | None, password: str | None) -> str:
    if not username and not password:
        return url
    parts = urlsplit(url)
    # RFC 3986 userinfo: unreserved and sub-delims stay as they are; ":" and "@" are encoded.
    safe = "!$&'()*+,;="
    userinfo = quote(username or "", safe=safe)
    if password:
        userinfo += ":" + quote(password, safe=safe)
    return urlunsplit((parts.scheme, f"{userinfo}@{parts.netloc}", parts.path, parts.query, ""))
