"""Start a prefork pool child in about a tenth of the time (kill scenarios respawn often).

Two costs of each child start, both in upstream code:

- billiard/util.py ``set_pdeathsig``, which every child calls
  (celery/concurrency/prefork.py ``process_initializer`` via celery/platforms.py),
  builds a new ``cffi.FFI()``, parses a ``cdef`` and ``dlopen``s libc on every call
  when cffi is importable. Here it is one ctypes ``prctl`` on a libc loaded once.
- celery/concurrency/asynpool.py ``AsynPool._create_worker_process`` runs
  ``gc.collect()`` before each fork (Celery issue #2927), and the child's first
  collections then walk, and so write to, the GC header of every object inherited
  from the parent: each page touched is copied. ``gc.freeze()`` after that collect
  moves the parent's objects out of the child's collections, and out of the
  parent's next collects too (it stays frozen: see ``frozen_across``).

What each is worth, measured: docs/speed.md.
"""

from __future__ import annotations

import ctypes
import gc
from collections.abc import Callable
from typing import Any

PR_SET_PDEATHSIG = 1  # <linux/prctl.h>

_prctl: Any = None


def _load_prctl() -> Any:
    """libc's ``prctl``, looked up once per process and inherited through fork.

    ``CDLL(None)`` is the symbols already loaded into the process, libc among them:
    ``ctypes.util.find_library`` would run ``ldconfig`` in a subprocess."""
    global _prctl
    if _prctl is None:
        _prctl = ctypes.CDLL(None, use_errno=True).prctl
    return _prctl


def set_pdeathsig(sig: int) -> None:
    """``prctl(PR_SET_PDEATHSIG, sig)``, raising OSError as billiard's does."""
    if _load_prctl()(PR_SET_PDEATHSIG, ctypes.c_ulong(int(sig)), 0, 0, 0) != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, f"prctl(PR_SET_PDEATHSIG, {int(sig)}) failed")


def install() -> None:
    """Replace billiard's ``set_pdeathsig`` and freeze the GC across the pool's fork."""
    import billiard.util
    from celery import platforms
    from celery.concurrency import asynpool

    _load_prctl()  # in the parent, so no child looks it up
    # celery.platforms imported billiard's function by name: replace both bindings.
    billiard.util.set_pdeathsig = set_pdeathsig
    platforms._set_pdeathsig = set_pdeathsig

    pool = asynpool.AsynPool
    if not getattr(pool._create_worker_process, "suite_fast_fork", False):  # not twice
        pool._create_worker_process = frozen_across(pool._create_worker_process)


def frozen_across(create: Callable[..., Any]) -> Callable[..., Any]:
    """``create`` (which forks) with the parent's objects frozen while it runs."""

    def create_worker_process(self: Any, i: int) -> Any:
        # Collect first, as upstream's own collect would: garbage frozen now would
        # never be freed. Then freeze what is left, and keep it frozen: the next
        # respawn's collects (this one, and upstream's) walk only what was made since.
        # Unfrozen, every respawn's collect walked the whole heap (Celery, kombu,
        # Django): 120 ms of the 175 ms from a child's SIGKILL to its replacement's
        # hello (strace of the main process, 2026-12-07). What is frozen and later
        # dies in a cycle is not freed: a main process's long-lived objects, and what
        # was in flight at a fork.
        gc.collect()
        gc.freeze()
        return create(self, i)  # billiard's child leaves by os._exit, never here

    create_worker_process.suite_fast_fork = True  # type: ignore[attr-defined]
    return create_worker_process
