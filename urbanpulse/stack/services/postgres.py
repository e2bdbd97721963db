"""PostgreSQL 15 with PostGIS and TimescaleDB, and the application's role and database."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
from pathlib import Path

from urbanpulse.stack import _process as proc
from urbanpulse.stack.services.base import HEADER, Launch, Service, run_setup

logger = logging.getLogger(__name__)

PG_MAJOR = 15
PG_BIN = Path(f"/usr/lib/postgresql/{PG_MAJOR}/bin")
PG_EXTENSION_DIR = Path(f"/usr/share/postgresql/{PG_MAJOR}/extension")
SUPERUSER = "postgres"


def socket_dir(data_dir: Path) -> Path:
    """The directory of the server's Unix socket in the stack under ``data_dir``."""
    return data_dir / "postgres" / "run"


def postgres_conf(*, host: str, port: int, socket_dir: Path) -> str:
    settings = {
        "listen_addresses": f"'{host}'",
        "port": str(port),
        "unix_socket_directories": f"'{socket_dir}'",
        "unix_socket_permissions": "0700",
        "shared_preload_libraries": "'timescaledb'",
        "timescaledb.telemetry_level": "off",
        "max_connections": "100",
        "shared_buffers": "'128MB'",
        "max_worker_processes": "16",
        "timescaledb.max_background_workers": "8",
        "logging_collector": "off",
        "log_destination": "'stderr'",
        "log_line_prefix": "'%m [%p] %q%u@%d '",
        "log_timezone": "'UTC'",
        "timezone": "'UTC'",
    }
    return HEADER + "".join(f"{key} = {value}\n" for key, value in settings.items())


PG_HBA = HEADER + (
    "# Unix socket (a directory only the server's user can open): the stack's superuser access.\n"
    "local   all   all                 trust\n"
    "# TCP on loopback: passwords.\n"
    "host    all   all   127.0.0.1/32  scram-sha-256\n"
)

PROVISION_SQL = r"""
\set ON_ERROR_STOP on
\getenv app_user URBANPULSE_STACK_PG_USER
\getenv app_password URBANPULSE_STACK_PG_PASSWORD
\getenv app_db URBANPULSE_STACK_PG_DB
SELECT format('CREATE ROLE %I LOGIN', :'app_user')
 WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = :'app_user') \gexec
SELECT format('ALTER ROLE %I WITH LOGIN PASSWORD %L', :'app_user', :'app_password') \gexec
SELECT format('CREATE DATABASE %I OWNER %I', :'app_db', :'app_user')
 WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = :'app_db') \gexec
\connect :"app_db"
SET client_min_messages = warning;
CREATE EXTENSION IF NOT EXISTS postgis;
CREATE EXTENSION IF NOT EXISTS timescaledb;
"""


class Postgres(Service):
    name = "postgres"
    user = "postgres"
    startup_s = 3.0
    # SIGINT is its "fast" shutdown (SIGTERM would wait for every client to disconnect).
    stop_signal = signal.SIGINT

    @property
    def host(self) -> str:
        return self.settings.database.host

    @property
    def port(self) -> int:
        return self.settings.database.port

    @property
    def _dir(self) -> Path:
        return self.layout.root / "postgres"

    @property
    def _pgdata(self) -> Path:
        return self._dir / "pgdata"

    @property
    def _socket_dir(self) -> Path:
        return socket_dir(self.layout.root)

    def missing_parts(self) -> list[str]:
        missing = []
        for tool in ("postgres", "initdb", "pg_isready", "psql"):
            if not (PG_BIN / tool).is_file():
                missing.append(f"PostgreSQL {PG_MAJOR} ({tool})")
        if not (PG_EXTENSION_DIR / "postgis.control").is_file():
            missing.append(f"PostGIS for PostgreSQL {PG_MAJOR}")
        if not (PG_EXTENSION_DIR / "timescaledb.control").is_file():
            missing.append(f"TimescaleDB for PostgreSQL {PG_MAJOR}")
        return missing

    def _env(self, user: proc.RunAs | None) -> dict[str, str]:
        return {
            "PATH": f"{PG_BIN}:{os.environ.get('PATH', '/usr/bin:/bin')}",
            "LANG": "C.UTF-8",
            "LC_ALL": "C.UTF-8",
            "HOME": user.home if user else os.environ.get("HOME", "/"),
        }

    def prepare(self) -> None:
        user = self.run_as()
        self.owned_dir(self._dir)
        self.owned_dir(self._socket_dir)
        if not (self._pgdata / "PG_VERSION").is_file():
            logger.info("initializing a PostgreSQL cluster in %s", self._pgdata)
            run_setup(
                "initdb",
                [
                    str(PG_BIN / "initdb"),
                    "--pgdata",
                    str(self._pgdata),
                    "--username",
                    SUPERUSER,
                    "--auth",
                    "trust",
                    "--encoding",
                    "UTF8",
                    "--locale",
                    "C.UTF-8",
                    "--no-instructions",
                ],
                cwd=self._dir,
                run_as=user,
                env=self._env(user),
            )
            with open(self._pgdata / "postgresql.conf", "a") as conf:
                conf.write("\ninclude_if_exists = 'urbanpulse.conf'\n")
        self.write_owned(
            self._pgdata / "urbanpulse.conf",
            postgres_conf(host=self.host, port=self.port, socket_dir=self._socket_dir),
        )
        self.write_owned(self._pgdata / "pg_hba.conf", PG_HBA)
        self._clear_stale_locks()

    def launch(self) -> Launch:
        user = self.run_as()
        return Launch(
            [str(PG_BIN / "postgres"), "-D", str(self._pgdata)],
            cwd=self._dir,
            env=self._env(user),
            run_as=user,
        )

    def _clear_stale_locks(self) -> None:
        """Drop lock files of a killed server whose PID is gone or a zombie.

        PostgreSQL itself ignores a lock file whose PID is dead, but a zombie (left where nothing
        reaps orphans, as in some containers) still answers kill(pid, 0) and blocks the start.
        """
        locks = [self._pgdata / "postmaster.pid"]
        if self._socket_dir.is_dir():
            locks += sorted(self._socket_dir.glob(".s.PGSQL.*.lock"))
        for lock in locks:
            pid = proc.read_pid(lock)
            if pid is None or proc.is_alive(pid) or proc.group_members(pid):
                continue
            logger.info("removing stale %s (pid %d is gone)", lock, pid)
            lock.unlink(missing_ok=True)
            if lock.name.endswith(".lock") and lock.name != "postmaster.pid":
                lock.with_name(lock.name.removesuffix(".lock")).unlink(missing_ok=True)

    def ready(self) -> bool:
        done = subprocess.run(
            [str(PG_BIN / "pg_isready"), "-q", "-h", self.host, "-p", str(self.port), "-t", "2"],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            check=False,
        )
        return done.returncode == 0

    def after_ready(self) -> None:
        """The application's role and database, with PostGIS and TimescaleDB (idempotent)."""
        db = self.settings.database
        env = dict(
            self._env(None),
            URBANPULSE_STACK_PG_USER=db.user,
            URBANPULSE_STACK_PG_PASSWORD=db.password.get_secret_value(),
            URBANPULSE_STACK_PG_DB=db.name,
            PGCONNECT_TIMEOUT="10",
        )
        run_setup(
            "creating the database role, database and extensions",
            [
                str(PG_BIN / "psql"),
                "-X",
                "-q",
                "-h",
                str(self._socket_dir),
                "-p",
                str(db.port),
                "-U",
                SUPERUSER,
                "-d",
                "postgres",
                "-f",
                "-",
            ],
            cwd=self.layout.root,
            env=env,
            stdin=PROVISION_SQL,
        )
        # The application's own way in: TCP with its password.
        env_app = dict(self._env(None), PGPASSWORD=db.password.get_secret_value())
        run_setup(
            f"connecting to {db.host}:{db.port}/{db.name} as {db.user}",
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
                db.user,
                "-d",
                db.name,
                "-c",
                "SELECT 1",
            ],
            cwd=self.layout.root,
            env=env_app,
        )
