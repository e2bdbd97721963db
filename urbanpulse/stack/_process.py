"""Detached server processes, tracked by PID: start, liveness, stop."""

from __future__ import annotations

import atexit
import contextlib
import logging
import os
import signal
import subprocess
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

logger = logging.getLogger(__name__)

# Servers this Python process started.  Holding the Popen objects lets us reap them (no zombies
# while we live) and keeps their ResourceWarning ("still running") from firing on garbage
# collection: they are meant to outlive us.
_CHILDREN: dict[int, subprocess.Popen[bytes]] = {}
_EXIT_CODES: dict[int, int] = {}


@atexit.register
def _detach_children() -> None:
    """Let the servers outlive us quietly.

    At exit Python finalises the Popen objects, and each one still running warns "subprocess is
    still running" (ResourceWarning).  Here that is the intent: the servers are detached in
    sessions of their own and tracked by PID files, so forget them instead.
    """
    for proc in _CHILDREN.values():
        if proc.poll() is None:
            proc.returncode = 0  # what Popen checks before warning; the process is unaffected
    _CHILDREN.clear()


@dataclass(frozen=True)
class RunAs:
    """A system user to run a server as (when we are root)."""

    name: str
    uid: int
    gid: int
    home: str


def spawn(
    argv: Sequence[str],
    *,
    log_path: Path,
    cwd: Path,
    env: Mapping[str, str] | None = None,
    run_as: RunAs | None = None,
) -> int:
    """Start ``argv`` in a session of its own, output appended to ``log_path``; return its PID."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    # Private to the stack (0600): a server's log may show its clients and their requests.
    fd = os.open(log_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    with open(fd, "ab") as log:
        proc = subprocess.Popen(
            list(argv),
            cwd=cwd,
            env=dict(env) if env is not None else None,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            close_fds=True,
            user=run_as.uid if run_as else None,
            group=run_as.gid if run_as else None,
            extra_groups=[] if run_as else None,
        )
    _CHILDREN[proc.pid] = proc
    _EXIT_CODES.pop(proc.pid, None)
    # Popen returns once exec has begun (close-on-exec fds are closed), but the kernel sets up the
    # new program's argv a little later: until then /proc/PID/cmdline reads empty and the process
    # would not be recognised as ours.  Wait for it (a few ms, longer on a busy machine).
    deadline = time.monotonic() + 10.0
    while not cmdline(proc.pid) and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.005)
    logger.debug("started pid %d: %s", proc.pid, " ".join(argv))
    return proc.pid


def _reap(pid: int) -> None:
    proc = _CHILDREN.get(pid)
    if proc is not None and proc.poll() is not None:
        _EXIT_CODES[pid] = proc.returncode
        del _CHILDREN[pid]


def _stat_fields(pid: int) -> list[str] | None:
    """Fields of /proc/PID/stat after the command name: [state, ppid, pgrp, ...]."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    return raw[raw.rfind(")") + 2 :].split()


def is_alive(pid: int) -> bool:
    """True if ``pid`` runs; a zombie (dead, not yet reaped) counts as gone."""
    _reap(pid)
    fields = _stat_fields(pid)
    return fields is not None and fields[0] not in ("Z", "X")


def cmdline(pid: int) -> str:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return ""
    return raw.replace(b"\0", b" ").decode(errors="replace")


def is_ours(pid: int, marker: str) -> bool:
    """True if ``pid`` runs and its command line names ``marker`` (our data directory)."""
    return is_alive(pid) and marker in cmdline(pid)


def group_members(pgid: int) -> list[int]:
    """Live processes in process group ``pgid`` (our servers lead their own group)."""
    members = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        fields = _stat_fields(int(entry.name))
        if fields is None or fields[0] in ("Z", "X"):
            continue
        if int(fields[2]) == pgid:
            members.append(int(entry.name))
    return members


def read_pid(pid_file: Path) -> int | None:
    try:
        return int(pid_file.read_text().split()[0])
    except (FileNotFoundError, IndexError, ValueError):
        return None


def write_pid(pid_file: Path, pid: int) -> None:
    tmp = pid_file.with_suffix(".pid.tmp")
    tmp.write_text(f"{pid}\n")
    os.chmod(tmp, 0o600)
    tmp.replace(pid_file)


def _gone(pid: int) -> bool:
    return not is_alive(pid) and not group_members(pid)


def _wait_gone(pid: int, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while True:
        proc = _CHILDREN.get(pid)
        if proc is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=0.05)
        if _gone(pid):
            _reap(pid)
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.05)


def _signal_group(pgid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


def send(pid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, sig)


def kill_hard(pid: int, timeout_s: float = 10.0) -> bool:
    """SIGKILL the server and everything in its process group; True once all are gone."""
    _signal_group(pid, signal.SIGKILL)
    send(pid, signal.SIGKILL)
    return _wait_gone(pid, timeout_s)


def wait_stopped(pid: int, timeout_s: float) -> bool:
    """Wait for a server that was asked to stop; SIGKILL its group if it takes too long."""
    if _wait_gone(pid, timeout_s):
        return True
    logger.warning("pid %d did not stop within %.0f s: sending SIGKILL", pid, timeout_s)
    return kill_hard(pid)


def exit_code(pid: int) -> int | None:
    """The exit status of a server we started that has ended, if we know it."""
    _reap(pid)
    return _EXIT_CODES.get(pid)
