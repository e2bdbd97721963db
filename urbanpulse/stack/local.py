"""The embedded local stack: Mosquitto, Kafka (KRaft) and PostgreSQL 15 + PostGIS + TimescaleDB.

Real servers, installed from Debian's packages, Debian's source and Maven Central by
``deploy/install-stack.sh``, run on loopback as detached processes with everything under
``settings.stack.data_dir``.  They are tracked by PID files; a PID counts as ours only while its
command line names our data directory, so a stale PID file is harmless.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import fcntl
import logging
import os
import pwd
import signal
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from aiokafka.errors import KafkaError

from urbanpulse.core.secrets import ensure_secret, secrets_dir
from urbanpulse.core.settings import DatabaseSettings, DbRole, Settings
from urbanpulse.health import check_ingest
from urbanpulse.stack import _configs, _probes
from urbanpulse.stack import _process as proc
from urbanpulse.stack._layout import (
    INSTALL_SCRIPT,
    PG_BIN,
    PG_EXTENSION_DIR,
    SERVICES,
    Layout,
    java_binary,
    kafka_libs,
    mosquitto_binary,
)

logger = logging.getLogger(__name__)

_POLL_S = 0.1
_STOP_TIMEOUT_S = {"mosquitto": 10.0, "kafka": 30.0, "postgres": 30.0}
# Postgres: SIGINT is its "fast" shutdown (SIGTERM would wait for every client to disconnect).
_STOP_SIGNAL = {
    "mosquitto": signal.SIGTERM,
    "kafka": signal.SIGTERM,
    "postgres": signal.SIGINT,
}
_SETUP_TIMEOUT_S = 180.0
_PG_SUPERUSER = "postgres"


class StackError(Exception):
    """The local stack cannot be installed, started or stopped as asked."""


@dataclass(frozen=True)
class ServiceState:
    """One server of the stack as ``status()`` sees it."""

    name: str  # "mosquitto" | "kafka" | "postgres", or "ingest" (see LocalStack.ingest_state)
    pid: int | None
    port: int
    running: bool
    detail: str = ""
    label: str = ""  # the STATE column, if not running/stopped


def format_states(states: list[ServiceState]) -> str:
    """A small table for the CLI."""
    rows = [("SERVICE", "STATE", "PID", "PORT", "DETAIL")]
    for st in states:
        rows.append(
            (
                st.name,
                st.label or ("running" if st.running else "stopped"),
                str(st.pid) if st.pid is not None else "-",
                str(st.port),
                st.detail,
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    lines = [
        "  ".join(cell.ljust(width) for cell, width in zip(row[:4], widths, strict=True))
        + "  "
        + row[4]
        for row in rows
    ]
    return "\n".join(line.rstrip() for line in lines)


def _split_host_port(address: str) -> tuple[str, int]:
    first = address.split(",")[0].strip()
    host, sep, port = first.rpartition(":")
    if not sep or not port.isdigit():
        raise StackError(f"kafka.bootstrap_servers must be HOST:PORT, got {address!r}")
    return host.strip("[]") or "127.0.0.1", int(port)


def _tail(path: Path, lines: int = 30) -> str:
    try:
        text = path.read_text(errors="replace")
    except FileNotFoundError:
        return f"(no log at {path})"
    return "\n".join(text.splitlines()[-lines:])


def _system_user(name: str) -> proc.RunAs | None:
    try:
        entry = pwd.getpwnam(name)
    except KeyError:
        return None
    return proc.RunAs(name=name, uid=entry.pw_uid, gid=entry.pw_gid, home=entry.pw_dir)


def _new_kafka_cluster_id() -> str:
    """A Kafka Uuid as its tools print it: 16 random bytes, URL-safe base64 without padding."""
    while True:
        text = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not text.startswith("-"):
            return text


class LocalStack:
    """Installs, starts, checks and stops the local servers for one ``Settings``."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._layout = Layout(settings.stack.data_dir.expanduser().resolve())
        self._cache_dir = settings.stack.cache_dir.expanduser().resolve()
        self._kafka_host, self._kafka_port = _split_host_port(settings.kafka.bootstrap_servers)
        self._root = os.geteuid() == 0

    @property
    def settings(self) -> Settings:
        return self._settings

    @property
    def data_dir(self) -> Path:
        return self._layout.root

    def log_path(self, name: str) -> Path:
        self._check_name(name)
        return self._layout.log(name)

    # ------------------------------------------------------------------ installation

    def _missing_parts(self) -> list[str]:
        missing = []
        if not mosquitto_binary().is_file():
            missing.append("mosquitto")
        for tool in ("postgres", "initdb", "pg_isready", "psql"):
            if not (PG_BIN / tool).is_file():
                missing.append(f"PostgreSQL 15 ({tool})")
        if not (PG_EXTENSION_DIR / "postgis.control").is_file():
            missing.append("PostGIS for PostgreSQL 15")
        if not (PG_EXTENSION_DIR / "timescaledb.control").is_file():
            missing.append("TimescaleDB for PostgreSQL 15")
        if java_binary() is None:
            missing.append("java")
        if not (kafka_libs(self._cache_dir) / ".complete").is_file():
            missing.append(f"Kafka jars in {kafka_libs(self._cache_dir)}")
        return missing

    def ensure_installed(self) -> None:
        """Install what the stack needs (``deploy/install-stack.sh``) unless it is all there."""
        missing = self._missing_parts()
        if not missing:
            logger.debug("local stack installed")
            return
        logger.info("local stack: missing %s; running %s", ", ".join(missing), INSTALL_SCRIPT)
        if not INSTALL_SCRIPT.is_file():
            raise StackError(
                f"missing {', '.join(missing)} and no installer at {INSTALL_SCRIPT} "
                "(run from a checkout of the repository)"
            )
        env = dict(os.environ, URBANPULSE_STACK__CACHE_DIR=str(self._cache_dir))
        with subprocess.Popen(
            ["bash", str(INSTALL_SCRIPT)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env=env,
        ) as installer:
            assert installer.stdout is not None
            for line in installer.stdout:
                logger.info("%s", line.rstrip())
            code = installer.wait()
        if code != 0:
            raise StackError(f"{INSTALL_SCRIPT} failed with exit code {code}")
        still = self._missing_parts()
        if still:
            raise StackError(f"still missing after {INSTALL_SCRIPT}: {', '.join(still)}")

    # ------------------------------------------------------------------ public operations

    def up(self) -> list[ServiceState]:
        """Start whatever is not running and wait until every server is ready."""
        with self._locked():
            started = time.monotonic()
            launched: dict[str, float] = {}
            # Slowest to get ready first, so their start-up overlaps the others' set-up work.
            for name in ("postgres", "kafka", "mosquitto"):
                if self._running_pid(name) is None:
                    self._launch(name)
                    launched[name] = time.monotonic()
            for name in ("mosquitto", "postgres", "kafka"):
                self._wait_ready(name, launched.get(name, time.monotonic()))
            states = self._states()
        logger.info(
            "local stack up in %.1f s (started: %s)",
            time.monotonic() - started,
            ", ".join(launched) or "none, all were running",
        )
        return states

    def status(self) -> list[ServiceState]:
        return self._states()

    def ingest_state(self) -> ServiceState:
        """Whether readings make progress through the platform (``urbanpulse.health``), as a row
        of the status table: running means not stalled."""
        if self._running_pid("kafka") is None:
            return ServiceState(
                "ingest", None, self._kafka_port, False, "unknown: kafka", "unknown"
            )
        try:
            report = asyncio.run(asyncio.wait_for(check_ingest(self._settings), 10))
        except (KafkaError, OSError, TimeoutError) as exc:
            return ServiceState("ingest", None, self._kafka_port, False, repr(exc), "unknown")
        label = "stalled" if report.problems else "ok"
        return ServiceState(
            "ingest", None, self._kafka_port, not report.problems, report.summary(), label
        )

    def down(self) -> None:
        """Stop every server (politely, then SIGKILL after a timeout). Safe when none runs."""
        with self._locked():
            asked: dict[str, int] = {}
            for name in SERVICES:
                pid = self._running_pid(name)
                if pid is not None:
                    logger.info("stopping %s (pid %d)", name, pid)
                    proc.send(pid, _STOP_SIGNAL[name])
                    asked[name] = pid
            for name, pid in asked.items():
                if not proc.wait_stopped(pid, _STOP_TIMEOUT_S[name]):
                    raise StackError(f"{name} (pid {pid}) is still running after SIGKILL")
                self._layout.pid_file(name).unlink(missing_ok=True)
            for name in SERVICES:
                self._layout.pid_file(name).unlink(missing_ok=True)

    def stop_service(self, name: str, hard: bool = False) -> None:
        """Stop one server: politely, or with ``hard=True`` by SIGKILL (for fault tests)."""
        self._check_name(name)
        with self._locked():
            pid = self._running_pid(name)
            if pid is None:
                logger.info("%s is not running", name)
            elif hard:
                logger.info("killing %s (pid %d) with SIGKILL", name, pid)
                if not proc.kill_hard(pid):
                    raise StackError(f"{name} (pid {pid}) survived SIGKILL")
            else:
                logger.info("stopping %s (pid %d)", name, pid)
                proc.send(pid, _STOP_SIGNAL[name])
                if not proc.wait_stopped(pid, _STOP_TIMEOUT_S[name]):
                    raise StackError(f"{name} (pid {pid}) is still running after SIGKILL")
            self._layout.pid_file(name).unlink(missing_ok=True)

    def start_service(self, name: str) -> ServiceState:
        """Start one server (if it is not running) and wait until it is ready."""
        self._check_name(name)
        with self._locked():
            launched = time.monotonic()
            if self._running_pid(name) is None:
                self._launch(name)
            self._wait_ready(name, launched)
            return self._state(name)

    # ------------------------------------------------------------------ state

    def _check_name(self, name: str) -> None:
        if name not in SERVICES:
            raise StackError(f"unknown service {name!r}; expected one of {', '.join(SERVICES)}")

    def _port(self, name: str) -> int:
        if name == "mosquitto":
            return self._settings.mqtt.port
        if name == "kafka":
            return self._kafka_port
        return self._settings.database.port

    def _running_pid(self, name: str) -> int | None:
        pid = proc.read_pid(self._layout.pid_file(name))
        if pid is not None and proc.is_ours(pid, str(self._layout.root)):
            return pid
        return None

    def _state(self, name: str) -> ServiceState:
        pid = self._running_pid(name)
        port = self._port(name)
        if pid is not None:
            return ServiceState(name, pid, port, True, str(self._layout.log(name)))
        recorded = proc.read_pid(self._layout.pid_file(name))
        detail = "not started"
        if recorded is not None:
            detail = f"stale pid file (pid {recorded} is gone); log {self._layout.log(name)}"
        return ServiceState(name, None, port, False, detail)

    def _states(self) -> list[ServiceState]:
        return [self._state(name) for name in SERVICES]

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        """One stack operation at a time per data directory (several CLIs, tests)."""
        self._prepare_root()
        with open(self._layout.lock_file, "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    # ------------------------------------------------------------------ directories

    def _prepare_root(self) -> None:
        root = self._layout.root
        root.mkdir(mode=0o755, parents=True, exist_ok=True)
        self._layout.logs.mkdir(mode=0o755, exist_ok=True)

    def _check_reachable(self, path: Path, user: proc.RunAs) -> None:
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

    def _owned_dir(self, path: Path, user: proc.RunAs | None) -> None:
        path.mkdir(mode=0o700 if user else 0o755, parents=True, exist_ok=True)
        if user is not None:
            st = path.stat()
            if (st.st_uid, st.st_gid) != (user.uid, user.gid):
                os.chown(path, user.uid, user.gid)
            self._check_reachable(path, user)

    # ------------------------------------------------------------------ launching

    def _launch(self, name: str) -> None:
        port = self._port(name)
        if _probes.tcp_open(self._host(name), port):
            raise StackError(
                f"cannot start {name}: port {port} is already in use by another process"
            )
        if name == "kafka":
            ctl = self._settings.stack.kafka_controller_port
            if _probes.tcp_open(self._kafka_host, ctl):
                raise StackError(
                    f"cannot start kafka: controller port {ctl} is already in use by another "
                    "process"
                )
        launcher: dict[str, Callable[[], int]] = {
            "mosquitto": self._launch_mosquitto,
            "kafka": self._launch_kafka,
            "postgres": self._launch_postgres,
        }
        pid = launcher[name]()
        proc.write_pid(self._layout.pid_file(name), pid)
        logger.info("started %s (pid %d, port %d, log %s)", name, pid, port, self._layout.log(name))

    def _host(self, name: str) -> str:
        if name == "mosquitto":
            return self._settings.mqtt.host
        if name == "kafka":
            return self._kafka_host
        return self._settings.database.host

    def _launch_mosquitto(self) -> int:
        lay = self._layout
        run_as = _system_user("mosquitto") if self._root else None
        # Root reads the config, then mosquitto drops to its own user, which writes persistence.
        self._owned_dir(lay.mosquitto_dir, run_as)
        conf = _configs.mosquitto_conf(
            host=self._settings.mqtt.host,
            port=self._settings.mqtt.port,
            persistence_dir=lay.mosquitto_dir,
            log_file=lay.log("mosquitto"),
            run_as=(run_as.name if run_as else ("root" if self._root else None)),
            message_size_limit=self._settings.ingest.broker_message_size_limit,
            max_queued_bytes=self._settings.ingest.broker_max_queued_bytes,
        )
        lay.mosquitto_conf.write_text(conf)
        # The broker writes its log itself (after dropping to its user when we are root); its
        # stdout/stderr (start-up errors) are appended to the same file.
        lay.log("mosquitto").touch()
        if run_as is not None:
            os.chown(lay.log("mosquitto"), run_as.uid, run_as.gid)
        return proc.spawn(
            [str(mosquitto_binary()), "-c", str(lay.mosquitto_conf)],
            log_path=lay.log("mosquitto"),
            cwd=lay.mosquitto_dir,
        )

    def _kafka_java(self, main_class: str, *args: str, heap: str) -> list[str]:
        java = java_binary()
        if java is None:
            raise StackError("java not found: run ensure_installed() first")
        libs = kafka_libs(self._cache_dir)
        if not (libs / ".complete").is_file():
            raise StackError(f"no Kafka jars in {libs}: run ensure_installed() first")
        return [
            str(java),
            f"-Xmx{heap}",
            "-XX:+UseG1GC",
            "-XX:MaxGCPauseMillis=20",
            "-XX:+ExitOnOutOfMemoryError",
            "-Djava.awt.headless=true",
            f"-Dlog4j2.configurationFile={self._layout.kafka_log4j}",
            f"-Dkafka.logs.dir={self._layout.logs}",
            "-cp",
            f"{libs}/*",
            main_class,
            *args,
        ]

    def _launch_kafka(self) -> int:
        lay = self._layout
        lay.kafka_dir.mkdir(mode=0o755, exist_ok=True)
        lay.kafka_properties.write_text(
            _configs.kafka_server_properties(
                host=self._kafka_host,
                port=self._kafka_port,
                controller_port=self._settings.stack.kafka_controller_port,
                log_dir=lay.kafka_data,
            )
        )
        lay.kafka_log4j.write_text(_configs.kafka_log4j2_properties())
        if not (lay.kafka_data / "meta.properties").is_file():
            self._format_kafka()
        return proc.spawn(
            self._kafka_java(
                "kafka.Kafka", str(lay.kafka_properties), heap=self._settings.stack.kafka_heap
            ),
            log_path=lay.log("kafka"),
            cwd=lay.kafka_dir,
        )

    def _format_kafka(self) -> None:
        lay = self._layout
        if not lay.kafka_cluster_id.is_file():
            lay.kafka_cluster_id.write_text(_new_kafka_cluster_id() + "\n")
        cluster_id = lay.kafka_cluster_id.read_text().strip()
        logger.info("formatting Kafka storage in %s (cluster id %s)", lay.kafka_data, cluster_id)
        argv = self._kafka_java(
            "kafka.tools.StorageTool",
            "format",
            "--cluster-id",
            cluster_id,
            "--config",
            str(lay.kafka_properties),
            "--ignore-formatted",
            heap="256m",
        )
        self._run_setup("kafka storage format", argv, cwd=lay.kafka_dir)

    def _run_setup(
        self,
        what: str,
        argv: list[str],
        *,
        cwd: Path,
        run_as: proc.RunAs | None = None,
        env: dict[str, str] | None = None,
        stdin: str | None = None,
    ) -> str:
        try:
            done = subprocess.run(
                argv,
                cwd=cwd,
                env=env,
                input=stdin,
                capture_output=True,
                text=True,
                timeout=_SETUP_TIMEOUT_S,
                user=run_as.uid if run_as else None,
                group=run_as.gid if run_as else None,
                extra_groups=[] if run_as else None,
            )
        except subprocess.TimeoutExpired as exc:
            raise StackError(f"{what} took longer than {_SETUP_TIMEOUT_S:.0f} s") from exc
        output = (done.stdout + done.stderr).strip()
        if done.returncode != 0:
            raise StackError(f"{what} failed (exit {done.returncode}):\n{output[-3000:]}")
        logger.debug("%s: %s", what, output)
        return output

    def _postgres_user(self) -> proc.RunAs | None:
        if not self._root:
            return None
        user = _system_user("postgres")
        if user is None:
            raise StackError(
                "running as root but there is no 'postgres' system user to run "
                "PostgreSQL as (install postgresql-15)"
            )
        return user

    def _postgres_env(self, user: proc.RunAs | None) -> dict[str, str]:
        env = {
            "PATH": f"{PG_BIN}:{os.environ.get('PATH', '/usr/bin:/bin')}",
            "LANG": "C.UTF-8",
            "LC_ALL": "C.UTF-8",
        }
        env["HOME"] = user.home if user else os.environ.get("HOME", "/")
        return env

    def _launch_postgres(self) -> int:
        lay = self._layout
        user = self._postgres_user()
        self._owned_dir(lay.postgres_dir, user)
        self._owned_dir(lay.pg_socket_dir, user)
        env = self._postgres_env(user)
        if not (lay.pgdata / "PG_VERSION").is_file():
            logger.info("initializing a PostgreSQL cluster in %s", lay.pgdata)
            self._run_setup(
                "initdb",
                [
                    str(PG_BIN / "initdb"),
                    "--pgdata",
                    str(lay.pgdata),
                    "--username",
                    _PG_SUPERUSER,
                    "--auth",
                    "trust",
                    "--encoding",
                    "UTF8",
                    "--locale",
                    "C.UTF-8",
                    "--no-instructions",
                ],
                cwd=lay.postgres_dir,
                run_as=user,
                env=env,
            )
            with open(lay.pgdata / "postgresql.conf", "a") as conf:
                conf.write("\ninclude_if_exists = 'urbanpulse.conf'\n")
        self._write_owned(
            lay.pgdata / "urbanpulse.conf",
            _configs.postgres_conf(
                host=self._settings.database.host,
                port=self._settings.database.port,
                socket_dir=lay.pg_socket_dir,
            ),
            user,
        )
        self._write_owned(lay.pgdata / "pg_hba.conf", _configs.PG_HBA, user)
        self._clear_stale_postgres_locks()
        return proc.spawn(
            [str(PG_BIN / "postgres"), "-D", str(lay.pgdata)],
            log_path=lay.log("postgres"),
            cwd=lay.postgres_dir,
            env=env,
            run_as=user,
        )

    @staticmethod
    def _write_owned(path: Path, text: str, user: proc.RunAs | None) -> None:
        path.write_text(text)
        os.chmod(path, 0o600)
        if user is not None:
            os.chown(path, user.uid, user.gid)

    def _clear_stale_postgres_locks(self) -> None:
        """Drop lock files of a killed server whose PID is gone or a zombie.

        PostgreSQL itself ignores a lock file whose PID is dead, but a zombie (left where nothing
        reaps orphans, as in some containers) still answers kill(pid, 0) and blocks the start.
        """
        locks = [self._layout.pgdata / "postmaster.pid"]
        if self._layout.pg_socket_dir.is_dir():
            locks += sorted(self._layout.pg_socket_dir.glob(".s.PGSQL.*.lock"))
        for lock in locks:
            pid = proc.read_pid(lock)
            if pid is None or proc.is_alive(pid) or proc.group_members(pid):
                continue
            logger.info("removing stale %s (pid %d is gone)", lock, pid)
            lock.unlink(missing_ok=True)
            if lock.name.endswith(".lock") and lock.name != "postmaster.pid":
                lock.with_name(lock.name.removesuffix(".lock")).unlink(missing_ok=True)

    # ------------------------------------------------------------------ readiness

    def _wait_ready(self, name: str, launched_at: float) -> None:
        timeout = self._settings.stack.ready_timeout_s
        deadline = launched_at + timeout
        probe: dict[str, Callable[[], bool]] = {
            "mosquitto": self._mosquitto_ready,
            "kafka": self._kafka_ready,
            "postgres": self._postgres_ready,
        }
        while True:
            pid = proc.read_pid(self._layout.pid_file(name))
            if pid is None or not proc.is_ours(pid, str(self._layout.root)):
                code = proc.exit_code(pid) if pid is not None else None
                how = f" with exit code {code}" if code is not None else ""
                if pid is None:
                    how = f" (its pid file {self._layout.pid_file(name)} is gone)"
                elif code is None and proc.is_alive(pid):
                    how = f" (pid {pid} now runs {proc.cmdline(pid)!r})"
                raise StackError(
                    f"{name} exited{how} before it was ready; last lines of "
                    f"{self._layout.log(name)}:\n{_tail(self._layout.log(name))}"
                )
            if probe[name]():
                break
            if time.monotonic() >= deadline:
                raise StackError(
                    f"{name} (pid {pid}) was not ready within {timeout:.0f} s; last lines of "
                    f"{self._layout.log(name)}:\n{_tail(self._layout.log(name))}"
                )
            time.sleep(_POLL_S)
        if name == "postgres":
            self._provision_postgres()
        logger.info("%s ready on port %d", name, self._port(name))

    def _mosquitto_ready(self) -> bool:
        return _probes.tcp_open(self._settings.mqtt.host, self._settings.mqtt.port)

    def _kafka_ready(self) -> bool:
        try:
            return bool(_probes.kafka_brokers(self._kafka_host, self._kafka_port))
        except (OSError, ValueError) as exc:
            logger.debug("kafka not ready: %s", exc)
            return False

    def _postgres_ready(self) -> bool:
        db = self._settings.database
        done = subprocess.run(
            [str(PG_BIN / "pg_isready"), "-q", "-h", db.host, "-p", str(db.port), "-t", "2"],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            check=False,
        )
        return done.returncode == 0

    def _provision_postgres(self) -> None:
        """The platform's roles with their passwords, its database, PostGIS and TimescaleDB
        (idempotent); then each role's own way in, TCP with its password, is tried."""
        db = self._settings.database
        secrets = secrets_dir(self._settings.stack.data_dir)
        passwords = {role: _stack_password(db, role, secrets) for role in DbRole}
        env = dict(self._postgres_env(None), URBANPULSE_STACK_PG_DB=db.name, PGCONNECT_TIMEOUT="10")
        for role, password in passwords.items():
            env[f"URBANPULSE_STACK_PG_USER_{role.name}"] = db.user_for(role)
            env[f"URBANPULSE_STACK_PG_PASSWORD_{role.name}"] = password
        self._run_setup(
            "creating the database roles, database and extensions",
            [
                str(PG_BIN / "psql"),
                "-X",
                "-q",
                "-h",
                str(self._layout.pg_socket_dir),
                "-p",
                str(db.port),
                "-U",
                _PG_SUPERUSER,
                "-d",
                "postgres",
                "-f",
                "-",
            ],
            cwd=self._layout.root,
            env=env,
            stdin=_configs.PG_PROVISION_SQL,
        )
        for role, password in passwords.items():
            self._run_setup(
                f"connecting to {db.host}:{db.port}/{db.name} as {db.user_for(role)}",
                [
                    str(PG_BIN / "psql"),
                    "-X",
                    "-w",
                    "-q",
                    "-tA",
                    "-h",
                    db.host,
                    "-p",
                    str(db.port),
                    "-U",
                    db.user_for(role),
                    "-d",
                    db.name,
                    "-c",
                    "SELECT 1",
                ],
                cwd=self._layout.root,
                env=dict(self._postgres_env(None), PGPASSWORD=password),
            )


def _stack_password(db: DatabaseSettings, role: DbRole, secrets: Path) -> str:
    """An explicit setting wins; else the stack's own secret, generated on its first start."""
    explicit = db.passwords.explicit(role)
    if explicit is not None:
        return explicit.get_secret_value()
    return ensure_secret(secrets, role.secret_name)
