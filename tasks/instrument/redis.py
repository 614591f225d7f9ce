"""A redis-py client whose every command is a scheduling point.

Where redis-py sends commands (redis 8.1, redis/client.py):

- ``Redis.execute_command`` is the single entry of every command method, including
  ``evalsha``: ``Script.__call__`` (redis/commands/core.py ``class Script``) calls
  ``client.evalsha(...)`` and, on NoScriptError, ``client.script_load`` then ``evalsha``
  again. That miss path is one point (``redis EVALSHA <first key>``), not three: whether
  it is taken depends on the server's script cache, which outlives an example, so three
  points on a cold cache and one on a warm one made a replay of the same choices see
  other moves (Hypothesis's ``FlakyStrategyDefinition``: "stopped drawing earlier").
  Nothing in between changes data: the failed EVALSHA ran nothing, SCRIPT LOAD only
  caches the body, so the one point before the first EVALSHA stands for all three.
  redis-py's own ``Lock`` (redis/lock.py) passes ``client=self.redis`` to its scripts,
  so its release/extend go through our client even though the ``Script`` objects are
  class attributes registered on whichever client created the first ``Lock``.
- ``Redis.pipeline`` builds a plain ``Pipeline`` (client.py ``Redis.pipeline``), which
  is a ``Redis`` subclass of its own: it would bypass our override, so we return an
  instrumented ``Pipeline``. Queued commands are only buffered
  (``pipeline_execute_command``); the round trip is ``Pipeline.execute``, which is the
  one point. After ``WATCH`` a pipeline sends commands at once
  (``immediate_execute_command``): each of those is a point too.
- Connection set-up (``HELLO``, ``CLIENT SETINFO``) and ``Pipeline.reset``'s
  ``UNWATCH`` go straight to the connection: they touch no shared data, so no point.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Any, ClassVar, cast

import redis
from redis.exceptions import NoScriptError

from tasks.instrument import name
from tasks.points import point

# Commands whose first argument is not a key (or that have none): the point shows the
# verb alone rather than, say, a cursor or a script body.
_KEYLESS = frozenset(
    {
        "AUTH", "BGSAVE", "DBSIZE", "DISCARD", "ECHO", "EXEC", "FLUSHALL", "FLUSHDB",
        "HELLO", "INFO", "KEYS", "LASTSAVE", "MULTI", "PING", "QUIT", "RANDOMKEY", "SAVE",
        "SCAN", "SELECT", "SWAPDB", "TIME", "UNWATCH", "WAIT",
    }
)  # fmt: skip
# EVAL/EVALSHA/FCALL take ``script numkeys key...``: the first key is the third argument.
_SCRIPTED = frozenset({"EVAL", "EVALSHA", "EVAL_RO", "EVALSHA_RO", "FCALL", "FCALL_RO"})


def _first_key(args: Sequence[Any]) -> tuple[str, Any, int]:
    """(verb, first key or None, number of further keys when cheap to tell)."""
    verb = str(args[0]).upper()
    if " " in verb or verb in _KEYLESS or len(args) < 2:
        # "SCRIPT LOAD", "CLIENT SETNAME", ...: subcommands carry no key.
        return verb, None, 0
    if verb in _SCRIPTED:
        try:
            numkeys = int(args[2])
        except (IndexError, TypeError, ValueError):
            return verb, None, 0
        return (verb, args[3], numkeys - 1) if numkeys > 0 and len(args) > 3 else (verb, None, 0)
    if verb in {"DEL", "UNLINK", "EXISTS", "MGET", "WATCH", "TOUCH"}:
        return verb, args[1], len(args) - 2
    return verb, args[1], 0


def command_point(args: Sequence[Any], *, django: bool = False) -> str:
    """``redis SET invoice:o1`` for ``("SET", "invoice:o1", ...)``."""
    verb, key, more = _first_key(args)
    return name("redis", verb, key, more=more, django=django)


def pipeline_point(
    stack: Sequence[tuple[Sequence[Any], Any]], transaction: bool, *, django: bool = False
) -> str:
    """``redis MULTI MSET+EXPIRE+EXPIRE invoice:o1``: the verbs in order, the first key."""
    kind = "MULTI" if transaction else "PIPELINE"
    verbs = [_first_key(args)[0] for args, _ in stack]
    shown = "+".join(verbs[:3]) + (f"+...{len(verbs) - 3}" if len(verbs) > 3 else "")
    key = next((k for args, _ in stack if (k := _first_key(args)[1]) is not None), None)
    return name("redis", f"{kind} {shown}" if shown else kind, key, django=django)


class InstrumentedPipeline(redis.client.Pipeline):
    """A pipeline that parks once per round trip: at ``execute`` and, after ``WATCH``,
    at each immediately executed command."""

    django_keys: bool = False
    _suite_executing: bool = False

    def immediate_execute_command(self, *args: Any, **options: Any) -> Any:
        # ``execute`` itself issues SCRIPT EXISTS / SCRIPT LOAD through here
        # (client.py ``Pipeline.load_scripts``); that is part of the one point already
        # taken for the whole batch.
        if not self._suite_executing:
            point(command_point(args, django=self.django_keys))
        return super().immediate_execute_command(*args, **options)

    def execute(self, raise_on_error: bool = True) -> list[Any]:
        if not self.command_stack and not self.watching:
            return []  # redis-py sends nothing in this case (client.py Pipeline.execute)
        # Pipeline.__init__ stores the ``transaction`` flag in an instance attribute that
        # shadows the ``Redis.transaction`` method, which is all the type checker sees.
        transactional = cast(bool, self.transaction) or self.explicit_transaction
        point(pipeline_point(self.command_stack, transactional, django=self.django_keys))
        self._suite_executing = True
        try:
            return super().execute(raise_on_error)
        finally:
            self._suite_executing = False


class _ScriptMiss(threading.local):
    left = 0  # commands of the current script miss path still to come on this thread


_script_miss = _ScriptMiss()


class InstrumentedRedis(redis.Redis):
    """``redis.Redis`` with a scheduling point before every command."""

    # Set on the Django-facing subclass so point names show the user's key, not
    # Django's ":1:"-versioned one.
    django_keys: ClassVar[bool] = False

    def execute_command(self, *args: Any, **options: Any) -> Any:
        verb = str(args[0]).upper() if args else ""
        if _script_miss.left and verb in ("SCRIPT LOAD", "EVALSHA"):
            _script_miss.left -= 1  # the rest of a miss path: its point is taken
        else:
            _script_miss.left = 0
            point(command_point(args, django=self.django_keys))
        try:
            return super().execute_command(*args, **options)
        except NoScriptError:
            if verb == "EVALSHA":
                _script_miss.left = 2  # Script.__call__ sends SCRIPT LOAD, then EVALSHA
            raise

    def pipeline(self, transaction: bool = True, shard_hint: Any = None) -> InstrumentedPipeline:
        pipe = InstrumentedPipeline(
            self.connection_pool, self.response_callbacks, transaction, shard_hint
        )
        pipe.django_keys = self.django_keys
        return pipe


class DjangoInstrumentedRedis(InstrumentedRedis):
    """The client class of our Django ``RedisCache`` (``tasks.instrument.caches``)."""

    django_keys: ClassVar[bool] = True


def make_redis(url: str) -> InstrumentedRedis:
    """An instrumented client on ``url`` (``redis://host:port/db``).

    ``from_url`` builds ``cls(connection_pool=...)`` (client.py ``Redis.from_url``), so
    the subclass survives. The pool is fork-safe: redis-py's ``ConnectionPool`` drops
    inherited connections when it notices a new pid (connection.py ``_checkpid``).
    """
    client = InstrumentedRedis.from_url(url)
    assert isinstance(client, InstrumentedRedis)
    return client
