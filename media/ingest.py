"""RTSP pull: an IP camera, configured by its ``rtsp://`` URL, published into a room.

A worker thread reads the camera with PyAV over RTSP/TCP and hands every frame to the event
loop with ``call_soon_threadsafe``, where it is pushed into a :class:`~media.TrackSource` made by
``engine.add_publisher``, so the camera is forwarded, sampled, buffered and recorded like any
other publisher. H.264 baseline / constrained baseline (no B-frames) is forwarded **as it is**:
each access unit becomes an :class:`~media.keyframes.EncodedFrame` (Annex-B, 90 kHz from the
stream's first frame, SPS/PPS put in front of keyframes that lack them, since WebRTC receivers
need in-band parameter sets) and is decoded in the worker only while the source asks for it.
Anything else (High profile with B-frames, H.265, MJPEG...) gets one transcode per camera to
H.264 constrained baseline, and the status says so. Opus audio is forwarded; other audio is
not, and the status says that too.

A camera that goes away is unpublished and reconnected with capped exponential backoff and
jitter. The URL's credentials (user name and password) never reach a log line, an error text
or the status. Before each connection an optional ``resolve_address`` hook may pick the address
to connect to (or refuse the host): FFmpeg is then given that address, so it does no lookup of
its own and connects where the hook decided.
"""

from __future__ import annotations

import asyncio
import logging
import random
import re
import threading
from collections import deque
from collections.abc import Awaitable, Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, replace
from enum import StrEnum
from typing import Any, Protocol
from urllib.parse import parse_qsl, unquote, urlsplit

import av

from aioutil import cancel_and_wait

from ._rtsp_encoder import VIDEO_CLOCK
from ._rtsp_session import (
    _FPS_FRAMES,
    _PullSpec,
    _resolves,
    _Session,
    _StreamInfo,
)
from .errors import MediaError
from .keyframes import EncodedFrame
from .source import TrackSource

__all__ = [
    "AddressResolver",
    "Backoff",
    "IngestTarget",
    "RtspPull",
    "RtspState",
    "RtspStatus",
    "mask_url",
]

logger = logging.getLogger(__name__)

_SECRET_QUERY = re.compile(r"^(password|passwd|pass|pwd|secret|token|key|auth)$", re.IGNORECASE)
#: The user information of any URL in a text (FFmpeg may quote the URL it was given).
_USERINFO = re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://)[^/\s@]*@")
_DEFAULT_PORTS = {"rtsp": 554, "rtsps": 322}

#: ``(host, port)`` -> the address to connect to; an ``OSError`` it raises (the host is not
#: allowed, does not resolve) ends that attempt with the error's text as the reason.
AddressResolver = Callable[[str, int], Awaitable[str]]


class IngestTarget(Protocol):
    """Where an ingest publishes its tracks (the media engine)."""

    def add_publisher(
        self,
        room_id: str,
        participant_id: str,
        kind: str,
        track_id: str,
        *,
        keyframe_requester: Callable[[], Awaitable[bool]] | None = None,
    ) -> TrackSource: ...

    async def remove_publisher(self, participant_id: str) -> None: ...


class RtspState(StrEnum):
    CONNECTING = "connecting"  # first attempt, nothing received yet
    ONLINE = "online"  # video frames arrive
    RETRYING = "retrying"  # lost or never reached: waiting to reconnect, or reconnecting
    STOPPED = "stopped"


@dataclass(frozen=True, slots=True)
class Backoff:
    """Reconnect delays: ``initial_s * factor**attempt`` capped at ``max_s``, scaled by a random
    factor in ``[1 - jitter, 1 + jitter]`` (cameras that dropped together must not all come back
    at the same instant) and capped again."""

    initial_s: float = 0.5
    max_s: float = 30.0
    factor: float = 2.0
    jitter: float = 0.2

    def __post_init__(self) -> None:
        if not 0 < self.initial_s <= self.max_s:
            raise ValueError("backoff needs 0 < initial_s <= max_s")
        if self.factor < 1 or not 0 <= self.jitter < 1:
            raise ValueError("backoff needs factor >= 1 and 0 <= jitter < 1")

    def delay(self, attempt: int, rand: Callable[[], float] = random.random) -> float:
        """Seconds to wait before reconnect ``attempt`` (0 for the first retry)."""
        base = min(self.max_s, self.initial_s * self.factor ** min(attempt, 64))
        return min(self.max_s, base * (1 - self.jitter + 2 * self.jitter * rand()))


@dataclass(frozen=True, slots=True)
class RtspStatus:
    """What an RTSP camera is doing, fit to show an operator (the password is masked)."""

    url: str
    state: RtspState
    #: The camera's video codec (``h264``, ``hevc``...) and profile, once connected.
    codec: str | None
    profile: str | None
    width: int | None
    height: int | None
    fps: float | None
    #: ``"transcoding hevc -> h264: ..."`` when the video cannot be forwarded as it is.
    transcoding: str | None
    #: ``"audio aac not forwarded ..."``, ``"audio opus forwarded"`` or ``None`` (no audio).
    audio: str | None
    #: Why the last connection failed or ended (cleared when frames flow again).
    error: str | None
    #: Failed attempts since the camera was last online.
    retries: int
    #: Times the camera came online.
    connects: int
    #: Wall-clock seconds of the newest video frame.
    last_frame_at: float | None
    #: Seconds until the next attempt, while waiting for one.
    retry_in_s: float | None

    @property
    def notes(self) -> tuple[str, ...]:
        return tuple(note for note in (self.transcoding, self.audio) if note)


def mask_url(url: str) -> str:
    """``rtsp://user:pass@host/path`` -> ``rtsp://***@host/path``: neither the password nor the
    user name (half of the credentials, often the camera's default) is shown. Secret-looking
    query parameters are masked too."""
    parts = urlsplit(url)
    netloc = parts.netloc
    _, at, hostport = netloc.rpartition("@")
    if at:
        netloc = f"***@{hostport}"
    query = parts.query
    if query:
        query = "&".join(
            f"{key}=***" if _SECRET_QUERY.match(key) else pair
            for pair in query.split("&")
            for key in [pair.partition("=")[0]]
        )
    return parts._replace(netloc=netloc, query=query).geturl()


def _secrets(url: str) -> list[str]:
    """The strings of ``url`` that must never be shown: the password, raw and decoded, and secret
    query values."""
    parts = urlsplit(url)
    userinfo, at, _ = parts.netloc.rpartition("@")
    found: list[str] = []
    if at and ":" in userinfo:
        password = userinfo.partition(":")[2]
        found += [password, unquote(password)]
    for key, value in parse_qsl(parts.query):
        if _SECRET_QUERY.match(key) and value:
            found += [value]
    return sorted({s for s in found if s}, key=len, reverse=True)


def _with_address(url: str, address: str) -> str:
    """``url`` with its host replaced by ``address`` (credentials, port and path kept)."""
    parts = urlsplit(url)
    userinfo, at, _ = parts.netloc.rpartition("@")
    host = f"[{address}]" if ":" in address else address
    if parts.port is not None:
        host = f"{host}:{parts.port}"
    return parts._replace(netloc=f"{userinfo}{at}{host}").geturl()


class RtspPull:
    """Pulls one RTSP camera and publishes it as ``participant_id`` in ``room_id``.

    :meth:`start` connects in the background and keeps reconnecting (``backoff``) until
    :meth:`aclose`. ``open_timeout_s`` bounds connecting, ``read_timeout_s`` a silent camera
    (it is then reconnected); together they bound how long the worker thread can stay blocked
    after :meth:`aclose`, which waits ``stop_timeout_s`` for it. ``on_status`` is called on the
    loop with the new :class:`RtspStatus` whenever the state or the error changes.
    """

    def __init__(
        self,
        engine: IngestTarget,
        room_id: str,
        participant_id: str,
        url: str,
        *,
        backoff: Backoff | None = None,
        open_timeout_s: float = 10.0,
        read_timeout_s: float = 5.0,
        probe_s: float = 1.0,
        keyframe_interval_s: float = 2.0,
        stop_timeout_s: float = 2.0,
        on_status: Callable[[RtspStatus], None] | None = None,
        rand: Callable[[], float] = random.random,
        resolve_address: AddressResolver | None = None,
    ) -> None:
        if urlsplit(url).scheme not in ("rtsp", "rtsps") or not urlsplit(url).hostname:
            raise ValueError(f"not an rtsp:// URL with a host: {mask_url(url)!r}")
        if min(open_timeout_s, read_timeout_s, probe_s, keyframe_interval_s) <= 0:
            raise ValueError("timeouts, probe_s and keyframe_interval_s must be positive")
        self._engine = engine
        self.room_id = room_id
        self.participant_id = participant_id
        self._url = url
        #: The URL FFmpeg is given for the current attempt (the checked address in the host).
        self._connect_url = url
        self.url = mask_url(url)
        self._secrets = _secrets(url)
        self._resolve_address = resolve_address
        self._backoff = backoff or Backoff()
        self._open_timeout_s = open_timeout_s
        self._read_timeout_s = read_timeout_s
        self._probe_s = probe_s
        self.keyframe_interval_s = keyframe_interval_s
        self._stop_timeout_s = stop_timeout_s
        self._on_status = on_status
        self._rand = rand
        self._log = {"room_id": room_id, "participant_id": participant_id}
        self._stop = threading.Event()
        self._spec = _PullSpec(
            url=url,
            options=self._options(),
            open_timeout_s=open_timeout_s,
            read_timeout_s=read_timeout_s,
            keyframe_interval_s=keyframe_interval_s,
            participant_id=participant_id,
            stop=self._stop,
        )
        self._pool = ThreadPoolExecutor(1, thread_name_prefix=f"media-rtsp-{participant_id}")
        self._task: asyncio.Task[None] | None = None
        self._worker: Future[str | None] | None = None
        self._session: _Session | None = None
        self._video: TrackSource | None = None
        self._audio: TrackSource | None = None
        self._state = RtspState.STOPPED
        self._info: _StreamInfo | None = None
        self._error: str | None = None
        self._retries = 0
        self._connects = 0
        self._retry_in: float | None = None
        self._last_frame_at: float | None = None
        self._stamps: deque[int] = deque(maxlen=_FPS_FRAMES)

    # -- public -------------------------------------------------------------------------------

    @property
    def status(self) -> RtspStatus:
        info = self._info
        width, height = (info.width, info.height) if info else (None, None)
        fps = info.fps if info else None
        stamps = self._stamps
        if len(stamps) >= 2 and stamps[-1] > stamps[0]:
            # The camera's own clock: arrival times come in bursts (probing, keyframes held).
            fps = round((len(stamps) - 1) * VIDEO_CLOCK / (stamps[-1] - stamps[0]), 1)
        source = self._video
        if source is not None and source.live:
            stats = source.stats()
            if stats.width and stats.height:
                width, height = stats.width, stats.height
        return RtspStatus(
            url=self.url,
            state=self._state,
            codec=info.codec if info else None,
            profile=info.profile if info else None,
            width=width,
            height=height,
            fps=fps,
            transcoding=info.transcoding if info else None,
            audio=info.audio_note if info else None,
            error=self._error,
            retries=self._retries,
            connects=self._connects,
            last_frame_at=self._last_frame_at,
            retry_in_s=self._retry_in,
        )

    def start(self) -> None:
        """Connect in the background (on the running loop); idempotent."""
        if self._task is not None or self._stop.is_set():
            return
        self._set_state(RtspState.CONNECTING)
        self._task = asyncio.get_running_loop().create_task(
            self._run(), name=f"media-rtsp-{self.participant_id}"
        )

    async def aclose(self) -> None:
        """Stop pulling, unpublish, and let the worker thread end. Idempotent."""
        self._stop.set()
        task, self._task = self._task, None
        await cancel_and_wait(task)
        worker = self._worker
        if worker is not None and not worker.done():
            done, _ = await asyncio.wait(
                {asyncio.wrap_future(worker)}, timeout=self._stop_timeout_s
            )
            if not done:
                # Blocked in FFmpeg on a silent camera: its I/O timeouts end it shortly, and a
                # stopped pull ignores anything it still hands over.
                logger.warning(
                    "RTSP worker for %s still blocked; it ends within %.0f s",
                    self.url,
                    max(self._open_timeout_s, self._read_timeout_s),
                    extra=self._log,
                )
        self._session = None
        await self._unpublish()
        self._pool.shutdown(wait=False)
        if self._state is not RtspState.STOPPED:
            self._retry_in = None
            self._set_state(RtspState.STOPPED)

    @property
    def worker_alive(self) -> bool:
        """Whether the worker thread is still inside a connection."""
        return self._worker is not None and not self._worker.done()

    # -- supervisor (loop) --------------------------------------------------------------------

    async def _run(self) -> None:
        while not self._stop.is_set():
            self._retry_in = None
            reason = await self._connect_once()
            if self._stop.is_set():
                return
            self._retries += 1
            delay = self._backoff.delay(self._retries - 1, self._rand)
            why = self._scrub(reason or "the camera ended the stream")
            self._error = f"{self.url}: {why}"
            self._retry_in = delay
            level = logging.WARNING if self._retries == 1 else logging.INFO
            logger.log(
                level,
                "RTSP camera %s: %s; retry %d in %.1f s",
                self.url,
                why,
                self._retries,
                delay,
                extra=self._log,
            )
            self._set_state(RtspState.RETRYING, force=True)
            await asyncio.sleep(delay)

    async def _connect_once(self) -> str | None:
        """One connection, from choosing the address to the end of the stream; why it ended."""
        spec = self._spec
        if self._resolve_address is not None:
            parts = urlsplit(self._url)
            port = parts.port or _DEFAULT_PORTS[parts.scheme]
            try:
                address = await self._resolve_address(parts.hostname or "", port)
            except OSError as exc:
                return str(exc) or type(exc).__name__
            self._connect_url = _with_address(self._url, address)
            spec = replace(spec, url=self._connect_url)
        session = _Session(self, spec, asyncio.get_running_loop())
        self._session = session
        self._stamps.clear()
        self._worker = self._pool.submit(session.run)
        try:
            reason = await asyncio.wrap_future(self._worker)
        except Exception:
            logger.exception("RTSP worker for %s failed", self.url, extra=self._log)
            reason = "internal error while reading the camera (see the server log)"
        self._session = None
        await self._unpublish()
        return reason

    async def _unpublish(self) -> None:
        if self._video is None and self._audio is None:
            return
        self._video = self._audio = None
        await self._engine.remove_publisher(self.participant_id)

    def _set_state(self, state: RtspState, *, force: bool = False) -> None:
        if state is self._state and not force:
            return
        self._state = state
        if self._on_status is not None:
            try:
                self._on_status(self.status)
            except Exception:
                logger.exception("RTSP status listener failed", extra=self._log)

    def _scrub(self, text: str) -> str:
        text = text.replace(self._connect_url, self.url).replace(self._url, self.url)
        for secret in self._secrets:
            text = text.replace(secret, "***")
        # Whatever form FFmpeg quoted the URL in, its user information goes.
        return _USERINFO.sub(r"\1***@", text)

    # -- the worker's host (``_SessionHost``): posted to the loop by the session -------------

    def opened(self, session: _Session, info: _StreamInfo) -> None:
        """The worker's session connected (called on the loop): publish the camera."""
        if session is not self._session:
            return
        self._info = info
        try:
            self._video = self._engine.add_publisher(
                self.room_id,
                self.participant_id,
                "video",
                f"{self.participant_id}-video",
                keyframe_requester=self._request_keyframe,
            )
            if info.audio_forwarded:
                self._audio = self._engine.add_publisher(
                    self.room_id, self.participant_id, "audio", f"{self.participant_id}-audio"
                )
        except (MediaError, ValueError) as exc:
            session.aborted = f"cannot publish the camera: {exc}"
            return
        logger.info(
            "RTSP camera %s connected: %s %s %sx%s%s%s",
            self.url,
            info.codec,
            info.profile or "",
            info.width,
            info.height,
            f"; {info.transcoding}" if info.transcoding else "",
            f"; {info.audio_note}" if info.audio_note else "",
            extra=self._log,
        )

    def deliver(self, session: _Session, frame: EncodedFrame) -> None:
        """One encoded frame the worker read (called on the loop)."""
        session.handled += 1
        if session is not self._session:
            return
        source = self._video if frame.kind == "video" else self._audio
        if source is None:
            return
        if not source.live:
            session.aborted = "the media engine ended the camera's track"
            return
        wanted = source.push(frame)
        if frame.kind == "video":
            session.want_decode = wanted
            self._last_frame_at = source.last_frame_at
            self._stamps.append(frame.timestamp)
            if self._state is not RtspState.ONLINE:
                self._retries = 0
                self._connects += 1
                self._error = None
                self._retry_in = None
                logger.info("RTSP camera %s online", self.url, extra=self._log)
                self._set_state(RtspState.ONLINE)

    def deliver_decoded(self, session: _Session, frame: Any) -> None:
        """One picture the worker decoded (called on the loop)."""
        session.decoded_handled += 1
        source = self._video
        if session is self._session and source is not None and source.live:
            source.push_decoded(frame)

    async def _request_keyframe(self) -> bool:
        """A subscriber lost the picture. An RTSP camera cannot be asked: a forwarded stream
        waits for the camera's next keyframe; a transcoded one makes the next frame one."""
        session = self._session
        encoder = session.encoder if session is not None else None
        if encoder is None:
            return False
        encoder.force_keyframe()
        return True

    # -- for the worker thread (reads only what never changes) --------------------------------

    def _options(self) -> dict[str, str]:
        return {
            "rtsp_transport": "tcp",
            # Socket I/O timeout (microseconds): a camera that goes silent is given up.
            "timeout": str(int(self._read_timeout_s * 1_000_000)),
            # How long FFmpeg reads before it reports the streams (the connection delay).
            "analyzeduration": str(int(self._probe_s * 1_000_000)),
        }

    def describe(self, exc: BaseException, *, opening: bool, elapsed: float) -> str:
        """A clear reason (never with the password) why a connection failed or ended."""
        errors: Any = av.error
        if isinstance(exc, errors.HTTPUnauthorizedError):
            why = "the camera refused the credentials (401 Unauthorized)"
        elif isinstance(exc, errors.HTTPForbiddenError):
            why = "the camera refused access (403 Forbidden)"
        elif isinstance(exc, errors.HTTPNotFoundError):
            why = "the camera has no stream at this path (404 Not Found)"
        elif isinstance(exc, errors.HTTPError):
            why = f"the camera answered with an error: {exc.strerror}"
        elif isinstance(exc, ConnectionRefusedError):
            why = "connection refused (nothing listens at that host and port)"
        elif opening and elapsed >= self._open_timeout_s * 0.95:
            why = f"no answer within {self._open_timeout_s:g} s"
        elif not opening and isinstance(exc, (errors.ExitError, TimeoutError)):
            why = f"no data for {self._read_timeout_s:g} s"
        elif opening and self._resolve_address is None and not _resolves(self._url):
            # (With ``resolve_address`` FFmpeg was given an address: nothing to look up.)
            why = "the camera's host name does not resolve"
        else:
            why = getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
        return self._scrub(why)
