"""Resolving effect specs: built-in names and plug-in paths, and their error messages;
the invoices table the contract documents is the one the store creates.

No servers: making an effect touches no resource yet, only calling it does.
"""

from __future__ import annotations

import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

import tasks.effects
from tasks.effects import store
from tasks.effects.builtin import BUILTIN_EFFECTS, load_effect

EXAMPLES = ["check_then_insert", "insert_always", "insert_on_conflict", "upsert"]


class NoResources:
    """Fails on any use: making an effect must not touch a resource."""

    def __getattr__(self, name: str) -> object:
        raise AssertionError(f"make_effect used resources.{name}")


def test_builtin_names() -> None:
    assert set(BUILTIN_EFFECTS) == {
        "insert-always",
        "check-then-insert",
        "insert-on-conflict",
        "upsert",
    }


@pytest.mark.parametrize("name", sorted(BUILTIN_EFFECTS))
def test_builtin_resolves_to_a_factory(name: str) -> None:
    factory = load_effect(name)
    assert factory is BUILTIN_EFFECTS[name]
    assert factory.__module__ == "examples.effects." + name.replace("-", "_")
    assert callable(factory(NoResources()))


@pytest.mark.parametrize("module", EXAMPLES)
def test_example_plugins_resolve(module: str) -> None:
    factory = load_effect(f"examples.effects.{module}:make_effect")
    assert factory.__module__ == f"examples.effects.{module}"
    assert callable(factory(NoResources()))


@pytest.mark.parametrize("module", EXAMPLES)
def test_examples_say_sound_or_broken(module: str) -> None:
    factory = load_effect(f"examples.effects.{module}:make_effect")
    doc = __import__(factory.__module__, fromlist=["_"]).__doc__ or ""
    assert ("SOUND" in doc) != ("BROKEN" in doc), module


def _error(spec: str) -> str:
    with pytest.raises(ValueError) as info:
        load_effect(spec)
    message = str(info.value)
    assert "\n" not in message, "error messages are one line"
    assert repr(spec) in message, "error messages name the spec"
    assert "lock" not in message, "effect messages speak of effects"
    return message


def test_unknown_name_lists_builtins_and_plugin_syntax() -> None:
    message = _error("insert-twice")
    assert message.startswith("unknown effect 'insert-twice'")
    assert all(name in message for name in BUILTIN_EFFECTS)
    assert "pkg.mod:make_effect" in message


@pytest.mark.parametrize("spec", [":make_effect", "examples.effects.upsert:"])
def test_malformed_plugin_path(spec: str) -> None:
    message = _error(spec)
    assert message.startswith("malformed plug-in effect") and "pkg.mod:make_effect" in message


def test_missing_module_mentions_pythonpath() -> None:
    message = _error("no_such_package_xyz.effects:make_effect")
    assert "PYTHONPATH" in message and "'no_such_package_xyz'" in message


def test_missing_submodule_mentions_pythonpath() -> None:
    assert "PYTHONPATH" in _error("examples.effects.no_such_module:make_effect")


@pytest.fixture
def plugin_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    monkeypatch.syspath_prepend(str(tmp_path))
    yield tmp_path


def _write(directory: Path, module: str, source: str) -> None:
    (directory / f"{module}.py").write_text(textwrap.dedent(source))


def test_missing_dependency_of_plugin_is_not_blamed_on_pythonpath(plugin_dir: Path) -> None:
    _write(plugin_dir, "suite_effect_dep", "import no_such_dependency_xyz\n")
    message = _error("suite_effect_dep:make_effect")
    assert "'no_such_dependency_xyz'" in message and "PYTHONPATH" not in message


def test_plugin_raising_at_import(plugin_dir: Path) -> None:
    _write(plugin_dir, "suite_effect_boom", "raise RuntimeError('no config')\n")
    assert "RuntimeError: no config" in _error("suite_effect_boom:make_effect")


def test_missing_attribute() -> None:
    message = _error("examples.effects.upsert:make_efect")
    assert "has no attribute 'make_efect'" in message
    assert "def make_effect(resources)" in message


def test_attribute_not_callable(plugin_dir: Path) -> None:
    _write(plugin_dir, "suite_effect_value", "make_effect = 'INSERT INTO invoices ...'\n")
    message = _error("suite_effect_value:make_effect")
    assert "not callable" in message and "is a str" in message
    assert "make_effect(resources) returning effect(order_id)" in message


def test_dotted_attribute(plugin_dir: Path) -> None:
    _write(
        plugin_dir,
        "suite_effect_ns",
        """
        class Effects:
            @staticmethod
            def make_effect(resources):
                return resources
        """,
    )
    assert load_effect("suite_effect_ns:Effects.make_effect")("r") == "r"


def _columns(table_sql: str) -> list[str]:
    body = table_sql.split("(", 1)[1]
    lines = [line.split("--")[0].strip().rstrip(",") for line in body.splitlines()]
    return [line for line in lines if line and line != ")"]


def test_store_table_is_the_documented_one() -> None:
    doc = tasks.effects.__doc__ or ""
    documented = doc[doc.index("CREATE TABLE") :].split("\n\n")[0]
    assert _columns(documented) == _columns(store.TABLE_SQL)
    assert len(_columns(store.TABLE_SQL)) == 4
