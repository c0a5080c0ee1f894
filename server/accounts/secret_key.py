"""The service's one secret key: given in the environment, or generated once into the data
directory. Every signature and every stored secret uses a subkey derived from it."""

from __future__ import annotations

import logging
import os
import secrets
import stat
from dataclasses import dataclass
from pathlib import Path

from server.settings import SettingsError, secret_weakness

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
    (mode 0600) and read back on later starts. Blocking file IO: call at start-up.

    A weak ``config.secret_key`` (a placeholder, short or guessable: see
    :func:`server.settings.secret_weakness`) raises :class:`SettingsError`, whoever built the
    config: anyone who guesses the key forges session cookies and join tokens. A key file that
    other users may read is made private (0600) and the change logged."""
    if config.secret_key:
        weakness = secret_weakness(config.secret_key)
        if weakness is not None:
            raise SettingsError(
                "INSPECT_SECRET_KEY", f"{weakness}; set it to the output of `openssl rand -hex 32`"
            )
        return config.secret_key.encode("utf-8")
    path = Path(config.data_dir) / SECRET_KEY_FILE
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        mode = stat.S_IMODE(path.stat().st_mode)
        if mode & 0o077:
            path.chmod(0o600)
            logger.warning("%s was readable by other users (mode %o); made it 0600", path, mode)
        text = path.read_text(encoding="ascii").strip()
        try:
            key = bytes.fromhex(text)
        except ValueError as exc:
            raise ValueError(f"{path} does not hold a hex secret key") from exc
        if len(key) < 16 or secret_weakness(text) is not None:
            raise ValueError(
                f"{path} holds a short or guessable secret key; delete it to have a new one "
                "generated (sessions and join links signed with the old one stop working)"
            ) from None
        return key
    key = secrets.token_bytes(32)
    with os.fdopen(fd, "w", encoding="ascii") as handle:
        handle.write(key.hex() + "\n")
    logger.info("generated a new secret key in %s", path)
    return key
