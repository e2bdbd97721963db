"""Secrets the local stack generates for itself: one file per secret, never logged, never committed.

Each secret lives in ``<stack data dir>/secrets/<name>`` (directory 0700, file 0600).  The stack
creates them on first start; every local process reads the ones it needs by name, so a password
reaches a process through a file only the stack's user can read, never through a command line,
a URL or a log line.  Deployments outside the local stack set the same values through settings.
"""

from __future__ import annotations

import os
import re
import secrets
from pathlib import Path

_NAME = re.compile(r"[a-z0-9][a-z0-9._-]{0,62}")
_DIR_MODE = 0o700
_FILE_MODE = 0o600
_TOKEN_BYTES = 32


class SecretError(Exception):
    """A secret name is malformed or its file cannot be read as one."""


def secrets_dir(data_dir: Path) -> Path:
    """Where the stack rooted at ``data_dir`` keeps its secrets."""
    return data_dir / "secrets"


def _path(directory: Path, name: str) -> Path:
    if not _NAME.fullmatch(name):
        raise SecretError(f"secret names are lower-case words, not {name[:64]!r}")
    return directory / name


def read_secret(directory: Path, name: str) -> str | None:
    """The secret ``name``, or ``None`` when the stack has not generated it."""
    try:
        value = _path(directory, name).read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        return None
    if not value:
        raise SecretError(f"the secret file for {name} is empty")
    return value


def ensure_secret(directory: Path, name: str) -> str:
    """The secret ``name``, generated (random, URL-safe) and stored 0600 on first use."""
    existing = read_secret(directory, name)
    if existing is not None:
        return existing
    directory.mkdir(mode=_DIR_MODE, parents=True, exist_ok=True)
    os.chmod(directory, _DIR_MODE)
    value = secrets.token_urlsafe(_TOKEN_BYTES)
    try:
        # O_EXCL: two processes racing to create the same secret agree on the first one written.
        fd = os.open(_path(directory, name), os.O_WRONLY | os.O_CREAT | os.O_EXCL, _FILE_MODE)
    except FileExistsError:
        return read_secret(directory, name) or value
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(value + "\n")
    return value
