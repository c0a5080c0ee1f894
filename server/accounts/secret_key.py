"""The service's one secret key: given in the environment, or generated once into the data
directory. Every signature and every stored secret uses a subkey derived from it."""

from __future__ import annotations

import logging
import os
import secrets
import stat
from dataclasses import dataclass
from pathlib import Path

__all__ = ["SECRET_KEY_FILE", "SecretKeyConfig", "load_secret_key"]

logger = logging.getLogger(__name__)

SECRET_KEY_FILE = "secret_key"


@dataclass(frozen=True, slots=True)
class SecretKeyConfig:
    """Where the key comes from: ``secret_key`` (``INSPECT_SECRET_KEY``) if not empty, else the
    file ``secret_key`` under ``data_dir``."""

    data_dir: Path
    secret_key: str = ""


def load_secret_key(config: SecretKeyConfig) -> bytes:
    """``config.secret_key``, or a random key generated once into ``data_dir/secret_key``
    (mode 0600) and read back on later starts. Blocking file IO: call at start-up."""
    if config.secret_key:
        if len(config.secret_key) < 16:
            logger.warning("INSPECT_SECRET_KEY is shorter than 16 characters")
        return config.secret_key.encode("utf-8")
    path = Path(config.data_dir) / SECRET_KEY_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        mode = stat.S_IMODE(path.stat().st_mode)
        if mode & 0o077:
            logger.warning("%s is readable by other users (mode %o); chmod 600 it", path, mode)
        text = path.read_text(encoding="ascii").strip()
        try:
            key = bytes.fromhex(text)
        except ValueError as exc:
            raise ValueError(f"{path} does not hold a hex secret key") from exc
        if len(key) < 16:
            raise ValueError(f"{path} holds a secret key shorter than 16 bytes") from None
        return key
    key = secrets.token_bytes(32)
    with os.fdopen(fd, "w", encoding="ascii") as handle:
        handle.write(key.hex() + "\n")
    logger.info("generated a new secret key in %s", path)
    return key
