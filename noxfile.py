"""Sessions: tests (CI), suite (the main job), bench, check-lock, replay, lint.

nox -s tests                         unit tests + a bounded property run (ci profile)
nox -s suite                         every property on the full config matrix
nox -s bench                         reports/bench.json
nox -s check-lock -- pkg.mod:make    check your own lock
nox -s check-effect -- pkg.mod:make  check your own idempotent effect
nox -s check-canvas -- pkg.mod:make  check your own canvas's effects
nox -s replay -- '<scenario line>'   replay a failure exactly
nox -s suite -- --splits 8 --group 3 one shard of the suite (pytest-split, .test_durations)
nox -s merge -- reports/findings-*.json --out reports/findings.json   merge shards
nox -s soak -- [-k ...]              the ci selection SOAK_RUNS times (20), compared
nox -s regressions                   dated Celery/kombu/billiard bugs on their old pins
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import nox

sys.path.insert(0, str(Path(__file__).parent))  # the pin sets: properties/regressions.py
from properties.regressions import PIN_SETS, pin_set

nox.options.default_venv_backend = "uv|virtualenv"
nox.options.reuse_existing_virtualenvs = True
nox.options.sessions = ["tests"]

PYTHON = "3.11"


def _system_packages(session: nox.Session) -> None:
    """memcached is the one server binary a fresh machine lacks; install it as root."""
    if shutil.which("memcached"):
        return
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        session.error("memcached not found on PATH: install it with `apt-get install -y memcached`")
    session.log("installing memcached (apt-get)")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    subprocess.run(["apt-get", "update", "-qq"], check=True, env=env, stdout=subprocess.DEVNULL)
    subprocess.run(
        ["apt-get", "install", "-y", "-qq", "memcached"], check=True, env=env,
        stdout=subprocess.DEVNULL,
    )  # fmt: skip
    # The Debian package starts a service on 11211; the suite runs its own.
    subprocess.run(["service", "memcached", "stop"], check=False, capture_output=True)


# Our own packages, byte-compiled after each install (see _install).
OWN = ("model", "tasks", "harness", "properties", "examples", "tests")


def _install(session: nox.Session, *extras: str) -> None:
    _system_packages(session)
    target = ".[" + ",".join(extras) + "]" if extras else "."
    # Byte-compiled at install: where PYTHONDONTWRITEBYTECODE is set (it is on this
    # project's CI machines) no interpreter writes a .pyc, so each one the suite starts
    # (test processes, fork servers, fresh workers, subprocess runs) compiled Celery,
    # Django and Hypothesis from source again: 4.8 s to import them against 1.5 s
    # compiled; a broken-lock example row took 32.8 s against 22.2 s.
    session.install("-e", target, env={"UV_COMPILE_BYTECODE": "1"})
    session.run("python", "-m", "compileall", "-q", "-j", "0", *OWN, silent=True)


def _profile() -> str:
    """The Hypothesis profile of suite, check-lock and check-effect (SUITE_PROFILE)."""
    return os.environ.get("SUITE_PROFILE", "dev")


def _pytest(session: nox.Session, *args: str) -> None:
    """pytest; any non-zero exit fails the session, 5 (no tests collected) included."""
    session.run("pytest", *args)


@nox.session(python=PYTHON)
def tests(session: nox.Session) -> None:
    """Unit tests, harness tests, and every property on the ci matrix (ci profile).
    The browser extra: the findings page's Chromium test (tests/nocover)."""
    _install(session, "browser", "tests", "thirdparty")
    # Two xdist workers, each with its own servers and celery workers: most of a row's
    # time is spent waiting on a round trip, so two rows share the 2 cores well. A test
    # file stays on one worker (--dist loadfile): the rows before a row are the same
    # every run, and the files balance (locks + state + claims against delivery +
    # examples).
    _pytest(session, "tests/cover", "tests/nocover", "-q", "-n", "2", *session.posargs)
    _pytest(
        session, "tests/properties", "-q", "--matrix", "ci", "--hypothesis-profile", "ci",
        "-n", "2", "--dist", "loadfile", "--progress", "-o", "console_output_style=classic",
        "--findings", "reports/findings-ci.json", "--junitxml=reports/junit-ci.xml",
        *session.posargs,
    )  # fmt: skip


@nox.session(python=PYTHON)
def suite(session: nox.Session) -> None:
    """The main job: every area's rows on the ``ci`` selection under the dev profile,
    with progress; writes reports/findings.json. ``-- --matrix full`` runs every config."""
    _install(session, "thirdparty")
    _pytest(
        session, "tests/properties", "-q", "--matrix", "ci", "--hypothesis-profile", _profile(),
        "-n", "2", "--dist", "loadfile", "--progress", "-o", "console_output_style=classic",
        "--findings", "reports/findings.json", *session.posargs,
    )  # fmt: skip


@nox.session(python=PYTHON)
def merge(session: nox.Session) -> None:
    """Merge shards' findings: nox -s merge -- reports/findings-*.json --out FILE."""
    session.install("-e", ".")  # no servers: memcached is not needed to merge
    session.run("python", "-m", "properties.merge", *session.posargs)


@nox.session(python=PYTHON)
def soak(session: nox.Session) -> None:
    """The ci property selection SOAK_RUNS times (default 20); exit 1 if a row changed."""
    _install(session, "thirdparty")
    session.run("python", "-m", "properties.soak", *session.posargs)


@nox.session(python=PYTHON)
def bench(session: nox.Session) -> None:
    _install(session)
    session.run("python", "-m", "properties.bench", *session.posargs)


def _check_plugin(
    session: nox.Session, kind: str, factory: str, test_file: str, *extras: str
) -> None:
    """``nox -s check-<kind> -- pkg.mod:<factory> [pytest args]``: the plug-in's rows of
    one property file under SUITE_PROFILE, reported to reports/check-<kind>.json."""
    if not session.posargs or ":" not in session.posargs[0]:
        session.error(
            f"usage: nox -s check-{kind} -- pkg.mod:{factory} (importable via PYTHONPATH)"
        )
    _install(session, *extras)
    plugin, *rest = session.posargs
    _pytest(
        session, f"tests/properties/{test_file}", "-q", f"--{kind}", plugin,
        "--hypothesis-profile", _profile(), "--findings", f"reports/check-{kind}.json", *rest,
    )  # fmt: skip


@nox.session(name="check-lock", python=PYTHON)
def check_lock(session: nox.Session) -> None:
    """Check a plug-in lock: nox -s check-lock -- pkg.mod:make_lock [more pytest args].
    The thirdparty extra: the adapters in examples/thirdparty/ are locks too."""
    _check_plugin(session, "lock", "make_lock", "test_locks.py", "thirdparty")


@nox.session(name="check-effect", python=PYTHON)
def check_effect(session: nox.Session) -> None:
    """Check a plug-in effect: nox -s check-effect -- pkg.mod:make_effect [pytest args]."""
    _check_plugin(session, "effect", "make_effect", "test_delivery.py")


@nox.session(name="check-canvas", python=PYTHON)
def check_canvas(session: nox.Session) -> None:
    """Check a plug-in canvas: nox -s check-canvas -- pkg.mod:make_canvas [pytest args]."""
    _check_plugin(session, "canvas", "make_canvas", "test_canvas.py")


@nox.session(python=PYTHON)
def replay(session: nox.Session) -> None:
    """Replay a scenario line exactly: nox -s replay -- '<scenario>' [--times N]."""
    if not session.posargs:
        session.error("usage: nox -s replay -- '<scenario line from a failure>' [--times N]")
    _install(session, "thirdparty")  # a library row's line loads its adapter
    session.run("python", "-m", "properties.replay", *session.posargs)


@nox.session(python=PYTHON)
def lint(session: nox.Session) -> None:
    _install(session, "dev")
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", ".")
    session.run("mypy", "model", "tasks", "harness", "properties", "examples", "tests")
    # One-way imports, no circles (tests/cover/test_imports.py).
    session.run("pytest", "-q", "tests/cover/test_imports.py")


@nox.session(python=PYTHON)
@nox.parametrize("pins", [p.id for p in PIN_SETS], ids=[p.id for p in PIN_SETS])
def regressions(session: nox.Session, pins: str) -> None:
    """Dated bugs rediscovered: each pin set's venv pins old celery / kombu / billiard
    (properties/regressions.py) and runs the bug's rows; regressions-summary prints the
    table. ``-- replay '<line>'`` replays a counterexample in the pin set's venv."""
    chosen = pin_set(pins)
    _install(session)
    # After the project: these replace its celery / kombu / billiard pins in this venv.
    session.install(*chosen.pins.requirements())
    if session.posargs[:1] == ["replay"]:
        session.run("python", "-m", "properties.replay", *session.posargs[1:])
        return
    session.notify("regressions-summary")
    _pytest(
        session, "tests/regressions", "-q", "--pin-set", pins, "--hypothesis-profile", "ci",
        "--progress", "-o", "console_output_style=classic",
        "--findings", f"reports/regressions/findings/{pins}.json", *session.posargs,
    )  # fmt: skip


@nox.session(name="regressions-summary", python=False)
def regressions_summary(session: nox.Session) -> None:
    """The table of every pin set's report (reports/regressions/*.json)."""
    session.run(sys.executable, "-m", "properties.regressions", "summary", *session.posargs)
