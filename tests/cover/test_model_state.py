"""The module-state model (model/state.py, model/state_properties.py): unit tests, and
Hypothesis tests that check it against a tiny independent simulation (a dict of
process -> value)."""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from model.config import POOLS, Pool, StateConfig
from model.history import (
    ChildReplaced,
    Killed,
    Read,
    ReadForUpdate,
    Write,
    WriteBack,
)
from model.invariants import Violation
from model.processes import APP
from model.state import HistoryError, ReadVerdict, allowed_reads, child_after, mismatches
from model.state_properties import (
    PROPERTIES,
    eager_verdict,
    eager_why,
    expected_verdict,
    lost_updates,
    read_your_writes,
    sender_sees_task_writes,
    why,
)

PREFORK2 = StateConfig("prefork", 2)
THREADS2 = StateConfig("threads", 2)


def expected(config: StateConfig, events: list[object]) -> list[tuple[int, set[int]]]:
    return [(v.index, set(v.expected)) for v in allowed_reads(config, events)]


# --- the independent simulation ----------------------------------------------------------------

Op = tuple[str, int]  # ("w", value) | ("r", 0) | ("inc", 0) two steps | ("incl", 0) one step


@dataclass
class Sim:
    """What really happens, written without the model: one dict of process -> value. A
    slot is a pool child (prefork) or a thread/greenlet of the main process."""

    cfg: StateConfig
    events: list[object] = field(default_factory=list)
    mem: dict[str, int] = field(default_factory=dict)
    slots: list[str] = field(default_factory=list)
    running: dict[int, tuple[str, list[Op]]] = field(default_factory=dict)
    halfway: dict[int, int] = field(default_factory=dict)  # slot -> value read for update
    completed: dict[str, int] = field(default_factory=dict)
    main: str = "w1"
    started: int = 0
    app_ops: int = 0

    def __post_init__(self) -> None:
        c = self.cfg
        self.mem[APP] = 0
        if c.pool == "prefork":
            self.mem[self.main] = c.parent_value
            self.slots = [f"w1.c{i + 1}" for i in range(c.concurrency)]
            for child in self.slots:
                self.mem[child] = c.parent_value if c.init_value is None else c.init_value
        else:
            self._new_main()

    def _new_main(self) -> None:
        c = self.cfg
        solo_init = c.pool == "solo" and c.init_value is not None
        self.mem[self.main] = (
            c.init_value if solo_init and c.init_value is not None else (c.parent_value)
        )
        self.slots = [self.main] * c.concurrency

    def free_slots(self) -> list[int]:
        return [s for s in range(len(self.slots)) if s not in self.running]

    def start(self, slot: int, ops: list[Op]) -> str:
        assert slot not in self.running and ops
        self.started += 1
        task = f"t{self.started}"
        self.running[slot] = (task, list(ops))
        return task

    def step(self, slot: int) -> None:
        task, ops = self.running[slot]
        proc = self.slots[slot]
        kind, value = ops[0]
        if kind == "w":
            self.mem[proc] = value
            self.events.append(Write(task, proc, value))
        elif kind == "r":
            self.events.append(Read(task, proc, self.mem[proc]))
        elif kind == "inc" and slot not in self.halfway:
            self.halfway[slot] = self.mem[proc]
            self.events.append(ReadForUpdate(task, proc, self.mem[proc]))
            return  # the write-back is the next step
        elif kind == "inc":
            self.mem[proc] = self.halfway.pop(slot) + 1
            self.events.append(WriteBack(task, proc, self.mem[proc]))
        else:  # incl: under a lock, nothing can come between the two halves
            self.events.append(ReadForUpdate(task, proc, self.mem[proc]))
            self.mem[proc] += 1
            self.events.append(WriteBack(task, proc, self.mem[proc]))
        ops.pop(0)
        if not ops:
            del self.running[slot]
            self.completed[proc] = self.completed.get(proc, 0) + 1
            n = self.cfg.max_tasks_per_child
            if self.cfg.pool == "prefork" and n is not None and self.completed[proc] == n:
                self._replace(slot)

    def run(self, slot: int, ops: list[Op]) -> str:
        task = self.start(slot, ops)
        while slot in self.running:
            self.step(slot)
        return task

    def _replace(self, slot: int) -> None:
        old = self.slots[slot]
        new = old + "'"
        self.events.append(ChildReplaced(old, new))
        del self.mem[old]
        # A fresh fork of the main process, then worker_process_init.
        init = self.cfg.init_value
        self.mem[new] = self.mem[self.main] if init is None else init
        self.slots[slot] = new

    def kill(self, slot: int) -> None:
        self.running.pop(slot, None)
        self.halfway.pop(slot, None)
        if self.cfg.pool == "prefork":
            self.events.append(Killed(self.slots[slot]))
            self._replace(slot)
            return
        self.events.append(Killed(self.main))  # the whole worker; it is restarted
        self.running.clear()
        self.halfway.clear()
        del self.mem[self.main]
        self.main += "'"
        self._new_main()

    def app_write(self, value: int) -> None:
        self.app_ops += 1
        self.mem[APP] = value
        self.events.append(Write(f"s{self.app_ops}", APP, value))

    def app_read(self) -> None:
        self.app_ops += 1
        self.events.append(Read(f"s{self.app_ops}", APP, self.mem[APP]))

    def control(self, value: int | None) -> None:
        """Something in the prefork main process (a signal handler, a remote-control
        command) reads or writes its copy."""
        if value is None:
            self.events.append(Read("ctl", self.main, self.mem[self.main]))
        else:
            self.mem[self.main] = value
            self.events.append(Write("ctl", self.main, value))

    def truth(self) -> list[int]:
        """The value every read in the history returned, i.e. what the model must allow."""
        return [e.observed for e in self.events if isinstance(e, Read | ReadForUpdate)]


@st.composite
def configs(draw: st.DrawFn, pools: tuple[Pool, ...] = POOLS) -> StateConfig:
    pool = draw(st.sampled_from(pools))
    return StateConfig(
        pool,
        1 if pool == "solo" else draw(st.integers(1, 4)),
        draw(st.none() | st.integers(1, 3)),
        draw(st.none() | st.integers(-5, 20)),
        draw(st.sampled_from([0, 0, 3, 42])),
    )


def programs(kinds: tuple[str, ...]) -> st.SearchStrategy[list[Op]]:
    return st.lists(st.tuples(st.sampled_from(kinds), st.integers(1, 9)), min_size=1, max_size=3)


@st.composite
def simulations(
    draw: st.DrawFn,
    config: StateConfig,
    kinds: tuple[str, ...] = ("w", "r", "inc"),
    kills: bool = True,
    app: bool = True,
) -> Sim:
    sim = Sim(config)
    for _ in range(draw(st.integers(0, 30))):
        moves = []
        if sim.free_slots():
            moves.append("start")
        if sim.running:
            moves += ["step", "step"]
        if kills:
            moves.append("kill")
        if app:
            moves += ["app-read", "app-write"]
        if config.pool == "prefork" and app:
            moves.append("control")
        move = draw(st.sampled_from(moves))
        if move == "start":
            sim.start(draw(st.sampled_from(sim.free_slots())), draw(programs(kinds)))
        elif move == "step":
            sim.step(draw(st.sampled_from(sorted(sim.running))))
        elif move == "kill":
            sim.kill(draw(st.integers(0, len(sim.slots) - 1)))
        elif move == "app-read":
            sim.app_read()
        elif move == "app-write":
            sim.app_write(draw(st.integers(1, 9)))
        else:
            sim.control(draw(st.none() | st.integers(1, 9)))
    return sim


@st.composite
def config_and_sim(draw: st.DrawFn) -> tuple[StateConfig, Sim]:
    config = draw(configs())
    return config, draw(simulations(config, kinds=("w", "r", "inc", "incl")))


# --- the model against the simulation --------------------------------------------------------


@settings(max_examples=300)
@given(config_and_sim())
def test_model_allows_exactly_what_the_simulation_reads(run: tuple[StateConfig, Sim]) -> None:
    config, sim = run
    verdicts = allowed_reads(config, sim.events)
    assert [v.expected for v in verdicts] == [frozenset({t}) for t in sim.truth()]
    assert all(v.ok for v in verdicts)
    assert mismatches(config, sim.events) == []


@settings(max_examples=200)
@given(config_and_sim(), st.data())
def test_a_wrong_read_is_flagged_there_and_nowhere_else(
    run: tuple[StateConfig, Sim], data: st.DataObject
) -> None:
    config, sim = run
    reads = [i for i, e in enumerate(sim.events) if isinstance(e, Read | ReadForUpdate)]
    if not reads:
        return
    k = data.draw(st.sampled_from(reads))
    ev = sim.events[k]
    assert isinstance(ev, Read | ReadForUpdate)
    wrong = ev.observed + data.draw(st.sampled_from([-1, 1, 100]))
    events = [*sim.events[:k], type(ev)(ev.task, ev.process, wrong), *sim.events[k + 1 :]]
    [bad] = mismatches(config, events)
    assert (bad.index, bad.task, bad.process, bad.observed) == (k, ev.task, ev.process, wrong)
    assert bad.expected == frozenset({ev.observed})
    assert "MISMATCH" in bad.describe()


@settings(max_examples=300)
@given(st.data())
def test_holds_predictions_are_never_broken(data: st.DataObject) -> None:
    prop = data.draw(st.sampled_from(sorted(PROPERTIES)))
    config = data.draw(configs())
    kills = data.draw(st.booleans())
    kinds = {
        "read-your-writes-across-tasks": ("w", "r"),
        "sender-sees-task-writes": ("w", "r"),
        "no-lost-update-unsynchronized": ("inc", "r", "w"),
        "no-lost-update-locked": ("incl", "r"),
    }[prop]
    app = prop == "sender-sees-task-writes"
    sim = data.draw(simulations(config, kinds=kinds, kills=kills, app=app))
    if expected_verdict(config, prop, kills=kills) == "holds":
        assert PROPERTIES[prop].check(sim.events) == []


@settings(max_examples=200)
@given(st.data())
def test_lost_updates_count_is_the_shortfall_of_the_final_value(data: st.DataObject) -> None:
    config = data.draw(configs(pools=("threads", "gevent")))
    sim = data.draw(simulations(config, kinds=("inc",), kills=False, app=False))
    done = sum(isinstance(e, WriteBack) for e in sim.events)
    shortfall = done - (sim.mem["w1"] - config.parent_value)
    found = lost_updates(sim.events)
    assert len(found) == shortfall
    assert all(v.invariant == "lost_updates" for v in found)
    if config.concurrency == 1:
        assert found == []


# --- violated predictions are reachable --------------------------------------------------------

ODD = 1000  # a value no config starts with


def demonstrate(config: StateConfig, prop: str, kills: bool) -> Sim:
    """A scenario, on the simulation, that breaks ``prop`` wherever the model says it is
    violated."""
    sim = Sim(config)
    last = len(sim.slots) - 1
    if prop == "read-your-writes-across-tasks":
        sim.run(0, [("w", ODD)])
        if kills:
            sim.kill(0)
        for _ in range(config.max_tasks_per_child or 0):
            sim.run(0, [("r", 0)])  # fillers until the child is recycled
        sim.run(last, [("r", 0)])
    elif prop == "sender-sees-task-writes":
        sim.run(0, [("w", ODD)])
        sim.app_read()
    else:
        kind = "inc" if prop == "no-lost-update-unsynchronized" else "incl"
        sim.start(0, [(kind, 0)])
        if last:
            sim.start(last, [(kind, 0)])
        for slot in (0, last, 0, last):
            if slot in sim.running:
                sim.step(slot)
    return sim


def all_configs() -> list[StateConfig]:
    out = []
    for pool, n, mtpc, init in itertools.product(POOLS, (1, 2, 4), (None, 1, 2), (None, 7)):
        if pool != "solo" or n == 1:
            out.append(StateConfig(pool, n, mtpc, init))
    return out


@pytest.mark.parametrize("prop", sorted(PROPERTIES))
def test_every_violated_prediction_has_a_demonstration(prop: str) -> None:
    seen = {"holds": 0, "violated": 0}
    for config, kills in itertools.product(all_configs(), (False, True)):
        prediction = expected_verdict(config, prop, kills=kills)
        seen[prediction] += 1
        sim = demonstrate(config, prop, kills)
        assert mismatches(config, sim.events) == []  # the model agrees with the scenario
        found = PROPERTIES[prop].check(sim.events)
        assert bool(found) == (prediction == "violated"), (config, kills, found)
    assert seen["violated"] or prop == "no-lost-update-locked"


# --- the rules, one by one ---------------------------------------------------------------------


def test_prefork_children_do_not_see_each_other() -> None:
    events: list[object] = [
        Write("t1", "w1.c1", 5),
        Read("t1", "w1.c1", 5),
        Read("t2", "w1.c2", 0),
        Read("ctl", "w1", 0),
        Read("s1", APP, 0),
    ]
    assert expected(PREFORK2, events) == [(1, {5}), (2, {0}), (3, {0}), (4, {0})]
    v = allowed_reads(PREFORK2, events)[1]
    assert "own copy" in v.why and "t1 wrote 5 in w1.c1 at #0" in v.why and "§6" in v.why
    assert "forked at pool start" in v.why


def test_a_read_outside_the_allowed_set_is_a_mismatch() -> None:
    events: list[object] = [Write("t1", "w1.c1", 5), Read("t2", "w1.c2", 5)]
    [bad] = mismatches(PREFORK2, events)
    assert (bad.index, bad.task, bad.process, bad.observed) == (1, "t2", "w1.c2", 5)
    assert bad.expected == frozenset({0}) and not bad.ok
    assert bad.describe().startswith("#1 t2 in w1.c2: read 5, expected 0 (MISMATCH)")


def test_the_app_never_sees_task_writes_only_its_own() -> None:
    for config in (PREFORK2, THREADS2, StateConfig("solo", 1), StateConfig("gevent", 3)):
        proc = "w1.c1" if config.pool == "prefork" else "w1"
        events: list[object] = [
            Write("t1", proc, 5),
            Read("s1", APP, 0),
            Write("s2", APP, 9),
            Read("t2", proc, 5),
            Read("s3", APP, 9),
        ]
        assert expected(config, events) == [(1, {0}), (3, {5}), (4, {9})]
        assert "tasks never change it" in allowed_reads(config, events)[0].why


def test_threads_gevent_and_solo_share_one_copy() -> None:
    for config in (THREADS2, StateConfig("gevent", 4), StateConfig("solo", 1)):
        events: list[object] = [
            Read("t1", "w1", 0),
            Write("t1", "w1", 3),
            Read("t2", "w1", 3),
            Write("t2", "w1", 4),
            Read("t1", "w1", 4),
        ]
        assert mismatches(config, events) == []


def test_init_value_in_children_and_solo_but_not_threads_or_the_prefork_main() -> None:
    events: list[object] = [Read("t1", "w1.c1", 7), Read("ctl", "w1", 2)]
    assert mismatches(StateConfig("prefork", 2, init_value=7, parent_value=2), events) == []
    assert expected(StateConfig("solo", 1, init_value=7), [Read("t1", "w1", 7)]) == [(0, {7})]
    for pool in ("threads", "gevent"):
        config = StateConfig(pool, 2, init_value=7, parent_value=2)
        assert expected(config, [Read("t1", "w1", 2)]) == [(0, {2})]
    why_ = allowed_reads(StateConfig("prefork", 1, init_value=7), events[:1])[0].why
    assert "worker_process_init set it to 7" in why_


def test_a_replacement_child_starts_fresh() -> None:
    config = StateConfig("prefork", 1, max_tasks_per_child=1, init_value=None, parent_value=4)
    events: list[object] = [
        Read("t1", "w1.c1", 4),
        Write("t1", "w1.c1", 9),
        ChildReplaced("w1.c1", "w1.c1'"),
        Read("t2", "w1.c1'", 4),
    ]
    assert expected(config, events) == [(0, {4}), (3, {4})]
    assert "replaced w1.c1 at #2" in allowed_reads(config, events)[1].why
    assert "forked fresh" in allowed_reads(config, events)[1].why


def test_a_replacement_is_forked_from_the_parents_current_copy_then_initialised() -> None:
    events: list[object] = [
        Write("ctl", "w1", 6),
        Read("t1", "w1.c1", 0),  # forked at pool start, before the write
        Killed("w1.c1"),
        ChildReplaced("w1.c1", "w1.c1'"),
        Read("t2", "w1.c1'", 6),
    ]
    assert mismatches(StateConfig("prefork", 1), events) == []
    # worker_process_init runs after the fork, in the original children and replacements
    initialised = [events[0], Read("t1", "w1.c1", 8), *events[2:4], Read("t2", "w1.c1'", 8)]
    assert mismatches(StateConfig("prefork", 1, init_value=8), initialised) == []


def test_killing_the_main_process_kills_its_children_and_a_restart_is_fresh() -> None:
    events: list[object] = [Write("t1", "w1.c1", 5), Killed("w1"), Read("t2", "w1.c1", 5)]
    with pytest.raises(HistoryError, match=r"#2: w1.c1 was ended at #1"):
        allowed_reads(PREFORK2, events)
    restarted: list[object] = [
        Write("t1", "w1", 5),
        Killed("w1"),
        Read("t2", "w1'", 0),
    ]
    assert mismatches(THREADS2, restarted) == []
    solo = [Write("t1", "w1", 5), Killed("w1"), Read("t2", "w1'", 3)]
    assert mismatches(StateConfig("solo", 1, init_value=3), solo) == []


def test_a_child_replaced_after_its_main_died_forks_from_a_fresh_main() -> None:
    events: list[object] = [
        Write("ctl", "w1", 6),
        Killed("w1"),
        ChildReplaced("w1.c1", "w1.c1'"),
        Read("t1", "w1.c1'", 2),
    ]
    assert mismatches(StateConfig("prefork", 1, parent_value=2), events) == []


def test_other_events_are_skipped() -> None:
    events: list[object] = [object(), "noise", Write("t1", "w1", 1), Read("t2", "w1", 1)]
    assert mismatches(THREADS2, events) == []


@pytest.mark.parametrize(
    ("config", "events", "message"),
    [
        (THREADS2, [Read("t1", "w1.c1", 0)], "the threads pool has none"),
        (THREADS2, [ChildReplaced("w1.c1", "w1.c1'")], "ChildReplaced on the threads pool"),
        (PREFORK2, [Read("t1", "w1.c1'", 0)], "no ChildReplaced introduced"),
        (PREFORK2, [Read("t1", "w1.c3", 0)], "a pool of 2 forks children c1..c2"),
        (PREFORK2, [Read("t1", "worker", 0)], "unknown process name 'worker'"),
        (PREFORK2, [Killed("w1.c1"), Write("t1", "w1.c1", 1)], "w1.c1 was ended at #0"),
        (PREFORK2, [ChildReplaced("w1.c1", "w1.c2")], "w1.c1's replacement is named w1.c1'"),
        (PREFORK2, [ChildReplaced("w1.c1'", "w1.c1")], "replacement is named"),
        (
            PREFORK2,
            [ChildReplaced("w1.c1", "w1.c1'"), ChildReplaced("w1.c1", "w1.c1'")],
            "w1.c1' is already in use",
        ),
        (PREFORK2, [ChildReplaced("w1.c1", "w2.c1'")], "another worker"),
        (
            PREFORK2,
            [ChildReplaced("w1.c1", "w1.c1'"), Read("t1", "w1.c1", 0)],
            "#1: w1.c1 was ended at #0",
        ),
        (PREFORK2, [ChildReplaced("w1", "w1.c1'")], "not a pool child"),
        (THREADS2, [Read("t1", "w1", 0), Read("t2", "w1'", 0)], "while w1, the same worker"),
        (
            StateConfig("prefork", 1, max_tasks_per_child=2),
            [Read("t1", "w1.c1", 0), Write("t2", "w1.c1", 1), Read("t3", "w1.c1", 1)],
            "t3 runs in w1.c1 after t1, t2: with max_tasks_per_child=2",
        ),
    ],
)
def test_impossible_histories_are_harness_errors(
    config: StateConfig, events: list[object], message: str
) -> None:
    with pytest.raises(HistoryError, match=message):
        allowed_reads(config, events)


def test_the_task_budget_counts_tasks_not_events() -> None:
    config = StateConfig("prefork", 1, max_tasks_per_child=1)
    one_task: list[object] = [
        Read("t1", "w1.c1", 0),
        Write("t1", "w1.c1", 1),
        Read("t1", "w1.c1", 1),
    ]
    assert mismatches(config, one_task) == []
    recycled = [*one_task, ChildReplaced("w1.c1", "w1.c1'"), Read("t2", "w1.c1'", 0)]
    assert mismatches(config, recycled) == []
    # The budget is prefork's: threads ignore max_tasks_per_child.
    threads = StateConfig("threads", 1, max_tasks_per_child=1)
    assert mismatches(threads, [Read(f"t{i}", "w1", 0) for i in range(5)]) == []


def test_child_after() -> None:
    mtpc2 = StateConfig("prefork", 2, max_tasks_per_child=2)
    assert [child_after(mtpc2, n) for n in range(4)] == [False, False, True, True]
    assert not any(child_after(PREFORK2, n) for n in range(10))
    assert not child_after(StateConfig("threads", 2, max_tasks_per_child=1), 5)
    assert StateConfig("prefork", 1, max_tasks_per_child=1).recycles
    assert not StateConfig("solo", 1, max_tasks_per_child=1).recycles
    with pytest.raises(ValueError, match="negative"):
        child_after(mtpc2, -1)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"pool": "eventlet", "concurrency": 1}, "unknown pool"),
        ({"pool": "threads", "concurrency": 0}, "out of range"),
        ({"pool": "threads", "concurrency": 5}, "out of range"),
        ({"pool": "solo", "concurrency": 2}, "concurrency must be 1"),
        ({"pool": "prefork", "concurrency": 1, "max_tasks_per_child": 0}, "positive int"),
    ],
)
def test_config_validation(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        StateConfig(**kwargs)  # type: ignore[arg-type]


def test_config_label() -> None:
    assert PREFORK2.label() == "prefork/c2"
    full = StateConfig("prefork", 1, max_tasks_per_child=3, init_value=7, parent_value=2)
    assert full.label() == "prefork/c1/mtpc3/init7/parent2"


def test_describe() -> None:
    assert Write("t1", "w1", 3).describe() == "Write(task='t1', process='w1', value=3)"
    v = ReadVerdict(4, "t2", "w1.c2", frozenset({0, 1}), 1, "because")
    assert v.ok and v.describe() == "#4 t2 in w1.c2: read 1, expected 0 or 1 (ok) — because"
    assert Violation("lost_updates", 3, ("t1", "t2"), "lost").describe() == "#3 lost_updates: lost"


# --- the invariant checkers -------------------------------------------------------------------


def inc(task: str, proc: str, read: int) -> tuple[ReadForUpdate, WriteBack]:
    return ReadForUpdate(task, proc, read), WriteBack(task, proc, read + 1)


def test_lost_update_classic() -> None:
    (r1, w1), (r2, w2) = inc("t1", "w1", 0), inc("t2", "w1", 0)
    [v] = lost_updates([r1, r2, w1, w2])
    assert (v.invariant, v.index, v.executions) == ("lost_updates", 3, ("t1", "t2"))
    assert "t1's increment (0 -> 1 at #2) was overwritten at #3 by t2" in v.message
    assert "less than the number of completed increments" in v.message


def test_serial_and_locked_increments_lose_nothing() -> None:
    events = [*inc("t1", "w1", 0), *inc("t2", "w1", 1), *inc("t1", "w1", 2)]
    assert lost_updates(events) == []


def test_increments_in_different_processes_are_never_compared() -> None:
    (r1, w1), (r2, w2) = inc("t1", "w1.c1", 0), inc("t2", "w1.c2", 0)
    assert lost_updates([r1, r2, w1, w2]) == []


def test_three_way_race_loses_two() -> None:
    a, b, c = inc("t1", "w1", 0), inc("t2", "w1", 0), inc("t3", "w1", 0)
    found = lost_updates([a[0], b[0], c[0], a[1], b[1], c[1]])
    assert [(v.index, v.executions) for v in found] == [(4, ("t1", "t2")), (5, ("t2", "t3"))]


def test_an_overwritten_increment_can_come_back() -> None:
    # k reads 0; i increments 0 -> 1; w reads 1 (includes i); k writes 1 (drops i);
    # w writes 2 (i is back, k is gone). Final 2 of 3 increments: exactly one lost, k.
    k, i, w = inc("k", "w1", 0), inc("i", "w1", 0), inc("w", "w1", 1)
    [v] = lost_updates([k[0], i[0], i[1], w[0], k[1], w[1]])
    assert (v.index, v.executions) == (5, ("k", "w"))


def test_a_plain_write_supersedes_rather_than_loses() -> None:
    (r1, w1), (r2, w2) = inc("t1", "w1", 0), inc("t2", "w1", 5)
    assert lost_updates([r1, w1, Write("t3", "w1", 5), r2, w2]) == []
    # a write-back with no read-for-update before it is a plain write
    assert lost_updates([r1, w1, WriteBack("t9", "w1", 0)]) == []


def test_an_increment_killed_halfway_never_completed() -> None:
    r1, (r2, w2) = inc("t1", "w1.c1", 0)[0], inc("t2", "w1.c1'", 0)
    events = [r1, Killed("w1.c1"), ChildReplaced("w1.c1", "w1.c1'"), r2, w2]
    assert lost_updates(events) == []
    (a, _), (b, bw) = inc("t1", "w1.c1", 0), inc("t2", "w1.c1", 0)
    # The main's death takes the child's pending increment with it: a write-back under
    # the same names afterwards is no longer its second half.
    assert lost_updates([a, Killed("w1"), b, bw, WriteBack("t1", "w1.c1", 1)]) == []
    assert len(lost_updates([a, b, bw, WriteBack("t1", "w1.c1", 1)])) == 1
    # A kill elsewhere does not.
    (x, xw), (y, yw) = inc("t1", "w1", 0), inc("t2", "w1", 0)
    assert len(lost_updates([x, y, Killed("w1.c1"), Killed(APP), xw, yw])) == 1


def test_read_your_writes_checker() -> None:
    ok: list[object] = [Write("t1", "w1", 5), Read("t2", "w1", 5), Read(APP, APP, 0)]
    assert read_your_writes(ok) == []
    [v] = read_your_writes([Write("t1", "w1.c1", 5), Read("t2", "w1.c2", 0)])
    assert (v.invariant, v.index, v.executions) == ("read_your_writes", 1, ("t1", "t2"))
    assert v.message == "t2 (w1.c2) read 0 at #1, but t1 (w1.c1) wrote 5 at #0"
    assert read_your_writes([Read("t1", "w1.c1", 3)]) == []  # nothing written yet


def test_sender_sees_task_writes_checker() -> None:
    [v] = sender_sees_task_writes([Write("t1", "w1", 5), Read("s1", APP, 0)])
    assert (v.invariant, v.index, v.executions) == ("sender_sees_task_writes", 1, ("t1", "s1"))
    own: list[object] = [Write("t1", "w1", 5), Write("s1", APP, 2), Read("s2", APP, 2)]
    assert sender_sees_task_writes(own) == []
    assert sender_sees_task_writes([Write("t1", "w1", 5), Read("t2", "w1", 0)]) == []


# --- predictions -------------------------------------------------------------------------------

RYW = "read-your-writes-across-tasks"


@pytest.mark.parametrize(
    ("config", "kills", "prediction"),
    [
        (StateConfig("prefork", 2), False, "violated"),
        (StateConfig("prefork", 4), False, "violated"),
        (StateConfig("prefork", 1), False, "holds"),
        (StateConfig("prefork", 1, init_value=3), False, "holds"),
        (StateConfig("prefork", 1, max_tasks_per_child=5), False, "violated"),
        (StateConfig("prefork", 1), True, "violated"),
        (StateConfig("threads", 4), False, "holds"),
        (StateConfig("gevent", 2), False, "holds"),
        (StateConfig("solo", 1), False, "holds"),
        (StateConfig("threads", 2, max_tasks_per_child=1), False, "holds"),
        (StateConfig("threads", 2), True, "violated"),
        (StateConfig("solo", 1), True, "violated"),
    ],
)
def test_read_your_writes_predictions(config: StateConfig, kills: bool, prediction: str) -> None:
    assert expected_verdict(config, RYW, kills=kills) == prediction


def test_predictions_for_the_other_properties() -> None:
    for config in all_configs():
        assert expected_verdict(config, "sender-sees-task-writes") == "violated"
        assert expected_verdict(config, "no-lost-update-locked", kills=True) == "holds"
        racy = config.pool in ("threads", "gevent") and config.concurrency >= 2
        unsync = expected_verdict(config, "no-lost-update-unsynchronized")
        assert unsync == ("violated" if racy else "holds")


def test_why_is_a_sourced_paragraph() -> None:
    for config, prop, kills in itertools.product(all_configs(), PROPERTIES, (False, True)):
        text = why(config, prop, kills=kills)
        assert "§6" in text and len(text) > 120 and "\n" not in text
    assert "billiard" in why(StateConfig("prefork", 1, max_tasks_per_child=2), RYW)
    assert "process_initializer" in why(PREFORK2, RYW)
    assert "eager" in why(THREADS2, "sender-sees-task-writes")
    assert "per process" in why(PREFORK2, "no-lost-update-unsynchronized")


def test_eager_holds_everything() -> None:
    assert {eager_verdict(p) for p in PROPERTIES} == {"holds"}
    assert "caller's process" in eager_why(RYW)


def test_unknown_property() -> None:
    for f in (lambda: expected_verdict(PREFORK2, "nope"), lambda: eager_verdict("nope")):
        with pytest.raises(KeyError, match="unknown property 'nope'"):
            f()


# --- two workers on two queues ----------------------------------------------------------------


@pytest.mark.parametrize(("pool", "n", "main"), [("threads", 2, ""), ("solo", 1, ""),
                                                 ("prefork", 1, ".c1")])  # fmt: skip
def test_two_workers_on_two_queues_never_share_a_copy(pool: Pool, n: int, main: str) -> None:
    one, two = StateConfig(pool, n), StateConfig(pool, n, queues=2)
    events = [Write("t1", f"w1{main}", 1), Read("t2", f"w2{main}", 0)]
    (v,) = allowed_reads(two, events)
    assert v.ok and v.expected == {0} and "two workers (one per queue)" in v.why
    assert [r.index for r in read_your_writes(events)] == [1]
    assert expected_verdict(two, "read-your-writes-across-tasks") == "violated"
    assert "whatever the pool" in why(two, "read-your-writes-across-tasks")
    assert expected_verdict(one, "read-your-writes-across-tasks") == "holds"


def test_two_workers_share_a_shared_store() -> None:
    two = StateConfig("threads", 2, store="redis", queues=2)
    assert expected_verdict(two, "read-your-writes-across-tasks") == "holds"
    # Two workers run two tasks at once even on solo: the racy set can lose one.
    assert expected_verdict(StateConfig("solo", 1, store="db-postgres"),
                            "read-your-writes-across-tasks") == "holds"  # fmt: skip
    racy = StateConfig("solo", 1, store="db-postgres", queues=2)
    assert expected_verdict(racy, "read-your-writes-across-tasks") == "violated"


def test_two_queues_label_and_limits() -> None:
    from model.config import parse_state_label

    two = StateConfig("threads", 2, queues=2)
    assert two.label() == "threads/c2/q2" and parse_state_label("threads/c2/q2") == two
    assert two.as_dict()["queues"] == 2 and "queues" not in StateConfig("threads", 2).as_dict()
    with pytest.raises(ValueError, match="without kills"):
        StateConfig("prefork", 2, kills=True, queues=2)
    with pytest.raises(ValueError, match="one worker, or two"):
        StateConfig("prefork", 2, queues=3)
