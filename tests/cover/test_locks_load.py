"""Resolving lock specs: built-in names and plug-in paths, and their error messages.

No servers: the cookbook recipe itself is exercised on an in-memory fake cache.
"""

from __future__ import annotations

import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from model.config import BUILTIN_LOCKS as MODEL_LOCKS
from tasks.locks.builtin import BUILTIN_LOCKS, load_lock
from tasks.locks.cookbook import cookbook

EXAMPLES = [
    "cookbook_locmem",
    "memcached_add_cas",
    "memcached_get_set",
    "redis_py_lock",
    "redis_set_nx_px",
    "redis_setnx_expire",
]


def test_builtin_names_are_the_models() -> None:
    assert set(BUILTIN_LOCKS) == set(MODEL_LOCKS)


@pytest.mark.parametrize("name", sorted(MODEL_LOCKS))
def test_builtin_resolves_to_a_factory(name: str) -> None:
    factory = load_lock(name)
    assert factory is BUILTIN_LOCKS[name]
    # Making the lock touches no resource yet: only taking it does.
    assert callable(factory(object()))


@pytest.mark.parametrize("module", EXAMPLES)
def test_example_plugins_resolve(module: str) -> None:
    factory = load_lock(f"examples.locks.{module}:make_lock")
    assert callable(factory)
    assert factory.__module__ == f"examples.locks.{module}"


def _error(spec: str) -> str:
    with pytest.raises(ValueError) as info:
        load_lock(spec)
    message = str(info.value)
    assert "\n" not in message, "error messages are one line"
    assert repr(spec) in message, "error messages name the spec"
    return message


def test_unknown_name_lists_builtins_and_plugin_syntax() -> None:
    message = _error("cookbook-mysql")
    assert "cookbook-redis" in message and "redis-py-lock" in message
    assert "pkg.mod:make_lock" in message


@pytest.mark.parametrize("spec", [":make_lock", "examples.locks.redis_py_lock:"])
def test_malformed_plugin_path(spec: str) -> None:
    assert "pkg.mod:make_lock" in _error(spec)


def test_missing_module_mentions_pythonpath() -> None:
    message = _error("no_such_package_xyz.locks:make_lock")
    assert "PYTHONPATH" in message and "'no_such_package_xyz'" in message


def test_missing_submodule_mentions_pythonpath() -> None:
    assert "PYTHONPATH" in _error("examples.locks.no_such_module:make_lock")


@pytest.fixture
def plugin_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    monkeypatch.syspath_prepend(str(tmp_path))
    yield tmp_path


def _write(directory: Path, module: str, source: str) -> None:
    (directory / f"{module}.py").write_text(textwrap.dedent(source))


def test_missing_dependency_of_plugin_is_not_blamed_on_pythonpath(plugin_dir: Path) -> None:
    _write(plugin_dir, "suite_plugin_dep", "import no_such_dependency_xyz\n")
    message = _error("suite_plugin_dep:make_lock")
    assert "'no_such_dependency_xyz'" in message and "PYTHONPATH" not in message


def test_plugin_raising_at_import(plugin_dir: Path) -> None:
    _write(plugin_dir, "suite_plugin_boom", "raise RuntimeError('no config')\n")
    assert "RuntimeError: no config" in _error("suite_plugin_boom:make_lock")


def test_missing_attribute() -> None:
    message = _error("examples.locks.redis_py_lock:make_lok")
    assert "has no attribute 'make_lok'" in message and "make_lock(resources)" in message


def test_attribute_not_callable() -> None:
    message = _error("examples.locks.redis_set_nx_px:RELEASE")
    assert "not callable" in message and "is a str" in message


def test_dotted_attribute(plugin_dir: Path) -> None:
    _write(
        plugin_dir,
        "suite_plugin_ns",
        """
        class Locks:
            @staticmethod
            def make_lock(resources):
                return resources
        """,
    )
    assert load_lock("suite_plugin_ns:Locks.make_lock")("r") == "r"


# The cookbook recipe, step by step, on a fake cache and a fake clock.


class FakeCache:
    def __init__(self) -> None:
        self.data: dict[str, Any] = {}
        self.ops: list[tuple[str, str]] = []

    def add(self, key: str, value: Any, timeout: float) -> bool:
        self.ops.append(("add", key))
        if key in self.data:
            return False
        self.data[key] = value
        return True

    def delete(self, key: str) -> bool:
        self.ops.append(("delete", key))
        return self.data.pop(key, None) is not None


class FakeResources:
    def __init__(self) -> None:
        self.caches = {"c": FakeCache()}
        self.now = 100.0

    @property
    def redis(self) -> Any:
        raise AssertionError("the cookbook lock uses a Django cache only")

    @property
    def memcache(self) -> Any:
        raise AssertionError("the cookbook lock uses a Django cache only")

    @property
    def redis_url(self) -> str:
        raise AssertionError("the cookbook lock uses a Django cache only")

    def cache(self, alias: str) -> FakeCache:
        return self.caches[alias]

    def clock(self) -> float:
        return self.now


def test_cookbook_releases_within_its_lease() -> None:
    res = FakeResources()
    lock = cookbook("c")(res)
    with lock("k", 10) as held:
        assert held
        with lock("k", 10) as other:
            assert not other
    assert res.caches["c"].ops == [("add", "k"), ("add", "k"), ("delete", "k")]
    assert "k" not in res.caches["c"].data


def test_cookbook_does_not_release_after_its_lease() -> None:
    res = FakeResources()
    lock = cookbook("c")(res)
    with lock("k", 10) as held:
        assert held
        res.now += 10  # the lease (ttl) has run out: clock() < timeout_at is False
    assert res.caches["c"].ops == [("add", "k")]
    assert "k" in res.caches["c"].data


def test_cookbook_releases_even_when_the_body_fails() -> None:
    res = FakeResources()
    lock = cookbook("c")(res)
    with pytest.raises(KeyError), lock("k", 10):
        raise KeyError("boom")
    assert "k" not in res.caches["c"].data
