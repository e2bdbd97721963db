"""Where the local stack's programs, downloads and data live."""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

import urbanpulse

# Keep in step with <kafka.version> in deploy/kafka/pom.xml.
KAFKA_VERSION = "4.1.2"
PG_MAJOR = 15
PG_BIN = Path(f"/usr/lib/postgresql/{PG_MAJOR}/bin")
PG_EXTENSION_DIR = Path(f"/usr/share/postgresql/{PG_MAJOR}/extension")
DEPLOY_DIR = Path(urbanpulse.__file__).resolve().parents[1] / "deploy"
INSTALL_SCRIPT = DEPLOY_DIR / "install-stack.sh"

SERVICES: tuple[str, ...] = ("mosquitto", "kafka", "postgres")


def mosquitto_binary() -> Path:
    found = shutil.which("mosquitto") or shutil.which("mosquitto", path="/usr/sbin:/sbin")
    return Path(found) if found else Path("/usr/sbin/mosquitto")


def java_binary() -> Path | None:
    found = shutil.which("java")
    return Path(found) if found else None


def kafka_libs(cache_dir: Path) -> Path:
    return cache_dir / f"kafka-{KAFKA_VERSION}" / "libs"


@dataclass(frozen=True)
class Layout:
    """Everything of one stack lives under ``root`` (``settings.stack.data_dir``, absolute)."""

    root: Path

    @property
    def logs(self) -> Path:
        return self.root / "logs"

    @property
    def lock_file(self) -> Path:
        return self.root / ".stack.lock"

    def log(self, name: str) -> Path:
        return self.logs / f"{name}.log"

    def pid_file(self, name: str) -> Path:
        return self.root / f"{name}.pid"

    # mosquitto
    @property
    def mosquitto_dir(self) -> Path:
        return self.root / "mosquitto"

    @property
    def mosquitto_conf(self) -> Path:
        return self.mosquitto_dir / "mosquitto.conf"

    # kafka
    @property
    def kafka_dir(self) -> Path:
        return self.root / "kafka"

    @property
    def kafka_data(self) -> Path:
        return self.kafka_dir / "data"

    @property
    def kafka_properties(self) -> Path:
        return self.kafka_dir / "server.properties"

    @property
    def kafka_log4j(self) -> Path:
        return self.kafka_dir / "log4j2.properties"

    @property
    def kafka_cluster_id(self) -> Path:
        return self.kafka_dir / "cluster.id"

    # postgres
    @property
    def postgres_dir(self) -> Path:
        return self.root / "postgres"

    @property
    def pgdata(self) -> Path:
        return self.postgres_dir / "pgdata"

    @property
    def pg_socket_dir(self) -> Path:
        return self.postgres_dir / "run"
