"""The session secret: the key session passwords are derived from (see server/sessions.py).

Kept in a file (`corral.sessionSecretFile`, default `<dataDir>/corral-session-secret`) so
that passwords survive a restart: a client reconnecting to a restarted server must present
the same password its session was given. Created on first start with 32 random bytes, hex
encoded, mode 0600, written and fsynced before use.
"""

from __future__ import annotations

import contextlib
import logging
import os
import secrets
import stat
from pathlib import Path

from corral.store.layout import fsync_path

__all__ = ["SECRET_BYTES", "SecretError", "load_or_create_secret"]

log = logging.getLogger(__name__)

SECRET_BYTES = 32
# Fewer bytes than this is no secret worth the name.
_MIN_SECRET_BYTES = 16


class SecretError(Exception):
    """The secret file exists but cannot be read or is too short."""


def load_or_create_secret(path: Path) -> bytes:
    """Read the secret at `path`, creating it (0600, fsynced) if it does not exist."""
    try:
        return _read(path)
    except FileNotFoundError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    secret = secrets.token_bytes(SECRET_BYTES)
    tmp = path.with_name(path.name + ".tmp")
    with contextlib.suppress(FileNotFoundError):
        tmp.unlink()
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.write(fd, secret.hex().encode("ascii") + b"\n")
        os.fsync(fd)
    finally:
        os.close(fd)
    # link() fails if another process created the file meanwhile; then use theirs.
    try:
        os.link(tmp, path)
    except FileExistsError:
        tmp.unlink()
        return _read(path)
    tmp.unlink()
    fsync_path(path.parent)
    log.info("created session secret %s", path)
    return secret


def _read(path: Path) -> bytes:
    mode = path.stat().st_mode
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        log.warning("session secret %s is accessible to other users (mode %o)", path, mode & 0o777)
    try:
        text = path.read_bytes().strip()
    except OSError as exc:
        raise SecretError(f"cannot read session secret {path}: {exc.strerror}") from None
    try:
        secret = bytes.fromhex(text.decode("ascii"))
    except (UnicodeDecodeError, ValueError):
        secret = text  # a user-provided binary secret: use its bytes as they are
    if len(secret) < _MIN_SECRET_BYTES:
        raise SecretError(
            f"session secret {path} holds {len(secret)} bytes; at least {_MIN_SECRET_BYTES}"
        )
    return secret
