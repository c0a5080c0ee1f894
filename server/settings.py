"""Settings: loaded once from ``INSPECT_*`` environment variables and an optional TOML file.

Every value is cast and validated at start; a bad value fails fast with the variable's name.
Nothing else in the project reads ``os.environ``.
"""

from __future__ import annotations

import ipaddress
import os
import re
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any, Literal, get_args
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

__all__ = ["Settings", "SettingsError", "load_settings", "secret_weakness"]

LogLevel = Literal["DEBUG", "INFO", "WARNING", "ERROR"]
InferenceProvider = Literal["auto", "cpu", "cuda", "tensorrt"]
AsrDevice = Literal["auto", "cpu", "cuda"]


class SettingsError(ValueError):
    """A setting is missing or invalid; the message names the variable."""

    def __init__(self, variable: str, message: str) -> None:
        super().__init__(f"{variable}: {message}")
        self.variable = variable


@dataclass(frozen=True, slots=True)
class Settings:
    """Every knob of the service, with the embedded defaults of ``inspectd serve``."""

    host: str = "127.0.0.1"
    port: int = 8080
    #: Base URL that links (customer join links) are built from; derived from host/port if empty.
    public_url: str = ""
    data_dir: Path = Path("var")
    #: Signs join tokens and session cookies. Generated and kept under ``data_dir`` if empty;
    #: when set it must be strong (see :func:`secret_weakness`).
    secret_key: str = ""
    join_token_ttl_s: int = 24 * 3600
    session_ttl_s: int = 12 * 3600
    #: ICE servers handed to server peers and browsers (``stun:``/``turn:`` URLs). Empty on a LAN
    #: or loopback: aiortc's default public STUN server is never used.
    ice_servers: tuple[str, ...] = ()
    turn_secret: str = ""
    turn_ttl_s: int = 3600
    #: UDP ports for media, ``MIN-MAX`` (split between the processes of ``serve --workers``).
    #: Empty: ephemeral ports (fine on one host without a firewall).
    media_ports: str = ""
    #: ``x-google-start-bitrate`` put into SDP answers so Chromium starts near its target size.
    start_bitrate_kbps: int = 1500
    ws_max_message_bytes: int = 64 * 1024
    #: Requests per second one credential (API token, staff session, else client address) may
    #: make to /api, and the burst it may save up; past it: 429 with Retry-After.
    api_rate_per_s: float = 50.0
    api_burst: int = 200
    #: Failed logins one address may make for one username per minute (then 429).
    login_failures_per_min: int = 10
    ws_heartbeat_s: float = 20.0
    #: Reverse proxies (addresses or CIDRs) whose ``X-Forwarded-For`` is believed; a request
    #: from anywhere else is keyed on its own address.
    trusted_proxies: tuple[str, ...] = ()
    #: Hosts, addresses or CIDRs that webhooks and RTSP pulls may reach although they are
    #: loopback, private or otherwise not public (a LAN's cameras, a test receiver). Everything
    #: else that is not a public address is refused.
    outbound_allow: tuple[str, ...] = ()
    webhook_urls: tuple[str, ...] = ()
    webhook_secret: str = ""
    webhook_max_attempts: int = 8
    tls_cert: Path | None = None
    tls_key: Path | None = None
    tls_self_signed: bool = False
    log_level: LogLevel = "INFO"
    shutdown_timeout_s: float = 5.0
    #: Grade the customer's video live with the model (sampled frames, dynamic batching).
    grading: bool = True
    #: The grading model (ONNX, see the model contract); empty: the shipped default model.
    model_path: Path | None = None
    inference_provider: InferenceProvider = "auto"
    #: Threads onnxruntime may use for one batch; 0: half the cores, at least one.
    inference_threads: int = 0
    #: Seconds between two readings of the text on labels (serials, IMEIs, model numbers) in
    #: one graded stream; 0 turns label reading off. A reading takes about a second of a core.
    label_reading_s: float = 3.0
    #: Decoded frames per second and per video track handed to the model.
    sample_fps: float = 2.0
    batch_max: int = 16
    batch_delay_ms: float = 10.0
    batch_queue: int = 64
    #: Record evidence from calls (encoded frames copied, never re-encoded).
    recording: bool = True
    #: Seconds of video kept before "start recording" (from the last keyframe that far back).
    preroll_s: float = 10.0
    #: Largest photo a customer's phone may send, in megabytes.
    photo_max_mb: float = 25.0
    #: Ask customers to share their location with the photos they send (kept in the record and
    #: shown on the stamped copy). Off: location is never asked, and the EXIF GPS of a photo
    #: from the gallery is stripped.
    photo_location: bool = False
    #: The merchant's time zone (IANA name), printed beside UTC on stamped copies.
    stamp_timezone: str = "UTC"
    #: Live captions: transcribe each speaker's audio on the server (the customer's speech also
    #: translated into English for the agent); a case can switch them off. Off: no audio is
    #: decoded for speech and no speech model is loaded.
    captions: bool = True
    #: The speech model for customers: ``base`` (multilingual Whisper base, shipped), ``tiny.en``
    #: (English only, shipped) or the directory of a CTranslate2 Whisper model.
    asr_model: str = "base"
    #: The model for speech known to be English (staff speaking ``staff_language`` ``en``);
    #: empty: ``asr_model`` for everyone.
    asr_english_model: str = "tiny.en"
    #: Where speech models run: the GPU when CTranslate2 sees one (``auto``), or as given.
    asr_device: AsrDevice = "auto"
    #: CPU threads per speech model; 0: half the cores.
    asr_threads: int = 0
    #: The language staff speak in calls (an ISO 639-1 code Whisper knows).
    staff_language: str = "en"
    #: Pull RTSP cameras on this node (one pull per enabled RTSP camera). With several nodes,
    #: leave it on for one node only, or every node pulls every camera.
    rtsp_pull: bool = True
    #: Longest wait between reconnects to an RTSP camera that went away (backoff cap).
    rtsp_retry_max_s: float = 30.0
    #: Seconds a station camera's clip reaches back before the scan that started it.
    station_preroll_s: float = 3.0
    #: Seconds without a tracking number read after which a station's clip ends (a station may
    #: set its own).
    station_idle_timeout_s: float = 30.0
    #: Retention class of new evidence (evidence/retention.py names the classes and periods).
    evidence_retention_class: str = "standard"
    #: How often expired evidence (not on legal hold) is deleted; its log entries stay.
    retention_sweep_s: float = 3600.0
    #: Redacted copies for sharing: the longest clip redacted, and how long the work may take
    #: before it is abandoned (nothing filed).
    redact_max_clip_s: float = 120.0
    redact_max_seconds: float = 480.0
    #: An RFC 3161 time-stamping authority for the evidence log's signed heads (empty: none),
    #: the PEM file of its root certificates, and how often the newest head is sent.
    tsa_url: str = ""
    tsa_roots: Path | None = None
    tsa_interval_s: float = 60.0
    #: An operator's C2PA signing certificate chain and key (PEM) for exported copies; empty:
    #: the archive's own key under its local root.
    c2pa_cert: Path | None = None
    c2pa_key: Path | None = None
    #: The privacy notice customers were shown, recorded with every evidence item.
    privacy_notice_version: str = "2026-11"
    #: PostgreSQL holding every record (``postgresql://user:password@host:5432/inspect``):
    #: accounts, cases, the outbox, sites, returns, analytics, the evidence index and log.
    #: Empty: SQLite files under ``data_dir`` (one host).
    database_url: str = ""
    #: The PostgreSQL schema the tables live in (created if missing). Empty: the server's
    #: ``search_path`` (normally ``public``).
    database_schema: str = ""
    #: Redis shared by every node and worker (``redis://host:6379/0``). Empty: one process
    #: with its embedded memory bus.
    redis_url: str = ""
    #: Prefix of every Redis key this deployment uses.
    redis_prefix: str = "inspect:"
    #: This process's name among the nodes sharing Redis; it must be unique per process and
    #: per start. Empty: ``<host>-<pid>``.
    node_id: str = ""
    #: How often a node renews its registration (with its load), its rooms and its presence
    #: entries in Redis; a node silent for three heartbeats is taken for dead and the rooms
    #: whose media it held move to live nodes.
    node_heartbeat_s: float = 2.0
    #: Grade on ``inspectd worker`` processes (frames through Redis) instead of in-process.
    remote_inference: bool = False
    #: How long a frame may wait for a remote worker before it is dropped.
    remote_inference_timeout_s: float = 5.0

    @property
    def media_port_range(self) -> range | None:
        """``media_ports`` as a range (validated at load)."""
        if not self.media_ports:
            return None
        low, high = (int(part) for part in self.media_ports.split("-"))
        return range(low, high + 1)

    @property
    def tls(self) -> bool:
        return self.tls_self_signed or self.tls_cert is not None

    @property
    def base_url(self) -> str:
        """The URL people reach the service at (no trailing slash)."""
        if self.public_url:
            return self.public_url.rstrip("/")
        scheme = "https" if self.tls else "http"
        host = "127.0.0.1" if self.host in ("0.0.0.0", "::", "") else self.host
        if ":" in host:
            host = f"[{host}]"
        return f"{scheme}://{host}:{self.port}"

    def with_overrides(self, **changes: Any) -> Settings:
        """A copy with some values replaced (CLI flags, tests); validated like the environment."""
        merged = replace(self, **changes)
        _validate(merged)
        return merged


def _bool(text: str) -> bool:
    lowered = text.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off", ""):
        return False
    raise ValueError(f"expected true/false, got {text!r}")


def _csv(text: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in text.split(",") if part.strip())


def _path(text: str) -> Path:
    return Path(text).expanduser()


def _literal(options: tuple[str, ...]) -> Callable[[str], str]:
    def cast(text: str) -> str:
        value = text.strip()
        if value not in options:
            raise ValueError(f"expected one of {', '.join(options)}, got {text!r}")
        return value

    return cast


_CASTS: dict[str, Callable[[str], Any]] = {
    "host": str,
    "port": int,
    "public_url": str,
    "data_dir": _path,
    "secret_key": str,
    "join_token_ttl_s": int,
    "session_ttl_s": int,
    "ice_servers": _csv,
    "turn_secret": str,
    "turn_ttl_s": int,
    "media_ports": str,
    "start_bitrate_kbps": int,
    "ws_max_message_bytes": int,
    "api_rate_per_s": float,
    "api_burst": int,
    "login_failures_per_min": int,
    "ws_heartbeat_s": float,
    "trusted_proxies": _csv,
    "outbound_allow": _csv,
    "webhook_urls": _csv,
    "webhook_secret": str,
    "webhook_max_attempts": int,
    "tls_cert": _path,
    "tls_key": _path,
    "tls_self_signed": _bool,
    "log_level": lambda text: _literal(get_args(LogLevel))(text.upper()),
    "shutdown_timeout_s": float,
    "grading": _bool,
    "model_path": _path,
    "inference_provider": _literal(get_args(InferenceProvider)),
    "inference_threads": int,
    "label_reading_s": float,
    "sample_fps": float,
    "batch_max": int,
    "batch_delay_ms": float,
    "batch_queue": int,
    "recording": _bool,
    "preroll_s": float,
    "photo_max_mb": float,
    "photo_location": _bool,
    "stamp_timezone": str,
    "captions": _bool,
    "asr_model": str,
    "asr_english_model": str,
    "asr_device": _literal(get_args(AsrDevice)),
    "asr_threads": int,
    "staff_language": lambda text: text.strip().lower(),
    "rtsp_pull": _bool,
    "rtsp_retry_max_s": float,
    "station_preroll_s": float,
    "station_idle_timeout_s": float,
    "evidence_retention_class": str,
    "retention_sweep_s": float,
    "redact_max_clip_s": float,
    "redact_max_seconds": float,
    "tsa_url": str,
    "tsa_roots": _path,
    "tsa_interval_s": float,
    "c2pa_cert": _path,
    "c2pa_key": _path,
    "privacy_notice_version": str,
    "database_url": str,
    "database_schema": str,
    "redis_url": str,
    "redis_prefix": str,
    "node_id": str,
    "node_heartbeat_s": float,
    "remote_inference": _bool,
    "remote_inference_timeout_s": float,
}


_PLACEHOLDERS = ("replaceme", "changeme")
_MIN_SECRET_CHARS = 32
_MIN_DISTINCT_CHARS = 8
#: A host name of the allowlist: dot-separated labels of letters, digits and hyphens.
_HOST_NAME = re.compile(r"^(?!-)[a-z0-9-]{1,63}(?<!-)(\.(?!-)[a-z0-9-]{1,63}(?<!-))*\.?$")


def secret_weakness(value: str) -> str | None:
    """Why ``value`` is not fit to sign with, or ``None`` if it is.

    The same rules as ``deploy/require-secrets.sh``, so a secret the container accepts is one
    inspectd accepts: no placeholder (REPLACE_ME, CHANGEME), at least 32 printable ASCII
    characters, at least 8 distinct ones, no repeated block, and not mostly runs of equal or
    consecutive characters. ``openssl rand -hex 32`` passes them all."""
    if not value:
        return "is empty"
    folded = value.lower().replace("-", "").replace("_", "")
    if any(word in folded for word in _PLACEHOLDERS):
        return "still holds a placeholder (REPLACE_ME or CHANGEME)"
    n = len(value)
    if n < _MIN_SECRET_CHARS:
        return f"is {n} characters long, fewer than {_MIN_SECRET_CHARS}"
    if not all(33 <= ord(c) < 127 for c in value):
        return "contains white space, control or non-ASCII characters"
    distinct = len(set(value))
    if distinct < _MIN_DISTINCT_CHARS:
        return (
            f"has {distinct} distinct characters, fewer than {_MIN_DISTINCT_CHARS} "
            "(too little entropy)"
        )
    for period in range(1, n // 2 + 1):
        if value[: n - period] == value[period:]:
            return f"repeats a block of {period} characters (too little entropy)"
    runs = sum(abs(ord(a) - ord(b)) <= 1 for a, b in zip(value, value[1:], strict=False))
    if runs * 4 >= (n - 1) * 3:
        return "is mostly runs of equal or consecutive characters (too little entropy)"
    return None


def _network_error(entry: str) -> str | None:
    """Why ``entry`` is not an IP address or CIDR network, or ``None``."""
    try:
        ipaddress.ip_network(entry, strict=True)
    except ValueError as exc:
        return str(exc)
    return None


def _variable(name: str) -> str:
    return f"INSPECT_{name.upper()}"


def _validate(settings: Settings) -> None:
    def need(ok: bool, name: str, message: str) -> None:
        if not ok:
            raise SettingsError(_variable(name), message)

    need(0 < settings.port < 65536, "port", f"port {settings.port} is out of range 1-65535")
    need(settings.join_token_ttl_s > 0, "join_token_ttl_s", "must be positive")
    need(settings.session_ttl_s > 0, "session_ttl_s", "must be positive")
    need(settings.start_bitrate_kbps >= 100, "start_bitrate_kbps", "must be at least 100")
    need(settings.ws_max_message_bytes >= 1024, "ws_max_message_bytes", "must be at least 1024")
    need(settings.webhook_max_attempts >= 1, "webhook_max_attempts", "must be at least 1")
    need(settings.api_rate_per_s > 0, "api_rate_per_s", "must be positive")
    need(settings.api_burst >= 1, "api_burst", "must be at least 1")
    need(settings.login_failures_per_min >= 1, "login_failures_per_min", "must be at least 1")
    for name in ("secret_key", "turn_secret"):
        # Empty means "not set": a generated key file, or no TURN credentials.
        value = getattr(settings, name)
        weakness = secret_weakness(value) if value else None
        need(
            weakness is None,
            name,
            f"{weakness}; set it to the output of `openssl rand -hex 32`",
        )
    for entry in settings.trusted_proxies:
        error = _network_error(entry)
        need(
            error is None,
            "trusted_proxies",
            f"expected IP addresses or CIDR networks (10.0.0.0/8), got {entry!r}: {error}",
        )
    for entry in settings.outbound_allow:
        # A name whose last label is all digits is a mistyped address, not a host.
        name_ok = (
            bool(_HOST_NAME.match(entry.lower())) and not entry.rstrip(".").split(".")[-1].isdigit()
        )
        need(
            _network_error(entry) is None or name_ok,
            "outbound_allow",
            f"expected host names, IP addresses or CIDR networks, got {entry!r}",
        )
    if settings.public_url:
        parts = urlsplit(settings.public_url)
        need(
            parts.scheme in ("http", "https") and bool(parts.netloc),
            "public_url",
            f"expected an http(s) URL, got {settings.public_url!r}",
        )
    for url in settings.ice_servers:
        need(
            url.split(":", 1)[0] in ("stun", "turn", "turns"),
            "ice_servers",
            f"expected stun:, turn: or turns: URLs, got {url!r}",
        )
    for url in settings.webhook_urls:
        parts = urlsplit(url)
        need(
            parts.scheme in ("http", "https") and bool(parts.netloc),
            "webhook_urls",
            f"expected http(s) URLs, got {url!r}",
        )
    need(
        (settings.tls_cert is None) == (settings.tls_key is None),
        "tls_key" if settings.tls_cert is not None else "tls_cert",
        "a TLS certificate and its key are set together",
    )
    need(
        not (settings.tls_self_signed and settings.tls_cert is not None),
        "tls_self_signed",
        "choose either a self-signed certificate or INSPECT_TLS_CERT/INSPECT_TLS_KEY",
    )
    need(0 < settings.sample_fps <= 30, "sample_fps", "must be between 0 and 30")
    need(settings.label_reading_s >= 0, "label_reading_s", "must be 0 (off) or more")
    need(settings.inference_threads >= 0, "inference_threads", "must be 0 (automatic) or more")
    need(1 <= settings.batch_max <= 256, "batch_max", "must be between 1 and 256")
    need(settings.batch_delay_ms >= 0, "batch_delay_ms", "must not be negative")
    need(settings.batch_queue >= settings.batch_max, "batch_queue", "must be at least batch_max")
    need(1 <= settings.preroll_s <= 120, "preroll_s", "must be between 1 and 120 seconds")
    need(bool(settings.asr_model.strip()), "asr_model", "must name a speech model")
    need(settings.asr_threads >= 0, "asr_threads", "must be 0 (automatic) or more")
    need(
        re.fullmatch(r"[a-z]{2,3}", settings.staff_language) is not None,
        "staff_language",
        "must be a language code such as en or de",
    )
    need(0.1 <= settings.photo_max_mb <= 200, "photo_max_mb", "must be between 0.1 and 200")
    need(_zone_known(settings.stamp_timezone), "stamp_timezone", "must be an IANA time zone")
    need(1 <= settings.rtsp_retry_max_s <= 600, "rtsp_retry_max_s", "must be 1-600 seconds")
    need(
        0 <= settings.station_preroll_s <= settings.preroll_s,
        "station_preroll_s",
        "must be between 0 and INSPECT_PREROLL_S",
    )
    need(
        1 <= settings.station_idle_timeout_s <= 3600,
        "station_idle_timeout_s",
        "must be between 1 and 3600 seconds",
    )
    need(settings.retention_sweep_s >= 10, "retention_sweep_s", "must be at least 10 seconds")
    need(settings.redact_max_clip_s > 0, "redact_max_clip_s", "must be positive")
    need(settings.redact_max_seconds > 0, "redact_max_seconds", "must be positive")
    need(
        not settings.tsa_url or settings.tsa_url.startswith(("http://", "https://")),
        "tsa_url",
        "must be an http:// or https:// URL",
    )
    need(
        not settings.tsa_url or settings.tsa_roots is not None,
        "tsa_roots",
        "the authority's root certificates (PEM) are needed with INSPECT_TSA_URL",
    )
    need(settings.tsa_interval_s >= 1, "tsa_interval_s", "must be at least 1 second")
    need(
        (settings.c2pa_cert is None) == (settings.c2pa_key is None),
        "c2pa_cert",
        "INSPECT_C2PA_CERT and INSPECT_C2PA_KEY go together",
    )
    if settings.media_ports:
        bounds = settings.media_ports.split("-")
        need(
            len(bounds) == 2 and all(part.strip().isdigit() for part in bounds),
            "media_ports",
            f"expected MIN-MAX (e.g. 40000-40999), got {settings.media_ports!r}",
        )
        low, high = (int(part) for part in bounds)
        need(
            1024 <= low <= high <= 65535,
            "media_ports",
            f"the range must be within 1024-65535 and MIN <= MAX, got {settings.media_ports!r}",
        )
    if settings.database_url:
        need(
            urlsplit(settings.database_url).scheme in ("postgresql", "postgres"),
            "database_url",
            # Only the scheme is repeated: the rest may hold the password.
            "expected a postgresql:// URL (SQLite is the default: leave it empty),"
            f" got one starting {urlsplit(settings.database_url).scheme or '(no scheme)'}:",
        )
    need(
        not settings.database_schema
        or re.fullmatch(r"[a-z_][a-z0-9_]{0,62}", settings.database_schema) is not None,
        "database_schema",
        f"must be a plain lower-case identifier, got {settings.database_schema!r}",
    )
    if settings.redis_url:
        need(
            urlsplit(settings.redis_url).scheme in ("redis", "rediss", "unix"),
            "redis_url",
            f"expected a redis://, rediss:// or unix:// URL, got {settings.redis_url!r}",
        )
    need(
        not any(c.isspace() for c in settings.node_id),
        "node_id",
        f"must not contain whitespace, got {settings.node_id!r}",
    )
    need(
        0.1 <= settings.node_heartbeat_s <= 30,
        "node_heartbeat_s",
        "must be between 0.1 and 30 seconds",
    )
    need(
        not settings.remote_inference or bool(settings.redis_url),
        "remote_inference",
        "remote inference needs INSPECT_REDIS_URL (workers take frames from Redis)",
    )
    need(
        settings.remote_inference_timeout_s > 0,
        "remote_inference_timeout_s",
        "must be positive",
    )
    for name in ("tls_cert", "tls_key", "model_path"):
        path = getattr(settings, name)
        need(path is None or path.is_file(), name, f"no such file: {path}")


def load_settings(
    environ: Mapping[str, str] | None = None, config_file: Path | None = None
) -> Settings:
    """Read settings from a TOML file (``INSPECT_CONFIG``) then the environment, which wins."""
    env = os.environ if environ is None else environ
    raw: dict[str, str] = {}
    config_path = config_file or (
        _path(env["INSPECT_CONFIG"]) if env.get("INSPECT_CONFIG") else None
    )
    if config_path is not None:
        try:
            document = tomllib.loads(config_path.read_text(encoding="utf-8"))
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise SettingsError("INSPECT_CONFIG", f"cannot read {config_path}: {exc}") from exc
        for key, value in document.items():
            if key not in _CASTS:
                raise SettingsError("INSPECT_CONFIG", f"unknown setting {key!r} in {config_path}")
            if isinstance(value, list):
                value = ",".join(str(item) for item in value)
            raw[key] = str(value).lower() if isinstance(value, bool) else str(value)
    known = {f.name for f in fields(Settings)}
    for variable, value in env.items():
        if not variable.startswith("INSPECT_") or variable == "INSPECT_CONFIG":
            continue
        name = variable.removeprefix("INSPECT_").lower()
        if name not in known:
            raise SettingsError(variable, "unknown setting (check the spelling)")
        raw[name] = value
    values: dict[str, Any] = {}
    for name, text in raw.items():
        try:
            values[name] = _CASTS[name](text)
        except ValueError as exc:
            raise SettingsError(_variable(name), str(exc)) from exc
    settings = Settings(**values)
    _validate(settings)
    return settings


def _zone_known(name: str) -> bool:
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return False
    return True
