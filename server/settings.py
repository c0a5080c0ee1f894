"""Settings: loaded once from ``INSPECT_*`` environment variables and an optional TOML file.

Every value is cast and validated at start; a bad value fails fast with the variable's name.
Nothing else in the project reads ``os.environ``.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any, Literal, get_args
from urllib.parse import urlsplit

__all__ = ["Settings", "SettingsError", "load_settings"]

LogLevel = Literal["DEBUG", "INFO", "WARNING", "ERROR"]
InferenceProvider = Literal["auto", "cpu", "cuda", "tensorrt"]


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
    #: Signs join tokens and session cookies. Generated and kept under ``data_dir`` if empty.
    secret_key: str = ""
    join_token_ttl_s: int = 24 * 3600
    session_ttl_s: int = 12 * 3600
    #: ICE servers handed to server peers and browsers (``stun:``/``turn:`` URLs). Empty on a LAN
    #: or loopback: aiortc's default public STUN server is never used.
    ice_servers: tuple[str, ...] = ()
    turn_secret: str = ""
    turn_ttl_s: int = 3600
    #: ``x-google-start-bitrate`` put into SDP answers so Chromium starts near its target size.
    start_bitrate_kbps: int = 1500
    ws_max_message_bytes: int = 64 * 1024
    ws_heartbeat_s: float = 20.0
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
    #: Decoded frames per second and per video track handed to the model.
    sample_fps: float = 2.0
    batch_max: int = 16
    batch_delay_ms: float = 10.0
    batch_queue: int = 64
    #: Record evidence from calls (encoded frames copied, never re-encoded).
    recording: bool = True
    #: Seconds of video kept before "start recording" (from the last keyframe that far back).
    preroll_s: float = 10.0
    #: Retention class of new evidence (evidence/retention.py names the classes and periods).
    evidence_retention_class: str = "standard"
    #: How often expired evidence (not on legal hold) is deleted; its log entries stay.
    retention_sweep_s: float = 3600.0
    #: The privacy notice customers were shown, recorded with every evidence item.
    privacy_notice_version: str = "2026-11"

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
    "start_bitrate_kbps": int,
    "ws_max_message_bytes": int,
    "ws_heartbeat_s": float,
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
    "sample_fps": float,
    "batch_max": int,
    "batch_delay_ms": float,
    "batch_queue": int,
    "recording": _bool,
    "preroll_s": float,
    "evidence_retention_class": str,
    "retention_sweep_s": float,
    "privacy_notice_version": str,
}


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
    need(settings.inference_threads >= 0, "inference_threads", "must be 0 (automatic) or more")
    need(1 <= settings.batch_max <= 256, "batch_max", "must be between 1 and 256")
    need(settings.batch_delay_ms >= 0, "batch_delay_ms", "must not be negative")
    need(settings.batch_queue >= settings.batch_max, "batch_queue", "must be at least batch_max")
    need(1 <= settings.preroll_s <= 120, "preroll_s", "must be between 1 and 120 seconds")
    need(settings.retention_sweep_s >= 10, "retention_sweep_s", "must be at least 10 seconds")
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
