"""Django settings for workers and for the test process, built from the run's env.

Both sides configure Django identically so the harness can create tables, read the
invoice store and expire database-cache rows with Django's own code.
"""

from __future__ import annotations

import os
from typing import Any
from urllib.parse import urlparse

# Every cache lives far below this, so Django never culls a lock entry behind the
# scenario's back (LocMemCache and DatabaseCache cull at 300 entries by default).
_NO_CULL = {"MAX_ENTRIES": 10**9}

SQLITE_CACHE_TABLE = "suite_cache_sqlite"
PG_CACHE_TABLE = "suite_cache_pg"
# django-celery-beat (the beat area's DatabaseScheduler): installed only where asked
# (the test process, a beat of that scheduler), since importing it costs a worker
# about 0.1 s at every start; its tables live on the run's PostgreSQL.
BEAT_APP = "django_celery_beat"


class CacheRouter:
    """Puts each DatabaseCache table in its database (the cache model has no app)."""

    def _route(self, model: Any) -> str | None:
        table = getattr(model._meta, "db_table", "")
        if table == PG_CACHE_TABLE:
            return "postgres"
        if table == SQLITE_CACHE_TABLE:
            return "default"
        return None

    def db_for_read(self, model: Any, **hints: Any) -> str | None:
        return self._route(model)

    def db_for_write(self, model: Any, **hints: Any) -> str | None:
        return self._route(model)

    def allow_migrate(self, db: str, app_label: str, **hints: Any) -> bool | None:
        return None


class BeatRouter:
    """django-celery-beat's models on ``postgres``: its scheduler reads and writes
    them through their default manager, which asks the routers."""

    def db_for_read(self, model: Any, **hints: Any) -> str | None:
        return "postgres" if model._meta.app_label == BEAT_APP else None

    db_for_write = db_for_read

    def allow_migrate(self, db: str, app_label: str, **hints: Any) -> bool | None:
        return db == "postgres" if app_label == BEAT_APP else None


def settings_dict(
    env: os._Environ[str] | dict[str, str] = os.environ, apps: tuple[str, ...] = ()
) -> dict[str, Any]:
    run_dir = env["SUITE_RUN_DIR"]
    databases: dict[str, Any] = {
        "default": {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": os.path.join(run_dir, "suite.sqlite3"),
            # A statement that would wait for a SQLite lock fails at once. Under
            # controlled scheduling the holder is parked and cannot move while the
            # waiter waits, so a busy timeout would only delay the same outcome.
            "OPTIONS": {"timeout": 0},
        }
    }
    caches: dict[str, Any] = {
        "default": {"BACKEND": "django.core.cache.backends.dummy.DummyCache"},
        "locmem": {
            "BACKEND": "tasks.instrument.caches.LocMemCache",
            "LOCATION": "suite",
            "OPTIONS": _NO_CULL,
        },
        "db": {
            "BACKEND": "django.core.cache.backends.db.DatabaseCache",
            "LOCATION": SQLITE_CACHE_TABLE,
            "OPTIONS": _NO_CULL,
        },
    }
    caches["db-sqlite"] = caches["db"]
    if dsn := env.get("SUITE_PG_DSN"):
        url = urlparse(dsn)
        databases["postgres"] = {
            "ENGINE": "django.db.backends.postgresql",
            "NAME": url.path.lstrip("/"),
            "USER": url.username or "",
            "HOST": url.hostname or "",
            "PORT": str(url.port or 5432),
        }
        caches["db-postgres"] = {
            "BACKEND": "django.core.cache.backends.db.DatabaseCache",
            "LOCATION": PG_CACHE_TABLE,
            "OPTIONS": _NO_CULL,
        }
    if address := env.get("SUITE_MEMCACHED"):
        caches["memcached"] = {
            "BACKEND": "tasks.instrument.caches.PyMemcacheCache",
            "LOCATION": address,
            "OPTIONS": {"no_delay": True},
        }
    if url_ := env.get("SUITE_CACHE_REDIS_URL"):
        caches["redis"] = {"BACKEND": "tasks.instrument.caches.RedisCache", "LOCATION": url_}
    return {
        "DATABASES": databases,
        "CACHES": caches,
        "INSTALLED_APPS": ["tasks.invoices", *apps],
        "DATABASE_ROUTERS": ["tasks.django_setup.CacheRouter", "tasks.django_setup.BeatRouter"],
        "USE_TZ": True,
        "DEFAULT_AUTO_FIELD": "django.db.models.AutoField",
    }


def configure(apps: tuple[str, ...] = ()) -> None:
    """Configure Django once per process and install the SQL scheduling points;
    ``apps``: installed apps beyond the suite's own (``BEAT_APP``)."""
    import django
    from django.conf import settings

    if settings.configured:
        return
    settings.configure(**settings_dict(apps=apps))
    django.setup()
    from tasks.instrument import sql

    sql.install()


def create_tables() -> None:
    """Create the invoice table and the cache tables (idempotent)."""
    from django.core.management import call_command
    from django.db import connections

    from tasks.invoices.models import Invoice

    default = connections["default"]
    if Invoice._meta.db_table not in default.introspection.table_names():
        with default.schema_editor() as editor:
            editor.create_model(Invoice)
    for alias in connections:
        call_command("createcachetable", database=alias, verbosity=0)
