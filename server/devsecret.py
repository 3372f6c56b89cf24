"""The development JWT secret: generated once, kept in ``<data_dir>/dev-jwt-secret``.

Used only when no ``[auth] jwt_secret`` is configured (and HS256 is accepted), so that a first
run needs no configuration, while tokens minted with ``feedserver token`` keep working across
restarts. Production sets ``jwt_secret`` (or a public key / JWKS) and never reads this file.
"""

from __future__ import annotations

import os
import secrets
import time
from dataclasses import dataclass
from pathlib import Path

FILE_NAME = "dev-jwt-secret"


@dataclass(frozen=True)
class DevSecret:
    """The secret, the file that keeps it, and whether this call created it."""

    secret: str
    path: Path
    created: bool


def dev_secret(data_dir: str | os.PathLike[str]) -> DevSecret:
    """The secret kept under ``data_dir``, created (mode 0600) on first use.

    Creation is exclusive (``O_EXCL``): processes starting together (``--workers``) all end up
    with the one secret the first of them wrote.
    """
    path = (Path(data_dir) / FILE_NAME).resolve()
    existing = _read(path)
    if existing:
        return DevSecret(existing, path, False)
    path.parent.mkdir(parents=True, exist_ok=True)
    secret = secrets.token_urlsafe(32)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:  # another process won the race: use its secret, once written
        for _ in range(100):
            existing = _read(path)
            if existing:
                return DevSecret(existing, path, False)
            time.sleep(0.01)
        raise RuntimeError(f"{path} exists but stays empty; delete it") from None
    with os.fdopen(fd, "w") as f:
        f.write(secret + "\n")
    return DevSecret(secret, path, True)


def _read(path: Path) -> str:
    try:
        return path.read_text().strip()
    except FileNotFoundError:
        return ""
