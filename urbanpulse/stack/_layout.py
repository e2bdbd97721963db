"""Where the local stack's installer and data live (each server's own files: its module)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import urbanpulse

DEPLOY_DIR = Path(urbanpulse.__file__).resolve().parents[1] / "deploy"
INSTALL_SCRIPT = DEPLOY_DIR / "install-stack.sh"


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
