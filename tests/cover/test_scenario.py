"""The scenario line is the reproduction: it must round-trip exactly."""

from __future__ import annotations

import shlex
from typing import Any, cast

import pytest
from hypothesis import given
from hypothesis import strategies as st

from model.config import BUILTIN_LOCKS, LockConfig
from model.lock_properties import PROPERTIES
from properties.scenario import Line, Scenario

moves = st.lists(
    st.one_of(
        st.just("submit"),
        st.just("expire"),
        st.builds(
            lambda verb, n: f"{verb} t{n}",
            st.sampled_from(["step", "kill", "pause", "resume"]),
            st.integers(1, 10),
        ),
    ),
    max_size=40,
)
configs = st.builds(
    LockConfig,
    st.sampled_from([*BUILTIN_LOCKS, "examples.locks.redis_py_lock:make_lock"]),
    st.sampled_from(["prefork", "threads"]),
    st.integers(1, 4),
) | st.builds(LockConfig, st.sampled_from(list(BUILTIN_LOCKS)), st.just("solo"), st.just(1))


@given(st.sampled_from(list(PROPERTIES)), configs, st.integers(2, 10), moves)
def test_round_trip(prop: str, config: LockConfig, tasks: int, ms: list[str]) -> None:
    s = Scenario(prop, config, tasks, tuple(ms))
    assert Scenario.decode(s.encode()) == s


def test_command_is_one_shell_word_after_the_separator() -> None:
    s = Scenario("mutual-exclusion", LockConfig("cookbook-locmem", "prefork", 2), 2, ("submit",))
    words = shlex.split(s.command())
    assert words[:4] == ["nox", "-s", "replay", "--"]
    assert Scenario.decode(words[4]) == s


@pytest.mark.parametrize(
    "line",
    ["", "mutual-exclusion", "mutual-exclusion cookbook-locmem prefork/2: submit",
     "mutual-exclusion cookbook-locmem prefork tasks=2: submit"],
)  # fmt: skip
def test_malformed_lines_name_the_format(line: str) -> None:
    with pytest.raises(ValueError, match="a scenario reads"):
        Scenario.decode(line)


def test_bad_config_in_a_line_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="unknown lock 'nope'"):
        Scenario.decode("mutual-exclusion nope prefork/2 tasks=2: submit")
    with pytest.raises(ValueError, match="concurrency must be 1"):
        Scenario.decode("mutual-exclusion cookbook-redis solo/2 tasks=2: submit")


def _delivery_and_state_lines() -> list[Line[Any]]:
    from model.config import EagerConfig
    from properties import matrix
    from properties.scenario import DeliveryScenario, StateScenario

    steps = ("submit", "step t1", "kill t1", "vt")
    lines: list[Line[Any]] = [
        DeliveryScenario(p, c, 2, steps) for p, c in matrix.delivery_cases("full")
    ]
    lines += [StateScenario(p, c, 3, steps) for p, c in matrix.state_cases("full")]
    lines += [
        StateScenario(p, cast(EagerConfig, c), 2, steps) for p, c in matrix.eager_cases("full")
    ]
    lines += [
        StateScenario("task-finds-its-row", c, 1, steps) for c in matrix.publish_cases("full")
    ]
    return lines


def test_every_matrix_line_round_trips() -> None:
    """Every delivery, state, eager and publishing scenario of the full matrix reads
    back, through ``decode_any`` as ``replay`` reads it, as the scenario it came from."""
    from properties.scenario import decode_any

    lines = _delivery_and_state_lines()
    assert len(lines) > 500
    for s in lines:
        assert decode_any(s.encode()) == s, s.encode()
