"""A plain-text progress bar on stderr: redrawn in place on a terminal, periodic lines otherwise."""

from __future__ import annotations

import sys
import time
from typing import TextIO


class Progress:
    def __init__(
        self, label: str, total: float, stream: TextIO | None = None, every_s: float = 5.0
    ) -> None:
        self.label = label
        self.total = max(total, 1e-9)
        self.stream = stream if stream is not None else sys.stderr
        self.interactive = self.stream.isatty()
        self._every_s = 0.2 if self.interactive else every_s
        self._last = 0.0
        self._done = False

    def update(self, done: float, note: str = "", force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self._last < self._every_s:
            return
        self._last = now
        share = min(1.0, max(0.0, done / self.total))
        bar = "#" * round(share * 30)
        line = f"{self.label} [{bar:<30}] {share:4.0%} {note}"
        if self.interactive:
            self.stream.write(f"\r{line}\x1b[K")
        else:
            self.stream.write(line + "\n")
        self.stream.flush()

    def finish(self, note: str = "") -> None:
        if self._done:
            return
        self._done = True
        self.update(self.total, note, force=True)
        if self.interactive:
            self.stream.write("\n")
            self.stream.flush()
