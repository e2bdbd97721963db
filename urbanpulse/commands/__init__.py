"""Handlers of ``urbanpulse`` commands; ``urbanpulse/cli.py`` only wires them to the parser.

A handler reports a mistake of the user's (a bad file, an unknown area) by raising
:class:`CommandError`; the CLI prints its message in one line and exits with its code.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

import asyncpg

from urbanpulse.core.settings import DatabaseSettings
from urbanpulse.runtime import StartupError

EXIT_FAILED = 1
EXIT_USAGE = 2


class CommandError(Exception):
    """An expected failure with a message for the user: no traceback, exit ``exit_code``."""

    def __init__(self, message: str, exit_code: int = EXIT_FAILED) -> None:
        super().__init__(message)
        self.exit_code = exit_code


@contextlib.asynccontextmanager
async def database(settings: DatabaseSettings) -> AsyncIterator[asyncpg.Connection]:
    """A connection for one command; an unreachable database is a StartupError that says so."""
    from urbanpulse.storage.db import connect

    try:
        conn = await connect(settings)
    except (OSError, asyncpg.PostgresError) as exc:
        raise StartupError(
            f"cannot reach the database at {settings.host}:{settings.port}/{settings.name} "
            f"({exc}); is the stack up (`urbanpulse stack up`) or URBANPULSE_DATABASE__* right?"
        ) from None
    try:
        yield conn
    finally:
        await conn.close()
