"""pymemcache clients whose every command is a scheduling point.

pymemcache 4.0 (pymemcache/client/base.py) funnels every command of ``Client`` through
three private methods, so we point there rather than in each public method:

- ``_store_cmd``: set, set_many, add, replace, append, prepend, cas;
- ``_fetch_cmd``: get, get_many, gets, gets_many, stats, cache_memlimit;
- ``_misc_cmd``: delete, delete_many, incr, decr, touch, version, flush_all, quit,
  raw_command.

``HashClient`` (pymemcache/client/hash.py) builds one client per server from its
``client_class`` class attribute (``HashClient.add_server``), and ``PooledClient``
(base.py) builds pooled clients from its own ``client_class``: subclasses that set
``client_class`` get instrumented connections without touching the routing logic.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, ClassVar

from pymemcache.client.base import Client, PooledClient
from pymemcache.client.hash import HashClient
from pymemcache.serde import pickle_serde

from tasks.instrument import name as point_name
from tasks.points import notify, point

# _misc_cmd commands whose second word is a key.
_KEYED_MISC = frozenset({b"delete", b"incr", b"decr", b"touch", b"md", b"mg", b"ms", b"ma"})


class InstrumentedClient(Client):
    """``pymemcache.client.base.Client`` with a scheduling point before every command."""

    django_keys: ClassVar[bool] = False

    def _point(self, verb: bytes, keys: list[Any]) -> None:
        first = keys[0] if keys else None
        verb_text = verb.decode("ascii", "replace")
        more = max(0, len(keys) - 1)
        point(point_name("memcached", verb_text, first, more=more, django=self.django_keys))

    def _store_cmd(self, name: bytes, values: Mapping[Any, Any], *args: Any, **kwargs: Any) -> Any:
        for key in values:  # the server's own name, for the expiry move (harness/expiry.py)
            full = self.check_key(key, self.key_prefix)
            notify("memcached-key", key=full.decode("utf-8", "replace"))
        self._point(name, list(values))
        return super()._store_cmd(name, values, *args, **kwargs)

    def _fetch_cmd(self, name: bytes, keys: Iterable[Any], *args: Any, **kwargs: Any) -> Any:
        keys = list(keys)  # may be a generator; super() must see the same keys
        self._point(name, keys)
        return super()._fetch_cmd(name, keys, *args, **kwargs)

    def _misc_cmd(self, cmds: Iterable[bytes], cmd_name: bytes, *args: Any, **kwargs: Any) -> Any:
        cmds = list(cmds)
        # cmds are whole protocol lines, e.g. b"delete <prefixed key>" (+ b"\r\n" for
        # some); raw_command passes the full command as cmd_name, so take the verb from
        # the line itself.
        words = cmds[0].split() if cmds else [cmd_name]
        verb = words[0] if words else cmd_name
        keys: list[Any] = []
        if verb in _KEYED_MISC:
            for cmd in cmds:
                parts = cmd.split()
                if len(parts) > 1:
                    key = parts[1]
                    if self.key_prefix and key.startswith(self.key_prefix):
                        key = key[len(self.key_prefix) :]
                    keys.append(key)
        self._point(verb, keys)
        return super()._misc_cmd(cmds, cmd_name, *args, **kwargs)


class DjangoInstrumentedClient(InstrumentedClient):
    """The per-server client of our Django ``PyMemcacheCache``: shows user keys."""

    django_keys: ClassVar[bool] = True


class InstrumentedHashClient(HashClient):
    """``HashClient`` whose per-server clients are ``InstrumentedClient``."""

    client_class = InstrumentedClient


class DjangoInstrumentedHashClient(HashClient):
    """What Django's ``PyMemcacheCache`` instantiates (``self._class``) in our backend."""

    client_class = DjangoInstrumentedClient


class InstrumentedPooledClient(PooledClient):
    """A thread-safe pool of ``InstrumentedClient``.

    A plain ``Client`` owns one socket and no lock, so threads sharing it interleave
    requests and replies; a plug-in lock under the threads pool shares
    ``resources.memcache`` between threads, hence the pool (``PooledClient`` checks a
    client out per call, base.py ``PooledClient``).
    """

    client_class = InstrumentedClient


def parse_address(address: str) -> tuple[str, int]:
    """``"127.0.0.1:11211"`` or ``"memcached://127.0.0.1:11211"`` -> (host, port)."""
    _, _, rest = address.rpartition("://")
    host, sep, port = rest.rpartition(":")
    if not sep or not port.isdigit():
        raise ValueError(f"memcached address {address!r} is not host:port")
    return host or "127.0.0.1", int(port)


def make_memcache(address: str) -> InstrumentedPooledClient:
    """An instrumented, thread-safe client on one memcached server.

    ``pickle_serde`` so Python values round-trip (strings come back as ``str``, not
    ``bytes``). ``default_noreply=False`` is essential: pymemcache's default is
    ``noreply=True``, under which ``add`` sends ``noreply`` and returns True without
    reading the answer (base.py ``_store_cmd``: ``if noreply: return {k: True ...}``),
    which would make every memcached ``add`` lock "acquire".
    """
    return InstrumentedPooledClient(
        parse_address(address),
        serde=pickle_serde,
        default_noreply=False,
        allow_unicode_keys=True,
        connect_timeout=5,
        timeout=30,
    )
