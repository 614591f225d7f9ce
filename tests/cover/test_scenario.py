"""The scenario line is the reproduction: it must round-trip exactly."""

from __future__ import annotations

import shlex

import pytest
from hypothesis import given
from hypothesis import strategies as st

from model.config import BUILTIN_LOCKS, LockConfig
from model.expectations import PROPERTIES
from properties.scenario import Scenario

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
