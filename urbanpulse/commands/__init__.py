"""Handlers of ``urbanpulse`` commands; ``urbanpulse/cli.py`` only wires them to the parser.

A handler reports a mistake of the user's (a bad file, an unknown area) by raising
:class:`CommandError`; the CLI prints its message in one line and exits with its code.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

import asyncpg

from urbanpulse.core.settings import DbRole, Settings

EXIT_FAILED = 1
EXIT_USAGE = 2


class CommandError(Exception):
    """An expected failure with a message for the user: no traceback, exit ``exit_code``."""

    def __init__(self, message: str, exit_code: int = EXIT_FAILED) -> None:
        super().__init__(message)
        self.exit_code = exit_code


@contextlib.asynccontextmanager
async def database(settings: Settings, role: DbRole) -> AsyncIterator[asyncpg.Connection]:
    """A connection as ``role`` for one command; a refusal is a StartupError that says so."""
    from urbanpulse.storage.db import connect_for_command

    conn = await connect_for_command(settings, role)
    try:
        yield conn
    finally:
        await conn.close()
