"""What accounts tell the rest of the service when a credential stops being valid, so that what
was opened with it (a WebSocket, a call) can be closed on every node."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Protocol

from signaling import SubjectId

__all__ = ["Revocation", "RevocationListener", "RevocationReason"]


class RevocationReason(StrEnum):
    #: The user signed out of one session (``session_id`` names it).
    SIGNED_OUT = "signed_out"
    #: The user ended all of their sessions.
    SIGNED_OUT_EVERYWHERE = "signed_out_everywhere"
    #: An admin disabled the account.
    DISABLED = "disabled"
    #: An admin changed the account's role.
    ROLE_CHANGED = "role_changed"
    #: The password was reset by an admin or changed by the user.
    PASSWORD_CHANGED = "password_changed"
    #: An admin revoked an API token.
    TOKEN_REVOKED = "token_revoked"


@dataclass(frozen=True, slots=True)
class Revocation:
    """A credential ended. Close what ``subject`` opened with it: only what was opened with
    the session ``session_id`` when it is set (and the socket knows its session), else
    everything of ``subject``. A socket closed although its session lives reconnects and is
    let in again, so closing too much is safe; closing too little is not."""

    subject: SubjectId
    reason: RevocationReason
    session_id: str | None = None


class RevocationListener(Protocol):
    """Told after the revocation is stored (so a listener that looks finds it ended). A
    listener that raises is logged; the revocation stands."""

    async def __call__(self, revocation: Revocation) -> None: ...
