"""Outside timestamps of the evidence log: the operator's RFC 3161 authority
(``INSPECT_TSA_URL``) reached over HTTP through the outbound guard, and the loop that asks it to
timestamp the log's newest signed head. A down authority blocks nothing: the loop tries again
with a growing pause, and the next head it stamps covers everything before it."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from pathlib import Path
from urllib.parse import urlsplit

import aiohttp
from cryptography import x509

from aioutil import cancel_and_wait
from evidence import EvidenceArchive
from evidence.timestamp import QUERY_TYPE, REPLY_TYPE, TimestampError, load_certificates
from server.outbound import GuardedResolver, OutboundGuard
from server.settings import Settings

__all__ = ["HttpTimestampAuthority", "StampLoop", "TimestampsUnavailable", "load_tsa_roots"]

logger = logging.getLogger(__name__)

_MAX_REPLY_BYTES = 64 * 1024


class TimestampsUnavailable(RuntimeError):
    """The authority gave no timestamp this time (down, refused, not a reply)."""


def load_tsa_roots(settings: Settings) -> list[x509.Certificate]:
    """The authority's root certificates (``INSPECT_TSA_ROOTS``), read at start: a missing or
    unreadable file stops the start with its name."""
    path = settings.tsa_roots
    if path is None:
        raise ValueError("INSPECT_TSA_ROOTS: the authority's root certificates (PEM) are needed")
    try:
        return load_certificates(Path(path).read_bytes())
    except OSError as exc:
        raise ValueError(f"INSPECT_TSA_ROOTS: cannot read {path}: {exc.strerror}") from None
    except TimestampError as exc:
        raise ValueError(f"INSPECT_TSA_ROOTS: {path}: {exc}") from None


class HttpTimestampAuthority:
    """RFC 3161 over HTTP (POST ``application/timestamp-query``), to an address the outbound
    guard accepts."""

    def __init__(self, url: str, guard: OutboundGuard, *, timeout_s: float = 15.0) -> None:
        self._url = url
        self._guard = guard
        self._timeout = aiohttp.ClientTimeout(total=timeout_s)
        self._session: aiohttp.ClientSession | None = None

    async def timestamp(self, query: bytes) -> bytes:
        host = urlsplit(self._url).hostname
        if not host:
            raise TimestampsUnavailable(f"{self._url}: the URL has no host")
        self._guard.check_host(host)
        if self._session is None:
            connector = aiohttp.TCPConnector(
                resolver=GuardedResolver(self._guard), use_dns_cache=False
            )
            self._session = aiohttp.ClientSession(connector=connector)
        try:
            async with self._session.post(
                self._url,
                data=query,
                headers={"Content-Type": QUERY_TYPE, "Accept": REPLY_TYPE},
                timeout=self._timeout,
                allow_redirects=False,
            ) as response:
                if response.status != 200:
                    raise TimestampsUnavailable(f"the authority answered HTTP {response.status}")
                if response.content_type != REPLY_TYPE:
                    raise TimestampsUnavailable(f"the authority sent {response.content_type}")
                body = await response.content.read(_MAX_REPLY_BYTES + 1)
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            raise TimestampsUnavailable(f"{type(exc).__name__}: {exc}") from None
        if len(body) > _MAX_REPLY_BYTES:
            raise TimestampsUnavailable("the authority's reply is larger than 64 KiB")
        return body

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None


class StampLoop:
    """Asks the authority to timestamp the log's newest head every ``interval_s`` (when the
    log grew); after a failure it waits twice as long each time, up to ``max_backoff_s``."""

    def __init__(
        self,
        archive: EvidenceArchive,
        authority: HttpTimestampAuthority,
        roots: Sequence[x509.Certificate],
        *,
        interval_s: float = 60.0,
        max_backoff_s: float = 1800.0,
    ) -> None:
        self._archive = archive
        self._authority = authority
        self._roots = list(roots)
        self._interval_s = interval_s
        self._max_backoff_s = max_backoff_s
        self._task: asyncio.Task[None] | None = None
        self.failures = 0

    async def round(self) -> bool:
        """One attempt; True when a head was stamped."""
        await self._archive.refresh()
        stamped = await self._archive.stamp(self._authority, self._roots)
        return stamped is not None

    async def _run(self) -> None:
        wait = self._interval_s
        while True:
            try:
                if await self.round():
                    logger.info("evidence tree head timestamped")
                self.failures = 0
                wait = self._interval_s
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self.failures += 1
                wait = min(self._max_backoff_s, max(self._interval_s, wait * 2))
                logger.warning(
                    "evidence timestamp not obtained (%s); trying again in %.0f s", exc, wait
                )
            await asyncio.sleep(wait)

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="evidence-timestamps")

    async def aclose(self) -> None:
        task, self._task = self._task, None
        await cancel_and_wait(task)
        await self._authority.aclose()
