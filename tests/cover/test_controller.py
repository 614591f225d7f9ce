"""The controller against the real task-side client, in threads: no workers needed.

Pins the quiescence protocol: a parked execution moves only when released, and then
exactly to its next point; unknown tasks are told they are stale; a closed connection
is a dead execution; a wait that cannot finish is a clear timeout, never a pass.
"""

from __future__ import annotations

import json
import os
import socket
import threading
from collections.abc import Iterator

import pytest

from harness.accounting import Message
from harness.controller import Controller
from harness.errors import HarnessTimeout
from model import history as h
from tasks import points


@pytest.fixture
def ctl(monkeypatch: pytest.MonkeyPatch) -> Iterator[Controller]:
    c = Controller()
    monkeypatch.setenv("SUITE_CONTROL", "{}:{}".format(*c.address))
    # A process-wide hello, as a worker's agent connection would send.
    agent = socket.create_connection(c.address)
    hello = {"t": "hello", "role": "main", "pid": os.getpid(), "worker": "w@x", "index": None}
    agent.sendall(json.dumps(hello).encode() + b"\n")
    c.aliases["w@x"] = "w1"
    c.begin_example()
    yield c
    agent.close()
    c.close()


def _task(name: str, steps: list[str], log: list[str]) -> threading.Thread:
    def body() -> None:
        try:
            with points.execution(name, name):
                for s in steps:
                    points.point(s)
                    log.append(f"{name} past {s}")
        except points.StaleExecution:
            log.append(f"{name} stale")

    t = threading.Thread(target=body, daemon=True)
    t.start()
    return t


def test_release_moves_exactly_one_point(ctl: Controller) -> None:
    log: list[str] = []
    ctl.accept("t1")
    t = _task("t1", ["a", "b"], log)
    ctl.wait(lambda: ctl.started("t1") is not None, "t1 to start", timeout=5)
    assert ctl.executions["t1"].process == "w1" and log == []
    ctl.release("t1", timeout=5)
    assert ctl.executions["t1"].point == "a" and log == []
    ctl.release("t1", timeout=5)
    assert ctl.executions["t1"].point == "b" and log == ["t1 past a"]
    ctl.release("t1", timeout=5)
    t.join(5)
    assert ctl.executions["t1"].state == "done" and log == ["t1 past a", "t1 past b"]
    kinds = [type(e).__name__ for e in ctl.history]
    assert kinds == ["Started", "Point", "Point", "Finished"]


def test_two_executions_are_serialised(ctl: Controller) -> None:
    log: list[str] = []
    for x in ("t1", "t2"):
        ctl.accept(x)
        _task(x, ["a"], log)
    ctl.wait(lambda: len(ctl.live()) == 2, "both to start", timeout=5)
    ctl.release("t2", timeout=5)
    ctl.release("t2", timeout=5)
    ctl.release("t1", timeout=5)
    ctl.release("t1", timeout=5)
    assert log == ["t2 past a", "t1 past a"]


def test_unknown_task_is_stale(ctl: Controller) -> None:
    log: list[str] = []
    t = _task("t9", ["a"], log)
    ctl.wait(lambda: not t.is_alive(), "t9 to be turned away", timeout=5)
    assert log == ["t9 stale"] and "t9" not in ctl.executions


def test_closed_connection_is_a_dead_execution(ctl: Controller) -> None:
    ctl.accept("t1")
    sock = socket.create_connection(ctl.address)
    start = {"t": "start", "x": "t1", "task": "t1", "pid": os.getpid()}
    sock.sendall(json.dumps(start).encode() + b"\n")
    ctl.wait(lambda: ctl.started("t1") is not None, "t1 to start", timeout=5)
    sock.close()
    ctl.wait(lambda: ctl.executions["t1"].state == "dead", "t1 to die", timeout=5)
    assert not ctl.live()


def test_records_become_history_events(ctl: Controller) -> None:
    ctl.accept("t1")
    sock = socket.create_connection(ctl.address)
    msgs = [
        {"t": "start", "x": "t1", "task": "t1", "pid": os.getpid()},
        {"t": "rec", "x": "t1", "k": "acq", "key": "k"},
        {"t": "rec", "x": "t1", "k": "acq_end", "key": "k", "acquired": True},
        {"t": "rec", "x": "t1", "k": "invoice", "order": "o1"},
        {"t": "end", "x": "t1", "status": "ok", "error": None},
    ]
    sock.sendall(b"".join(json.dumps(m).encode() + b"\n" for m in msgs))
    ctl.wait(lambda: "t1" in ctl.executions and ctl.executions["t1"].state == "done", "t1", 5)
    assert ctl.history.events[1:] == [
        h.AcquireBegin("t1", "k"),
        h.AcquireEnd("t1", "k", True),
        h.InvoiceCreated("t1", "o1"),
        h.Finished("t1", "ok", None),
    ]
    assert ctl.executions["t1"].acquired
    sock.close()


def test_a_wait_that_cannot_finish_times_out_clearly(ctl: Controller) -> None:
    with pytest.raises(HarnessTimeout, match="waiting for nothing to happen"):
        ctl.wait(lambda: False, "nothing to happen", timeout=0.3)


def test_deferred_reports_are_flushed_in_task_order(ctl: Controller) -> None:
    """Receipts, starts and broker reports from several processes race; the history
    takes them at quiescent points, receipts before starts, each group by task."""
    ctl.defer_starts = True
    for task in ("t1", "t2"):
        ctl.accept(task, f"id-{task}")
    reporter = socket.create_connection(ctl.address)

    def report(msg: dict[str, object]) -> None:
        reporter.sendall(json.dumps(msg).encode() + b"\n")

    # t2's reports arrive first, as a race may have it.
    report({"t": "recv", "id": "id-t2", "worker": "w@x", "redelivered": False, "tag": "a"})
    report({"t": "state", "id": "id-t2", "state": "STARTED"})
    report(
        {"t": "recv", "id": "id-t1", "worker": "w@x", "redelivered": True, "level": 1, "tag": "b"}
    )
    report({"t": "ack", "id": "id-t1", "worker": "w@x", "tag": "b"})
    ctl.wait(lambda: len(ctl.messages["id-t1"].settled_by) == 1, "the reports", timeout=5)
    log: list[str] = []
    threads = [_task(t, [], log) for t in ("t2", "t1")]
    ctl.wait(lambda: len(ctl.executions) == 2, "both starts", timeout=5)
    assert ctl.history.events == []  # nothing lands between quiescent points
    ctl.flush()
    kinds = [(type(e).__name__, getattr(e, "task", "")) for e in ctl.history.events]
    assert kinds == [
        ("Received", "t1"), ("Received", "t2"), ("Started", "t1"), ("Started", "t2"),
        ("Acked", "t1"), ("StateWritten", "t2"),
    ]  # fmt: skip
    received = [e for e in ctl.history.events if isinstance(e, h.Received)]
    assert received[0] == h.Received("t1", "w1", True, 1)
    for x in ("t1", "t2"):
        ctl.release(x, timeout=5)
    for t in threads:
        t.join(5)
    reporter.close()


def test_a_tag_is_held_by_the_last_qos_call_in_the_workers_order() -> None:
    """A restored Redis copy keeps its tag. The ack of the first delivery and the
    receipt of the copy travel on two connections; the worker's own order decides."""
    m = Message("t1")
    m.log += [("recv", "w@x", "1", 1), ("recv", "w@x", "1", 3), ("settle", "w@x", "1", 2)]
    assert m.held_by("w@x") == 1  # acked (2), then the copy taken again (3)
    m.log[1:] = [("recv", "w@x", "1", 2), ("settle", "w@x", "1", 3)]
    assert m.held_by("w@x") == 0
    # Without places (RabbitMQ), the arrival order is all there is.
    plain = Message("t1", log=[("recv", "w@x", "1", None), ("settle", "w@x", "1", None)])
    assert plain.held_by("w@x") == 0 and plain.held_by("other") == 0


def test_a_gate_holds_only_the_named_job_once(ctl: Controller) -> None:
    """``points.gate`` passes at once unless the example asked to hold that task there;
    a held job gets no answer, and its process's death marks the hold gone."""
    ctl.accept("t1", "id-t1")
    ctl.gates.add(("accept", "t1"))
    passed: list[str] = []

    def ask(task_id: str) -> None:
        try:
            points.gate("accept", task_id)
        except points.ControlError:
            passed.append(f"{task_id} cut off")  # what a held job sees if we close first
            return
        passed.append(task_id)

    for tid in ("id-other", "id-t1"):
        threading.Thread(target=ask, args=(tid,), daemon=True).start()
    ctl.wait(lambda: "t1" in ctl.held, "the hold", timeout=5)
    ctl.wait(lambda: passed == ["id-other"], "the other job to pass", timeout=5)
    gate = ctl.held["t1"]
    assert (gate.name, gate.pid, gate.alive) == ("accept", os.getpid(), True)
    assert ctl.gates == set()  # once: a put-back job passes the next time
    ctl.wire.socks[gate.conn].close()  # as if the holder died
    ctl._closed(gate.conn)
    assert not ctl.held["t1"].alive
    ctl.wait(lambda: len(passed) == 2, "the held thread to see the close", timeout=5)
    assert passed == ["id-other", "id-t1 cut off"]  # never let through


def test_only_a_lost_child_counts_as_a_handled_loss(ctl: Controller) -> None:
    """The runner waits for one handled loss per child it killed. A retry's handling
    (Retry goes through Request.on_failure too) reported late, after the kill, must
    not stand in for the kill's: the FAILURE it stores would be read too early."""
    ctl.accept("t1", "id-t1")
    reporter = socket.create_connection(ctl.address)
    for lost in (False, True, False):
        msg = {"t": "handled", "id": "id-t1", "worker": "w@x", "lost": lost}
        reporter.sendall(json.dumps(msg).encode() + b"\n")
    reporter.sendall(
        json.dumps({"t": "ack", "id": "id-t1", "worker": "w@x", "tag": "a"}).encode() + b"\n"
    )
    ctl.wait(lambda: ctl.messages["id-t1"].settled_by == ["w@x"], "the reports", timeout=5)
    assert ctl.messages["id-t1"].handled == 1
    reporter.close()


def test_worker_lost_tells_a_lost_child_from_a_retry_or_an_error() -> None:
    from billiard.einfo import ExceptionInfo, ExceptionWithTraceback
    from billiard.exceptions import WorkerLostError
    from celery.exceptions import Retry

    from tasks.patches.deliveries import worker_lost

    def info(exc: BaseException) -> ExceptionInfo:
        try:
            raise exc
        except BaseException:
            return ExceptionInfo()

    assert worker_lost(info(WorkerLostError("Worker exited prematurely: signal 9")))
    assert worker_lost(info(SystemExit(1)))  # billiard >= 4.3 reports the exit first
    # billiard hands on_failure the exception wrapped with its traceback: unwrapped.
    assert isinstance(info(WorkerLostError("lost")).exception, ExceptionWithTraceback)
    assert not worker_lost(info(Retry("again")))
    assert not worker_lost(info(ValueError("the task's own error")))


def test_a_child_is_settled_once_its_parent_took_it_in_and_its_result_back(
    ctl: Controller,
) -> None:
    """tasks/patches/child_order.py's reports: a start that waited for its process's
    hello counts once, and the child is free for the next task only once its parent
    said ``up`` and ``free``."""
    ctl.accept("t1")
    pid, cid = 4242, 99
    ctl._apply(cid, {"t": "start", "x": "t1", "task": "t1", "pid": pid})  # before the hello
    ctl._apply(cid, {"t": "hello", "role": "child", "pid": pid, "worker": "w@x", "index": 0})
    assert ctl.started("t1") is not None and ctl.started_on[pid] == 1
    child = ctl.procs[pid]
    assert ctl.unsettled([child]) == []  # busy: the harness waits for it anyway
    ctl._apply(cid, {"t": "end", "x": "t1", "status": "ok"})
    assert ctl.unsettled([child]) == [child]  # not taken in, no result back
    ctl._apply(0, {"t": "up", "pid": pid})
    assert ctl.unsettled([child]) == [child]  # its result not back yet
    ctl._apply(0, {"t": "free", "pid": pid})
    assert ctl.unsettled([child]) == []


def test_a_wait_names_what_it_awaited_as_it_was_at_the_timeout(ctl: Controller) -> None:
    seen = ["at the start"]

    def never() -> bool:
        seen[0] = "at the timeout"
        return False

    with pytest.raises(HarnessTimeout, match="waiting for at the timeout;"):
        ctl.wait(never, lambda: seen[0], timeout=0.2, poll=0.05)
