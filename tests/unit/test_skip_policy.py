"""tests/conftest.py turns a skip into a failure unless it was opted into by name."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import ALLOW_SKIP_ENV, skip_is_allowed

TESTS = Path(__file__).resolve().parents[1]
PROBE = """
import pytest

@pytest.mark.skipif(True, reason="needs Debian's chromium package")
def test_needs_a_browser() -> None:
    pass

def test_plain() -> None:
    pass
"""


@pytest.mark.parametrize(
    ("reason", "allowed", "expected"),
    [
        ("needs Debian's chromium package", None, False),
        ("needs Debian's chromium package", "", False),
        ("needs Debian's chromium package", "chromium", True),
        ("needs Debian's chromium package", "Chromium", True),
        ("needs Debian's chromium package", "kafka, chromium", True),
        ("needs Debian's chromium package", "kafka", False),
        ("needs mosquitto", "all", True),
    ],
)
def test_which_skips_are_allowed(reason: str, allowed: str | None, expected: bool) -> None:
    assert skip_is_allowed(reason, allowed) is expected


@pytest.fixture
def probe_dir() -> Iterator[Path]:
    # Inside tests/, so that tests/conftest.py (the hook under test) applies to the probe.
    path = TESTS / f"_probe_{uuid.uuid4().hex[:8]}"
    path.mkdir()
    (path / "test_probe.py").write_text(PROBE)
    yield path
    shutil.rmtree(path)


def run_probe(path: Path, allowed: str | None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != ALLOW_SKIP_ENV}
    if allowed is not None:
        env[ALLOW_SKIP_ENV] = allowed
    command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(path)]
    return subprocess.run(
        command, cwd=TESTS.parent, env=env, capture_output=True, text=True, check=False
    )


def test_a_skip_fails_the_run_unless_opted_into(probe_dir: Path) -> None:
    refused = run_probe(probe_dir, None)
    assert refused.returncode == 1, refused.stdout
    assert "skipped without an opt-out: needs Debian's chromium package" in refused.stdout
    assert f"set {ALLOW_SKIP_ENV}" in refused.stdout
    allowed = run_probe(probe_dir, "chromium")
    assert allowed.returncode == 0, allowed.stdout
    assert "1 passed, 1 skipped" in allowed.stdout
