"""``stop_all`` (what runs at exit and on Ctrl-C) asks every process group to stop
before it waits for any: one by one, each slow clean shutdown added to the next, and
a ci run's Ctrl-C took over a minute (tests/nocover/test_no_leaks.py timed out)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

# A process that, asked to stop, exits cleanly only once its sibling was asked too
# (the sibling's file exists), and gives up after 20 s; it writes "clean" if it did.
WAITER = """
import os, signal, sys, time
me, other, out = sys.argv[1], sys.argv[2], sys.argv[3]
def on_term(signum, frame):
    open(os.path.join(out, me + ".asked"), "w").close()
    deadline = time.monotonic() + 20
    while not os.path.exists(os.path.join(out, other + ".asked")):
        if time.monotonic() > deadline:
            os._exit(1)
        time.sleep(0.01)
    open(os.path.join(out, me + ".clean"), "w").close()
    os._exit(0)
signal.signal(signal.SIGTERM, on_term)
open(os.path.join(out, me + ".ready"), "w").close()
while True:
    time.sleep(1)
"""

# Spawns two waiters through the harness, waits until both are ready, stops them all.
DRIVER = """
import os, sys, time
from harness import procs
out = sys.argv[1]
for me, other in (("a", "b"), ("b", "a")):
    procs.spawn([sys.executable, "-c", sys.argv[2], me, other, out], name=me)
deadline = time.monotonic() + 30
while not all(os.path.exists(os.path.join(out, n + ".ready")) for n in "ab"):
    assert time.monotonic() < deadline, "the waiters did not start"
    time.sleep(0.01)
procs.stop_all()
"""


def test_stop_all_asks_every_group_before_waiting(tmp_path: Path) -> None:
    subprocess.run(
        [sys.executable, "-c", DRIVER, str(tmp_path), WAITER],
        cwd=ROOT, check=True, timeout=60,
    )  # fmt: skip
    # Stopped one by one, the first waiter would have been killed waiting for the
    # second's signal, which comes only after the first is gone.
    assert sorted(p.name for p in tmp_path.glob("*.clean")) == ["a.clean", "b.clean"]
