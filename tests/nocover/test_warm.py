"""tasks/warm.py's modules are safe to import in the fork server, before any fork:
in a fresh interpreter with no Django settings (as the server has none), each imports
without error and without opening a socket or starting a thread."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tasks import warm

ROOT = Path(__file__).resolve().parents[2]

PROBE = """
import json, socket, sys, threading
opened = []
real_init = socket.socket.__init__
def init(self, *a, **kw):
    opened.append(repr(a))
    real_init(self, *a, **kw)
socket.socket.__init__ = init
errors = {}
for name in json.loads(sys.argv[1]):
    try:
        __import__(name)
    except Exception as exc:
        errors[name] = f"{type(exc).__name__}: {exc}"
print(json.dumps({"errors": errors, "sockets": opened, "threads": threading.active_count()}))
"""


def probe(modules: list[str]) -> dict[str, object]:
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT)}  # no DJANGO_SETTINGS_MODULE
    done = subprocess.run(
        [sys.executable, "-c", PROBE, json.dumps(modules)], cwd=ROOT, env=env,
        capture_output=True, text=True, timeout=120, check=True,
    )  # fmt: skip
    result: dict[str, object] = json.loads(done.stdout.splitlines()[-1])
    return result


def test_the_warm_modules_import_cleanly_and_open_nothing() -> None:
    assert probe(list(warm.MODULES)) == {"errors": {}, "sockets": [], "threads": 1}


def test_the_probe_sees_a_socket_and_an_import_error() -> None:
    """The probe can fail: a module that opens a socket at import, one that needs
    Django's settings."""
    result = probe(["tasks.points", "smtpd_does_not_exist", "django.contrib.auth.models"])
    errors = result["errors"]
    assert isinstance(errors, dict)
    assert set(errors) == {"smtpd_does_not_exist", "django.contrib.auth.models"}
    probe_socket = subprocess.run(
        [sys.executable, "-c", PROBE.replace("__import__(name)", "socket.socket().close()"),
         '["x"]'], capture_output=True, text=True, timeout=60, check=True,
    )  # fmt: skip
    assert json.loads(probe_socket.stdout)["sockets"] != []


def test_the_fork_server_and_a_fresh_worker_preload_them() -> None:
    """Both places import the one list: the fork server before it forks, tasks.app
    (a fresh worker's main process) before its pool does."""
    for path in ("tasks/forkserver.py", "tasks/app.py"):
        assert "warm.preload()" in (ROOT / path).read_text(), path
