"""Third-party lock libraries run through the plug-in contract, and what the model
predicts for each.

Each library is a lock kind of its own (``LockConfig("celery-once", ...)``), made by an
adapter in ``examples/thirdparty/`` that calls only the library's public API, and
pinned in the ``thirdparty`` extra of pyproject.toml (``tests/cover/test_libraries.py``
checks the installed version is the one named here). The model has no step-by-step
replay for a library (``LockConfig.semantics`` is None): it predicts each property's
verdict from the library's source, quoted in ``why``, and the run must agree, as a
built-in lock's must (``model/verdict.py accept``). A prediction that a run refutes is
a test failure: either the reading of the source was wrong or the library changed.

Every property's ``why`` cites the file and function of the pinned version.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

Prediction = Literal["holds", "violated"]

# What every lease lock without a fencing token shares (Kleppmann, "How to do
# distributed locking", 2016): a holder paused past its lease and a second holder
# both insert.
_FENCING = (
    "A checks for an invoice, pauses past its lease, B acquires and checks too, both "
    "insert: the library hands out no fencing token"
)


@dataclass(frozen=True)
class Library:
    """One library's lock as the suite runs it."""

    name: str  # the lock kind: LockConfig.lock, the scenario line's lock word
    dist: str  # the PyPI distribution
    version: str  # pinned in pyproject.toml [project.optional-dependencies] thirdparty
    adapter: str  # pkg.mod:make_lock, usable with nox -s check-lock too
    backend: str  # the server the lock lives on: redis or memcached
    api: str  # what the adapter calls, for the findings
    predictions: dict[str, tuple[Prediction, str]] = field(default_factory=dict)

    @property
    def pin(self) -> str:
        return f"{self.dist}=={self.version}"


def _sound_lease(release: str) -> dict[str, tuple[Prediction, str]]:
    """An atomic acquire with the TTL in the same command and an ownership-checked
    release: only fencing is beyond it."""
    return {
        "mutual-exclusion": (
            "holds",
            "SET NX with the expiry in one command: atomic on the server, and without "
            "expiry a lease ends only at its holder's release",
        ),
        "lease-mutual-exclusion": ("holds", release),
        "exactly-one-invoice": (
            "holds",
            "with no kill, pause or expiry the lock is plain mutual exclusion",
        ),
        "invoice-under-expiry": ("violated", _FENCING),
        "no-orphaned-lock": (
            "holds",
            "the TTL is set in the acquiring command, so a killed holder's key expires",
        ),
    }


def _unchecked_release(acquire: str, release: str) -> dict[str, tuple[Prediction, str]]:
    """An atomic acquire whose release can delete the next holder's lock."""
    return {
        "mutual-exclusion": (
            "holds",
            f"{acquire}: atomic on the server, and without expiry a lease ends only at "
            "its holder's release",
        ),
        "lease-mutual-exclusion": ("violated", release),
        "exactly-one-invoice": (
            "holds",
            "with no kill, pause or expiry the lock is plain mutual exclusion",
        ),
        "invoice-under-expiry": ("violated", _FENCING),
        "no-orphaned-lock": (
            "holds",
            f"{acquire} carries the TTL, so a killed holder's key expires",
        ),
    }


LIBRARIES: dict[str, Library] = {
    lib.name: lib
    for lib in (
        Library(
            "celery-once",
            "celery-once",
            "3.0.1",
            "examples.thirdparty.celery_once:make_lock",
            "redis",
            "celery_once.backends.redis.Redis raise_or_lock / clear_lock",
            _unchecked_release(
                "raise_or_lock is redis-py's Lock.acquire, SET NX PX "
                "(celery_once/backends/redis.py Redis.raise_or_lock)",
                "clear_lock is a bare DEL with no ownership check "
                "(celery_once/backends/redis.py Redis.clear_lock: "
                "return self.redis.delete(key)); the token of the Lock that "
                "raise_or_lock took is thrown away: a holder whose lease ran out deletes "
                "the next holder's key, and a third task acquires beside it",
            ),
        ),
        Library(
            "python-redis-lock",
            "python-redis-lock",
            "4.0.1",
            "examples.thirdparty.python_redis_lock:make_lock",
            "redis",
            "redis_lock.Lock(client, name, expire, auto_renewal=False).acquire(blocking=False)"
            " / release()",
            _sound_lease(
                "release runs UNLOCK_SCRIPT, a Lua compare-and-delete, and raises "
                "NotAcquired when the key no longer holds our id "
                "(redis_lock/__init__.py Lock.release, UNLOCK_SCRIPT)"
            ),
        ),
        Library(
            "django-cache-lock-redis",
            "django-cache-lock",
            "0.2.5",
            "examples.thirdparty.django_cache_lock:make_redis_lock",
            "redis",
            "django_lock.Lock(name, caches['redis'], timeout, blocking=False)",
            _unchecked_release(
                "Lock._acquire is cache.add, SET NX EX on Django's RedisCache "
                "(django_lock.py Lock._acquire; django/core/cache/backends/redis.py "
                "RedisCacheClient.add)",
                "release is GET, compare in Python, then DEL: two commands "
                "(django_lock.py Lock._release_owned); between them the lease can run "
                "out and another task take the lock, and the DEL removes that task's "
                "lock. Its Lua RedisLock is picked only for django-redis and "
                "django-redis-cache (django_lock.py redis_backends), not for Django's "
                "own RedisCache",
            ),
        ),
        Library(
            "django-cache-lock-memcached",
            "django-cache-lock",
            "0.2.5",
            "examples.thirdparty.django_cache_lock:make_memcached_lock",
            "memcached",
            "django_lock.MemcachedLock(name, caches['memcached'], timeout, blocking=False)",
            _unchecked_release(
                "Lock._acquire is cache.add, memcached add with the expiry "
                "(django_lock.py Lock._acquire; django/core/cache/backends/memcached.py "
                "BaseMemcachedCache.add)",
                "MemcachedLock inherits the GET-compare-DELETE release "
                "(django_lock.py Lock._release_owned; its own comment in Lock._release: "
                "'TODO: use cas to release a memcached lock'): between the get and the "
                "delete the lease can run out and another task take the lock, and the "
                "delete removes it",
            ),
        ),
    )
}


def library_of(lock: str) -> Library | None:
    """The library a lock spec names: its kind name or its adapter path."""
    if lock in LIBRARIES:
        return LIBRARIES[lock]
    return next((lib for lib in LIBRARIES.values() if lib.adapter == lock), None)
