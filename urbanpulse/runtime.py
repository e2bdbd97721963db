"""What every ``urbanpulse`` command shares: clean Ctrl-C handling and argument types."""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
from collections.abc import Awaitable, Callable

log = logging.getLogger("urbanpulse")


class StartupError(RuntimeError):
    """A service cannot start (a server unreachable, a port taken); the message says how to fix
    it, and the command reports it in one line instead of a traceback."""


def run_until_interrupted(main: Callable[[asyncio.Event], Awaitable[int | None]]) -> int:
    """Run ``main(stop)`` and return its exit code (0 for None).

    The first Ctrl-C (or SIGTERM) sets ``stop`` so the command can finish cleanly; a second one
    interrupts at once (exit code 130).
    """
    result: list[int | None] = [None]

    async def runner() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()

        def request_stop(sig: signal.Signals) -> None:
            log.info("%s received: stopping cleanly (press Ctrl-C again to force)", sig.name)
            stop.set()
            for s in (signal.SIGINT, signal.SIGTERM):
                loop.remove_signal_handler(s)

        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, request_stop, sig)
        result[0] = await main(stop)

    try:
        asyncio.run(runner())
    except KeyboardInterrupt:
        return 130
    return result[0] or 0


def positive_int(text: str) -> int:
    value = int(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be a positive whole number, got {text}")
    return value


def positive_float(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be a positive number, got {text}")
    return value
