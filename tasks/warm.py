"""Modules every worker would otherwise import on its first task, imported up front.

A task body imports its lock, its instrumented clients and Django's cache and
database backends lazily (``caches[alias]`` and ``connections[alias]`` import the
backend module on first use), so without this each new pool child pays for them
inside its first scenario, after every fork and every respawn. The fork server
(tasks/forkserver.py) imports them once, before it forks any worker; a fresh worker
(``SUITE_FORKSERVER=0``) imports them in ``tasks.app``, before its pool forks.

Only modules that are safe to import before a fork belong here: none may open a
connection or start a thread at import, and none may need Django's settings (the
fork server has none). tests/nocover/test_warm.py imports the list in a fresh
interpreter and fails on a socket opened or an import error.
"""

from __future__ import annotations

import importlib

MODULES = (
    # Django's backends the suite's settings name (tasks/django_setup.py).
    "django.core.cache.backends.db",
    "django.core.cache.backends.dummy",
    "django.core.cache.backends.locmem",
    "django.core.cache.backends.memcached",
    "django.core.cache.backends.redis",
    "django.db.backends.postgresql.base",
    "django.db.backends.sqlite3.base",
    "django.db.models.sql.compiler",
    # The suite's locks, effects and instrumented clients (tasks/loaded.py).
    "tasks.effects.builtin",
    "tasks.instrument.caches",
    "tasks.instrument.dbapi",
    "tasks.instrument.memcache",
    "tasks.instrument.redis",
    "tasks.instrument.sql",
    "tasks.locks.builtin",
    "tasks.resources",
)


def preload() -> None:
    """Import ``MODULES`` (cheap once they are imported: a dict lookup each)."""
    for name in MODULES:
        importlib.import_module(name)
