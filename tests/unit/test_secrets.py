"""The stack's secret files: generated once, private to their owner, names checked."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from urbanpulse.core.secrets import SecretError, ensure_secret, read_secret, secrets_dir


def test_a_secret_is_generated_once_and_kept_private(tmp_path: Path) -> None:
    directory = secrets_dir(tmp_path)
    assert read_secret(directory, "db-owner") is None
    first = ensure_secret(directory, "db-owner")
    assert len(first) >= 40  # 32 random bytes, URL-safe base64
    assert ensure_secret(directory, "db-owner") == first
    assert read_secret(directory, "db-owner") == first
    assert stat.S_IMODE(directory.stat().st_mode) == 0o700
    assert stat.S_IMODE((directory / "db-owner").stat().st_mode) == 0o600


def test_each_name_gets_its_own_secret(tmp_path: Path) -> None:
    directory = secrets_dir(tmp_path)
    assert ensure_secret(directory, "mqtt-bridge") != ensure_secret(directory, "kafka-bridge")


@pytest.mark.parametrize("name", ["", "../etc/passwd", "Upper", "a/b", "x" * 64, "-lead"])
def test_malformed_names_are_refused(tmp_path: Path, name: str) -> None:
    with pytest.raises(SecretError):
        ensure_secret(secrets_dir(tmp_path), name)


def test_an_empty_secret_file_is_an_error_not_an_empty_password(tmp_path: Path) -> None:
    directory = secrets_dir(tmp_path)
    directory.mkdir()
    (directory / "db-reader").write_text("\n")
    with pytest.raises(SecretError, match="empty"):
        read_secret(directory, "db-reader")
