"""Database credentials in settings: where each role's password comes from, and the refusals."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest
from pydantic import SecretStr, ValidationError

from urbanpulse.core.secrets import ensure_secret, secrets_dir
from urbanpulse.core.settings import (
    DatabaseCredentialError,
    DatabasePasswords,
    DatabaseSettings,
    DbRole,
    Settings,
    is_loopback,
)
from urbanpulse.storage.db import login


def with_data_dir(data_dir: Path) -> Settings:
    base = Settings()
    return base.model_copy(update={"stack": base.stack.model_copy(update={"data_dir": data_dir})})


def test_each_role_logs_in_with_the_stack_secret_of_its_own(tmp_path: Path) -> None:
    secrets = secrets_dir(tmp_path)
    generated = {role: ensure_secret(secrets, f"db-{role.value}") for role in DbRole}
    settings = with_data_dir(tmp_path)
    logins = {role: login(settings, role) for role in DbRole}
    assert {role: (found.user, found.password) for role, found in logins.items()} == {
        DbRole.OWNER: ("urbanpulse", generated[DbRole.OWNER]),
        DbRole.WRITER: ("urbanpulse_writer", generated[DbRole.WRITER]),
        DbRole.API: ("urbanpulse_api", generated[DbRole.API]),
        DbRole.READER: ("urbanpulse_reader", generated[DbRole.READER]),
    }
    assert len(set(generated.values())) == len(DbRole)
    for role in DbRole:
        mode = stat.S_IMODE(os.stat(secrets / f"db-{role.value}").st_mode)
        assert mode == 0o600, f"db-{role.value} is {mode:o}"
    assert stat.S_IMODE(os.stat(secrets).st_mode) == 0o700
    # The password is kept out of the login's repr (and so out of tracebacks and logs).
    assert generated[DbRole.WRITER] not in repr(logins[DbRole.WRITER])


def test_an_explicit_password_wins_over_the_stack_secret(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ensure_secret(secrets_dir(tmp_path), "db-writer")
    monkeypatch.setenv("URBANPULSE_DATABASE__PASSWORDS__WRITER", "set-by-the-operator")
    monkeypatch.setenv("URBANPULSE_STACK__DATA_DIR", str(tmp_path))
    assert login(Settings(), DbRole.WRITER).password == "set-by-the-operator"


def test_a_missing_password_says_how_to_provide_one(tmp_path: Path) -> None:
    with pytest.raises(DatabaseCredentialError) as caught:
        login(with_data_dir(tmp_path), DbRole.READER)
    message = str(caught.value)
    assert "urbanpulse_reader" in message
    assert "urbanpulse stack up" in message
    assert "URBANPULSE_DATABASE__PASSWORDS__READER" in message


@pytest.mark.parametrize("password", ["", "urbanpulse"])
def test_off_loopback_a_default_or_empty_password_is_refused(password: str) -> None:
    with pytest.raises(ValidationError) as caught:
        DatabaseSettings(
            host="db.city.example", passwords=DatabasePasswords(writer=SecretStr(password))
        )
    message = str(caught.value)
    assert "URBANPULSE_DATABASE__PASSWORDS__WRITER" in message
    assert "db.city.example" in message and "not loopback" in message


def test_off_loopback_the_refusal_comes_from_the_environment_too(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("URBANPULSE_DATABASE__HOST", "10.0.4.7")
    monkeypatch.setenv("URBANPULSE_DATABASE__PASSWORDS__OWNER", "urbanpulse")
    with pytest.raises(ValidationError, match="PASSWORDS__OWNER"):
        Settings()


def test_on_loopback_or_with_a_real_secret_the_settings_are_accepted() -> None:
    DatabaseSettings(host="127.0.0.1", passwords=DatabasePasswords(owner=SecretStr("urbanpulse")))
    remote = DatabaseSettings(
        host="db.city.example", passwords=DatabasePasswords(api=SecretStr("k3Q9-long-random"))
    )
    assert remote.passwords.explicit(DbRole.API) == SecretStr("k3Q9-long-random")


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("127.0.0.1", True),
        ("127.8.0.1", True),
        ("::1", True),
        ("localhost", True),
        ("/var/run/postgresql", True),
        ("10.0.0.5", False),
        ("timescaledb", False),
        ("db.city.example", False),
    ],
)
def test_loopback_hosts(host: str, loopback: bool) -> None:
    assert is_loopback(host) is loopback
