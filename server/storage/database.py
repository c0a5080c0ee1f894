"""What every backend's database offers the process that opened it, whichever it is: a health
check, closing, and the refusal of a schema newer than the code."""

from __future__ import annotations

from typing import Protocol

__all__ = ["DatabaseHandle", "SchemaTooNew", "StorageUnavailable"]


class DatabaseHandle(Protocol):
    """An open database of one backend (``server.storage.sqlite.Database``,
    ``server.storage.postgres.PostgresDatabase``)."""

    #: ``"sqlite"`` or ``"postgresql"``.
    backend: str

    async def ping(self) -> bool:
        """True if the database answers a trivial query (``/healthz``)."""
        ...

    async def aclose(self) -> None:
        """Close it; idempotent."""
        ...


class SchemaTooNew(RuntimeError):
    """The database was made by a newer version of the program than this one: this node
    refuses to start rather than write to tables it does not know."""

    def __init__(self, where: str, found: int, supported: int) -> None:
        super().__init__(
            f"{where} is at schema version {found}, newer than this program's {supported}:"
            " run the newer version (or restore a backup made for this one)"
        )
        self.found = found
        self.supported = supported


class StorageUnavailable(RuntimeError):
    """The database could not be reached (restarting, network down) for a read or a change,
    after the retries the backend makes; the request is answered 503 and may be repeated."""
