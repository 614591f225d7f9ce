"""Watchdog that kills the suite's process groups when the test process dies uncleanly.

Usage: python -m harness._reaper <parent_pid> <registry_file>

harness.procs starts it in its own session and without a parent-death signal, so it
outlives a SIGKILLed test process. It must be a direct child of <parent_pid>: the
parent counts as gone as soon as we are reparented, which happens at its death, before
it could linger as an unreaped zombie.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import time

POLL_INTERVAL = 0.2


def read_pgids(path: str) -> list[int]:
    """Process-group ids recorded in the registry file, one per line."""
    try:
        with open(path) as f:
            words = f.read().split()
    except FileNotFoundError:
        return []
    # Groups 0 and 1 would mean "our own group" or init: never valid entries.
    return [int(w) for w in words if w.isdigit() and int(w) > 1]


def kill_groups(pgids: list[int]) -> None:
    for pgid in pgids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pgid, signal.SIGKILL)


def main(argv: list[str]) -> int:
    if len(argv) != 3 or not argv[1].isdigit():
        raise SystemExit("usage: python -m harness._reaper <parent_pid> <registry_file>")
    parent, path = int(argv[1]), argv[2]
    # A removed registry file means the parent shut down normally.
    while os.path.exists(path):
        if os.getppid() != parent:
            kill_groups(read_pgids(path))
            for leftover in (path, f"{path}.tmp"):
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(leftover)
            return 0
        time.sleep(POLL_INTERVAL)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
