"""Plug-in canvases (tasks/canvas_plugins.py): resolving a spec, its one-line errors,
what the factory gets and returns, and how the runner reads a built canvas's tasks
(harness/runs/canvas.py ``leaves``). No servers: nothing here sends a message."""

from __future__ import annotations

import pytest
from celery import Celery, chain, chord, group

from harness.runs.canvas import leaves
from tasks import canvas_plugins
from tasks.canvas_plugins import BUILTIN_CANVASES, CONTROLLED, PluginApp, load_canvas
from tasks.canvas_runs import CanvasStep

EXAMPLES = ["charge_then_ship", "ship_twice"]


def _app() -> Celery:
    return Celery("test-canvas-plugins", broker="memory://", backend="cache+memory://")


class NoResources:
    """Fails on any use: making a canvas must not touch a resource."""

    def __getattr__(self, name: str) -> object:
        raise AssertionError(f"make_canvas used resources.{name}")


@pytest.mark.parametrize("module", EXAMPLES)
def test_examples_build_a_chain_of_controlled_tasks(module: str) -> None:
    app = _app()
    build = load_canvas(f"examples.canvas.{module}:make_canvas")(PluginApp(app), NoResources())
    signature = build("o1")
    assert [s.task for s in signature.tasks] == [
        f"examples.canvas.{module}.charge",
        f"examples.canvas.{module}.ship",
    ]
    for name in (s.task for s in signature.tasks):
        assert name in CONTROLLED and isinstance(app.tasks[name], CanvasStep)
    doc = __import__(f"examples.canvas.{module}", fromlist=["_"]).__doc__ or ""
    assert ("SOUND" in doc) != ("BROKEN" in doc), module


def test_builtin_names_are_the_examples() -> None:
    assert sorted(BUILTIN_CANVASES.paths.values()) == [
        f"examples.canvas.{m}:make_canvas" for m in EXAMPLES
    ]


def make_nothing(app: object, resources: object) -> int:
    return 42


def test_a_factory_that_returns_no_build_is_one_clear_error() -> None:
    with pytest.raises(ValueError, match="returned a int, not build") as info:
        canvas_plugins.build(f"{__name__}:make_nothing", _app())
    assert "\n" not in str(info.value)


@pytest.mark.parametrize(
    ("spec", "start"),
    [
        ("ship-thrice", "unknown canvas 'ship-thrice'"),
        (":make_canvas", "malformed plug-in canvas"),
        ("no_such_module_here:make_canvas", "plug-in canvas 'no_such_module_here:make_canvas'"),
        ("examples.canvas.ship_twice:make_it", "plug-in canvas"),
    ],
)
def test_bad_specs_are_one_line_naming_the_fix(spec: str, start: str) -> None:
    with pytest.raises(ValueError) as info:
        load_canvas(spec)
    message = str(info.value)
    assert message.startswith(start) and "\n" not in message
    assert "make_canvas" in message


def test_leaves_say_which_tasks_a_submit_sends_now() -> None:
    app = _app()

    @app.task(name="a")
    def a(x: object = None) -> object:
        return x

    def ids(signature: object) -> list[tuple[str, bool]]:
        return [(s.task, now) for s, now in leaves(signature)]

    assert ids(chain(a.s(1), a.s(), a.s())) == [("a", True), ("a", False), ("a", False)]
    assert ids(group(a.s(1), chain(a.s(2), a.s()))) == [("a", True), ("a", True), ("a", False)]
    assert ids(chord([a.s(1), a.s(2)], a.s())) == [("a", True), ("a", True), ("a", False)]
    frozen = chain(a.s(1), a.s())
    frozen.freeze()
    assert all(s.options.get("task_id") for s, _ in leaves(frozen))
