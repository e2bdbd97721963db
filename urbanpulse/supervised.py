"""How the supervisor starts a child: ``python -m urbanpulse.supervised <supervisor pid> COMMAND``.

The child asks Linux for SIGTERM when its supervisor dies (``PR_SET_PDEATHSIG``), then runs
``urbanpulse COMMAND``. A supervisor that is SIGKILLed (by the OOM killer, say) so leaves no
bridge holding the broker session and no API holding the port: each child stops as cleanly as
on Ctrl-C. Asked here, after exec, rather than in ``preexec_fn``, which is unsafe in a parent
with threads (the demo's simulators have some).
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys

PR_SET_PDEATHSIG = 1  # <linux/prctl.h>


def main(argv: list[str]) -> int:
    supervisor_pid, command = int(argv[0]), argv[1:]
    libc = ctypes.CDLL(None, use_errno=True)
    prctl = getattr(libc, "prctl", None)  # Linux only; elsewhere a child outlives a crash
    if prctl is not None:
        prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
        if os.getppid() != supervisor_pid:  # it died before we asked: no signal will come
            return 1

    from urbanpulse.cli import main as urbanpulse

    return urbanpulse(command)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
