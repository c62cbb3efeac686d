"""The session secret file: created once (0600), then read back unchanged."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from corral.net.secret import SECRET_BYTES, SecretError, load_or_create_secret


def test_created_private_and_stable(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "corral-session-secret"
    first = load_or_create_secret(path)
    assert len(first) == SECRET_BYTES
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert load_or_create_secret(path) == first
    assert not path.with_name(path.name + ".tmp").exists()


def test_user_provided_secret(tmp_path: Path) -> None:
    path = tmp_path / "secret"
    path.write_text("00" * 20 + "\n")
    assert load_or_create_secret(path) == bytes(20)
    path.write_bytes(b"not hex but long enough!")
    assert load_or_create_secret(path) == b"not hex but long enough!"


def test_short_secret_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "secret"
    path.write_text("abcd")
    with pytest.raises(SecretError, match="at least"):
        load_or_create_secret(path)
