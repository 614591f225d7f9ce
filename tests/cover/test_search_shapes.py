"""The fixed parts of a search: the lockstep attack's order, the ci seed, the shrink
budget. No servers: the attack is fed enabled-move lists as a runner would offer them."""

from __future__ import annotations

import pytest
from hypothesis import strategies as st

from properties import profiles
from properties.engine import Tally, hypothesis_test
from properties.state import Lockstep


def _play(shape: Lockstep, points: int, ops: tuple[str, ...]) -> list[str]:
    """Drive ``shape`` like StateRunner: two slots, each task parks ``points`` times."""
    left: dict[str, int] = {}
    moves: list[str] = []
    while True:
        submitted = sum(m.startswith("submit") for m in moves)
        if submitted == shape.tasks and not left:
            return moves
        enabled = [f"step {t}" for t in sorted(left)]
        if len(left) < 2 and submitted < shape.tasks:
            enabled += [f"submit {op}" for op in ops]
        move = shape(enabled)
        moves.append(move)
        if move.startswith("submit"):
            left[f"t{submitted + 1}"] = points
        else:
            task = move.split()[1]
            left[task] -= 1
            if not left[task]:
                del left[task]


def test_lockstep_alternates_the_two_writes_then_reads() -> None:
    moves = _play(Lockstep(("write", "read")), 3, ("write", "read"))
    assert moves == [
        "submit write", "submit write",
        "step t1", "step t2", "step t1", "step t2", "step t1", "step t2",
        "submit read", "step t3", "step t3", "step t3",
    ]  # fmt: skip


def test_lockstep_of_one_operation_is_two_tasks() -> None:
    shape = Lockstep(("incr",))
    assert shape.tasks == 2
    assert _play(shape, 2, ("incr",)) == [
        "submit incr", "submit incr", "step t1", "step t2", "step t1", "step t2",
    ]  # fmt: skip


def _drawn(digest: str) -> list[int]:
    seen: list[int] = []

    def one(data: st.DataObject) -> None:
        seen.append(data.draw(st.integers(0, 10**6)))

    hypothesis_test(one, digest, {profiles.active: 5})()
    return seen


def test_ci_draws_depend_on_the_row_not_on_the_source() -> None:
    """Under a derandomized profile the same digest draws the same values from two
    different functions, and another digest draws others."""
    from hypothesis import settings

    was = settings.get_current_profile_name()
    settings.register_profile("ci-like", derandomize=True, database=None)
    settings.load_profile("ci-like")
    try:
        first = _drawn("prop|config-a")
        again: list[int] = []

        def other_source(data: st.DataObject) -> None:  # a different closure
            again.append(data.draw(st.integers(0, 10**6)))

        hypothesis_test(other_source, "prop|config-a", {profiles.active: 5})()
        assert again == first
        assert _drawn("prop|config-b") != first
    finally:
        settings.load_profile(was)


def test_tally_counts_up_to_the_first_failure() -> None:
    from properties.outcome import Failure

    class _Sc:
        prop, config = "p", None

    tally = Tally()

    def one(data: st.DataObject) -> None:
        if data.draw(st.integers(0, 3)) == 3:
            raise Failure("invariant violated", _Sc(), None, ["x"], [])

    with pytest.raises(Failure):
        hypothesis_test(one, "tally", {profiles.active: 50}, tally, shrink=1)()
    assert tally.first_failure is not None and 1 <= tally.first_failure <= tally.calls


def test_predicted_violations_shrink_briefly_in_ci_only() -> None:
    was = profiles.active
    try:
        profiles.active = "ci"
        assert profiles.shrink_calls("violated") == profiles.PREDICTED_SHRINK_CALLS["ci"]
        assert profiles.shrink_calls("holds") == profiles.SHRINK_CALLS["ci"]
        assert profiles.shrink_calls("unknown", delivery=True) == 15
        profiles.active = "dev"
        assert profiles.shrink_calls("violated") == profiles.SHRINK_CALLS["dev"]
    finally:
        profiles.active = was


def _shrink_run(budget: int) -> tuple[int, int]:
    """Shrink a failure of ``n >= 1000`` under a call budget: (calls after the first
    failure, the value reported)."""
    from hypothesis import strategies as st

    from properties.outcome import Failure

    tally = Tally()
    seen: list[int] = []

    class _Sc:
        prop = "p"

    def one(data: st.DataObject) -> None:
        n = data.draw(st.integers(0, 10**6))
        seen.append(n)
        if n >= 1000:
            raise Failure("invariant violated", _Sc(), None, [str(n)], [])

    with pytest.raises(Failure) as caught:
        hypothesis_test(one, "shrink-budget", {profiles.active: 200}, tally, shrink=budget)()
    assert tally.first_failure is not None
    return tally.calls - tally.first_failure, int(caught.value.lines[0])


def test_shrinking_stops_after_its_calls_and_repeats() -> None:
    """The budget counts scenarios, not seconds: the same budget reports the same
    counterexample every time; a larger one shrinks further."""
    from hypothesis import settings

    was = settings.get_current_profile_name()
    settings.register_profile("shrink-test", derandomize=True, database=None)
    settings.load_profile("shrink-test")
    try:
        calls, small = _shrink_run(3)
        assert calls <= 3 + 1  # the budget, and Hypothesis's final replay of the result
        assert _shrink_run(3) == (calls, small)
        _, smaller = _shrink_run(200)
        assert smaller == 1000 and small > smaller
    finally:
        settings.load_profile(was)


def test_a_database_chord_is_attacked_at_its_poll_after_the_publish() -> None:
    """The chord_unlock poll that published the body, killed (the child, or the main
    process): the shape the full matrix's search missed on RabbitMQ."""
    from model.canvas_config import CanvasConfig
    from properties.canvas import shapes

    db = {name: attack.head for name, _, attack in shapes(CanvasConfig("amqp", join="db"))}
    poll = ["submit", *["step t1"] * 4, "step t8"]
    assert db["kill-main t8 at 'published'"] == [*poll, "kill-main t8", "expire"]
    assert db["kill t8 at 'published'"] == [*poll, "kill t8", "expire"]
    zset = {name for name, _, _ in shapes(CanvasConfig("redis"))}
    assert not any("t8" in name for name in zset)  # no poll without the database backend
