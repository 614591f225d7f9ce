"""Popular lock libraries through the plug-in contract, one adapter module each.

Each adapter calls only the library's public API and is both a built-in lock kind
(``celery-once``, ``python-redis-lock``, ... in ``model/libraries.py``, whose rows the
``ci`` and ``full`` matrices run with the model's prediction per property) and a plug-in
you can check yourself::

    nox -s check-lock -- examples.thirdparty.python_redis_lock:make_lock

The libraries are pinned in the ``thirdparty`` extra (``pip install -e '.[thirdparty]'``).

Scheduling points: every Redis or memcached command the library sends must be one,
or the suite interleaves only the task's own points. A library that takes a client
gets the run's instrumented one (``resources.redis``, ``resources.cache(alias)``); a
library that builds its own client from a URL gets the run's URL, and its client is
then instrumented in place by ``instrument_redis`` below, so the library's own client
(its own connection pool and options) parks at each command. Points belong to the
thread that runs the task (``tasks.points``: one execution per thread): a command a
library sends from a thread of its own is not a point, which each adapter avoids or
says.
"""

from __future__ import annotations

from typing import Any

import redis

from tasks.instrument.redis import InstrumentedRedis


def instrument_redis(client: Any) -> InstrumentedRedis:
    """Make a plain ``redis.Redis`` (``StrictRedis``) built by a library park at every
    command, in place.

    ``InstrumentedRedis`` adds no state to ``redis.Redis``: it overrides
    ``execute_command`` and ``pipeline`` only (tasks/instrument/redis.py), so swapping
    the instance's class is enough, and every holder of the client (a library's module
    global included) sees the instrumented one. Anything else (a subclass we do not
    know, a cluster client) is refused rather than silently left uninstrumented.
    """
    if type(client) is InstrumentedRedis:
        return client
    if type(client) is not redis.Redis:
        raise TypeError(
            f"cannot instrument a {type(client).__module__}.{type(client).__qualname__}: "
            "only a plain redis.Redis client"
        )
    client.__class__ = InstrumentedRedis
    assert isinstance(client, InstrumentedRedis)
    return client
