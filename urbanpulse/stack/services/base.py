"""What every server of the local stack provides, and the file and process helpers they share.

A server module (``mosquitto.py``, ``kafka.py``, ``postgres.py``) subclasses ``Service``: its
name, address, the files it writes before each start, how it is launched and as which user, how
to tell it is ready, what to set up once it is, and how to stop it.  ``LocalStack`` does the rest
(locking, order, PID files, status) for every server alike.
"""

from __future__ import annotations

import logging
import os
import pwd
import signal
import socket
import subprocess
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from urbanpulse.core.settings import Settings
from urbanpulse.stack import _process as proc
from urbanpulse.stack._layout import Layout

logger = logging.getLogger(__name__)

HEADER = "# Written by urbanpulse.stack at every start: edits here are overwritten.\n"
SETUP_TIMEOUT_S = 180.0


class StackError(Exception):
    """The local stack cannot be installed, started or stopped as asked."""


@dataclass(frozen=True)
class StackContext:
    """What a server needs to know about the stack it belongs to."""

    settings: Settings
    layout: Layout
    cache_dir: Path
    as_root: bool  # the stack runs as root: each server runs as its own system user


@dataclass(frozen=True)
class Launch:
    """How to start a server: its command line, working directory, environment and user."""

    argv: Sequence[str]
    cwd: Path
    env: Mapping[str, str] | None = None
    run_as: proc.RunAs | None = None


@dataclass(frozen=True)
class Port:
    """An address a server listens on, which must be free before it starts."""

    what: str  # "port", "controller port", ...
    host: str
    port: int


def tcp_open(host: str, port: int, timeout_s: float = 0.5) -> bool:
    """True if something accepts TCP connections on ``host:port``."""
    try:
        with socket.create_connection((host, port), timeout=timeout_s):
            return True
    except OSError:
        return False


def system_user(name: str) -> proc.RunAs | None:
    """The system user ``name``, if it exists."""
    try:
        entry = pwd.getpwnam(name)
    except KeyError:
        return None
    return proc.RunAs(name=name, uid=entry.pw_uid, gid=entry.pw_gid, home=entry.pw_dir)


def check_reachable(path: Path, user: proc.RunAs) -> None:
    """Every parent of ``path`` must be searchable by ``user`` (e.g. not under /root)."""
    for parent in reversed(path.parents):
        info = parent.stat()
        if info.st_uid == user.uid:
            ok = bool(info.st_mode & 0o100)
        elif info.st_gid == user.gid:
            ok = bool(info.st_mode & 0o010)
        else:
            ok = bool(info.st_mode & 0o001)
        if not ok:
            raise StackError(
                f"the {user.name} user cannot reach {path}: {parent} is not searchable "
                f"by it (mode {info.st_mode & 0o777:o}); choose a data_dir elsewhere "
                "(e.g. under /tmp or the project directory)"
            )


def run_setup(
    what: str,
    argv: Sequence[str],
    *,
    cwd: Path,
    run_as: proc.RunAs | None = None,
    env: Mapping[str, str] | None = None,
    stdin: str | None = None,
) -> str:
    """Run a one-off set-up command to completion; its output, or ``StackError``."""
    try:
        done = subprocess.run(
            list(argv),
            cwd=cwd,
            env=dict(env) if env is not None else None,
            input=stdin,
            capture_output=True,
            text=True,
            timeout=SETUP_TIMEOUT_S,
            user=run_as.uid if run_as else None,
            group=run_as.gid if run_as else None,
            extra_groups=[] if run_as else None,
        )
    except subprocess.TimeoutExpired as exc:
        raise StackError(f"{what} took longer than {SETUP_TIMEOUT_S:.0f} s") from exc
    output = (done.stdout + done.stderr).strip()
    if done.returncode != 0:
        raise StackError(f"{what} failed (exit {done.returncode}):\n{output[-3000:]}")
    logger.debug("%s: %s", what, output)
    return output


class Service(ABC):
    """One server of the local stack."""

    name: str  # per kind; an instance may refine it (Kafka's nodes: "kafka", "kafka-2", ...)
    # The unprivileged system user the server runs as when the stack is started as root.
    user: ClassVar[str]
    # Rough seconds from launch to ready: the stack launches the slowest first, so that their
    # start-up overlaps the others' set-up work, and waits for the quickest first.
    startup_s: ClassVar[float]
    stop_signal: ClassVar[signal.Signals] = signal.SIGTERM
    stop_timeout_s: ClassVar[float] = 30.0

    def __init__(self, ctx: StackContext) -> None:
        self.ctx = ctx

    @classmethod
    def instances(cls, ctx: StackContext) -> list[Service]:
        """The servers of this kind the stack runs: one (Kafka may run a cluster)."""
        return [cls(ctx)]

    @property
    def settings(self) -> Settings:
        return self.ctx.settings

    @property
    def layout(self) -> Layout:
        return self.ctx.layout

    @property
    def log(self) -> Path:
        return self.layout.log(self.name)

    @property
    @abstractmethod
    def host(self) -> str:
        """The address clients connect to."""

    @property
    @abstractmethod
    def port(self) -> int:
        """The port clients connect to."""

    def ports(self) -> list[Port]:
        """Every address the server listens on (must be free before it starts)."""
        return [Port("port", self.host, self.port)]

    @abstractmethod
    def missing_parts(self) -> list[str]:
        """What ``deploy/install-stack.sh`` must still install for this server."""

    @abstractmethod
    def prepare(self) -> None:
        """Directories and configuration files (rewritten at every start), first-time set-up."""

    @abstractmethod
    def launch(self) -> Launch:
        """The command that runs the server (called after ``prepare``)."""

    @abstractmethod
    def ready(self) -> bool:
        """True once the server answers its clients."""

    def after_ready(self) -> None:  # noqa: B027 - a hook: most servers need nothing
        """Set-up that needs the running server (idempotent: runs after every start)."""

    # ------------------------------------------------------------------ shared helpers

    def run_as(self) -> proc.RunAs | None:
        """The system user to run as, when the stack runs as root."""
        if not self.ctx.as_root:
            return None
        user = system_user(self.user)
        if user is None:
            raise StackError(
                f"running as root but there is no {self.user!r} system user to run "
                f"{self.name} as (run deploy/install-stack.sh)"
            )
        return user

    def owned_dir(self, path: Path) -> None:
        """A private directory (0700) of the server's user."""
        path.mkdir(mode=0o700, parents=True, exist_ok=True)
        os.chmod(path, 0o700)
        user = self.run_as()
        if user is not None:
            st = path.stat()
            if (st.st_uid, st.st_gid) != (user.uid, user.gid):
                os.chown(path, user.uid, user.gid)
            check_reachable(path, user)

    def write_owned(self, path: Path, text: str) -> None:
        """A private file (0600) of the server's user, e.g. its configuration."""
        path.write_text(text)
        os.chmod(path, 0o600)
        user = self.run_as()
        if user is not None:
            os.chown(path, user.uid, user.gid)
