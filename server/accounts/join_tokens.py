"""Customers' join tokens: HMAC-signed, expiring, bound to one case. Stateless by design: a
link is sent to a customer and works on any node without a lookup."""

from __future__ import annotations

import binascii
import hashlib
import hmac
import json
import secrets
from collections.abc import Callable

from signaling import Identity, Role, SignalingError, SignalingErrorCode, SubjectId

from ._b64 import b64d, b64e
from .model import JoinLink

__all__ = ["JoinTokens"]

_MAX_TOKEN_CHARS = 2048


class JoinTokens:
    """Issues and checks join tokens with a subkey of the secret key of their own, so that no
    other signed value of the service verifies as one."""

    def __init__(self, secret_key: bytes, *, ttl_s: int, clock: Callable[[], float]) -> None:
        self._key = hmac.new(secret_key, b"inspect/join/v1", hashlib.sha256).digest()
        self._ttl_s = ttl_s
        self._clock = clock

    def _signature(self, payload: str) -> str:
        return b64e(hmac.new(self._key, payload.encode("ascii"), hashlib.sha256).digest())

    def issue(self, case_id: str, ttl_s: int | None = None) -> JoinLink:
        """A customer token for ``case_id``: base64url(JSON payload) "." base64url(HMAC)."""
        expires = int(self._clock()) + (ttl_s or self._ttl_s)
        body = {"c": case_id, "r": Role.CUSTOMER.value, "exp": expires, "n": secrets.token_hex(6)}
        payload = b64e(json.dumps(body, separators=(",", ":")).encode("utf-8"))
        return JoinLink(
            case_id=case_id, token=f"{payload}.{self._signature(payload)}", expires_at=expires
        )

    def verify(self, token: str) -> Identity:
        """The customer identity of a join token; ``SignalingError`` ``unauthorized`` (forged,
        malformed) or ``token_expired``, as ``signaling.Authenticator`` says."""
        bad = SignalingError(SignalingErrorCode.UNAUTHORIZED, "invalid join token")
        if not isinstance(token, str) or len(token) > _MAX_TOKEN_CHARS or token.count(".") != 1:
            raise bad
        payload, signature = token.split(".")
        try:
            expected = self._signature(payload)
        except UnicodeEncodeError:
            raise bad from None
        if not hmac.compare_digest(expected.encode("ascii"), signature.encode("ascii", "replace")):
            raise bad
        try:
            body = json.loads(b64d(payload))
        except (ValueError, binascii.Error):
            raise bad from None
        if (
            not isinstance(body, dict)
            or body.get("r") != Role.CUSTOMER.value
            or not isinstance(body.get("c"), str)
            or not isinstance(body.get("exp"), int)
        ):
            raise bad
        if body["exp"] <= self._clock():
            raise SignalingError(SignalingErrorCode.TOKEN_EXPIRED, "the join link has expired")
        case_id: str = body["c"]
        return Identity(
            subject=SubjectId.customer(case_id),
            name="Customer",
            role=Role.CUSTOMER,
            case_id=case_id,
        )
