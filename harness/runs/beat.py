"""One beat scenario: real ``celery beat`` processes whose time the scenario drives.

Each example starts the config's beats afresh (``python -m celery -A tasks.beat beat
-S <scheduler> -s <file>``, tasks/beat.py), each with its own schedule file (or one
shared), a queue of its own on the run's Redis and redbeat keys of its own, at clock
slot 0; django-celery-beat's ``DatabaseScheduler`` reads its schedule from rows on the
run's PostgreSQL, which each example replaces (tasks/beat_db.py). A beat runs only
when a move lets it: it parks whenever it would sleep and before every send, and
tells this runner over its own control connection (a ``harness.wire.Wire`` of this
runner's: beats are not workers, the controller's executions are not theirs). Beats
start one by one, so the first redbeat takes the lock.

Moves (enabled ones in this order: progress first, then faults):

    send bN     let bN, parked before a send, send (and go on to its next park)
    tick bN     wake bN from its sleep: its loop's next tick, or a redbeat standby's next
                try of the lock (once per bN until something changes)
    resume bN   SIGCONT a paused beat
    restart bN  start bN again on its own schedule file (after a kill, or an exit)
    advance     the scenario clock moves one period: every entry is due once more
    expire      (redbeat) the lock's timeout passes now: ``PEXPIREAT <lock> 1``; only
                under a killed holder (faults=kill) or a paused one (faults=pause)
    kill bN     SIGKILL bN (faults=kill)
    pause bN    SIGSTOP bN (faults=pause)
    end         the scenario is over (offered with the faults once nothing else is
                left: the clock made ``tasks`` moves and every live beat slept since
                the last change)

Then the broker's queue is read: ``BeatQueued`` per entry; and, for ``django``, the
rows: ``BeatRow`` per entry.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import re
import signal
import sys
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness import procs
from harness.cluster import Cluster
from harness.errors import HarnessError, HarnessTimeout
from harness.runs.base import Chooser, Run, play
from harness.wire import Wire
from harness.workers import ROOT
from model import beat as mb
from model import history as h
from model.beat import BeatConfig
from tasks import beat_db

TIMEOUT = 30.0  # a beat's start or one move; never part of a scenario
MAX_FAULTS = 3  # kills, pauses and expiries in one example


@dataclass
class BeatProc:
    role: str  # b1
    name: str  # b1, b1' after a restart
    managed: procs.Managed
    conn: int | None = None
    state: str = "starting"  # starting | boot | tick | lock | send | running | dead
    paused: bool = False
    killed: bool = False
    woke: int = -1  # the epoch it was last woken in
    error: str = ""


class BeatRunner:
    """The config's beats, one example per ``run``."""

    max_moves = 80

    def __init__(self, cluster: Cluster, config: BeatConfig) -> None:
        self.cluster = cluster
        self.config = config
        self.wire = Wire()
        self.beats: dict[str, BeatProc] = {}
        self._by_conn: dict[int, BeatProc] = {}
        self._tokens: dict[str, BeatProc] = {}
        self._spawned = 0
        weakref.finalize(self, self.wire.close)

    # --- one example ---------------------------------------------------------------------

    def run(self, tasks: int, choose: Chooser) -> Run:
        cluster = self.cluster
        n = cluster.next_example()
        self.run_ = run = Run(self.config, tasks, cluster.controller.begin_example())
        self.slot, self.epoch, self.faults = 0, 0, 0
        self.ended = False
        self.holder: str | None = None  # redbeat: who recorded the lock last
        key = f"{cluster.run_id}beat{n}"
        self.queue = f"{key}:queue"
        self.prefix = f"{key}:redbeat:"
        self.lock_key = f"{self.prefix}:lock"
        self.dir = cluster.run_dir / f"beat{n}"
        self.dir.mkdir(parents=True, exist_ok=True)
        self.beats = {}
        if self.config.scheduler == "django":
            beat_db.migrate()
            beat_db.reset(mb.ENTRIES, mb.PERIOD, self.queue)
        try:
            starting = [self._spawn(f"b{i}", f"b{i}") for i in range(1, self.config.beats + 1)]
            for p in starting:  # one by one: the first redbeat takes the lock
                self._boot(p)
            play(run.moves, lambda: self.enabled(tasks), choose, self.apply, self.max_moves)
            self._read_queue()
            if self.config.scheduler == "django":
                self._read_rows()
        finally:
            self._cleanup()
        return run

    # --- moves ---------------------------------------------------------------------------

    def enabled(self, tasks: int) -> list[str]:
        beats = sorted(self.beats.values(), key=lambda p: p.role)
        calm = [f"send {p.role}" for p in beats if p.state == "send" and not p.paused]
        calm += [
            f"tick {p.role}" for p in beats
            if p.state in ("tick", "lock") and not p.paused and p.woke < self.epoch
        ]  # fmt: skip
        calm += [f"resume {p.role}" for p in beats if p.paused]
        calm += [f"restart {p.role}" for p in beats if p.state == "dead"]
        if self.slot < tasks:
            calm.append("advance")
        if self.ended:
            return []
        faults: list[str] = []
        if self.faults < MAX_FAULTS:
            if self.config.scheduler == "redbeat" and self.holder is not None:
                held = self.beats[mb.role(self.holder)]
                if held.name == self.holder and (
                    (self.config.faults == "kill" and held.state == "dead")
                    or (self.config.faults == "pause" and held.paused)
                ):
                    faults.append("expire")
                elif held.name != self.holder and self.config.faults == "kill":
                    faults.append("expire")  # its holder was killed and restarted
            live = [p for p in beats if p.state != "dead"]
            if self.config.faults == "kill":
                faults += [f"kill {p.role}" for p in live]
            elif self.config.faults == "pause":
                faults += [f"pause {p.role}" for p in live if not p.paused]
        if not calm:  # settled: a fault may still come (a kill after the last send)
            return ["end", *faults] if faults else []
        return calm + faults

    def apply(self, move: str) -> None:
        verb, _, who = move.partition(" ")
        history = self.run_.history
        if verb == "end":
            self.ended = True
            return
        if verb == "advance":
            self.slot += 1
            self.epoch += 1
            history.append(h.ClockAdvanced(self.slot))
            return
        if verb == "expire":
            self.faults += 1
            self.epoch += 1
            history.append(h.Expired(self.lock_key))
            self._redis().pexpireat(self.lock_key, 1)
            self.holder = None
            return
        p = self.beats.get(who)
        if p is None:
            raise HarnessError(f"unknown move {move!r}")
        if verb in ("send", "tick"):
            if verb == "tick":
                history.append(h.BeatTick(p.name))
                p.woke = self.epoch
            self._go(p)
        elif verb == "kill":
            self.faults += 1
            self.epoch += 1
            history.append(h.Killed(p.name))
            p.killed = True
            p.managed.kill_group()
            self._wait(lambda: p.state == "dead", f"{p.name}'s connection to close")
        elif verb == "restart":
            self.epoch += 1
            q = self._spawn(p.role, p.name + "'")
            self._boot(q)
        elif verb == "pause":
            self.faults += 1
            history.append(h.Paused(p.name))
            os.kill(p.managed.pid, signal.SIGSTOP)
            p.paused = True
        elif verb == "resume":
            self.epoch += 1
            history.append(h.Resumed(p.name))
            os.kill(p.managed.pid, signal.SIGCONT)
            p.paused = False
        else:
            raise HarnessError(f"unknown move {move!r}")

    # --- beat processes ------------------------------------------------------------------

    def _spawn(self, role: str, name: str) -> BeatProc:
        self._spawned += 1
        token = f"{role}#{self._spawned}"
        config = self.config
        file = self.dir / (config.file_of(role) + ".schedule")
        env = {
            **self.cluster.env,
            "SUITE_BEAT_CONTROL": "{}:{}".format(*self.wire.address),
            "SUITE_BEAT_NAME": token,
            "SUITE_BEAT_CLOCK": str(self.slot * mb.PERIOD),
            "SUITE_BEAT_PERIOD": str(mb.PERIOD),
            "SUITE_BEAT_QUEUE": self.queue,
            "SUITE_BEAT_PREFIX": self.prefix,
            "SUITE_BEAT_SCHEDULER": config.scheduler,
            "SUITE_BEAT_ENTRIES": ",".join(mb.ENTRIES),
        }
        argv = [
            "-A", "tasks.beat", "beat",
            "-S", mb.SCHEDULER_CLASS[config.scheduler], "-s", str(file), "-l", "info",
        ]  # fmt: skip
        log = str(self.dir / f"{token.replace('#', '-')}.log")
        # The cluster's fork server (harness/forkserver.py) runs the same `celery`
        # command line with Celery, kombu and redis-py already imported: a beat starts
        # in a fraction of a fresh interpreter's second.
        server = self.cluster.forkserver
        if server is not None:
            managed = server.fork(argv, name=f"beat {name}", env=env, cwd=str(ROOT), log_path=log)
        else:
            managed = procs.spawn(
                [sys.executable, "-m", "celery", *argv], name=f"beat {name}", env=env,
                cwd=str(ROOT), log_path=log,
            )  # fmt: skip
        p = self.beats[role] = self._tokens[token] = BeatProc(role, name, managed)
        return p

    def _boot(self, p: BeatProc) -> None:
        """Wait until ``p`` reached its boot gate, then let it start its scheduler and run
        to its first park."""
        self._wait(lambda: p.state != "starting", f"{p.name} to start", check=self._alive(p))
        if p.state != "boot":
            raise HarnessError(f"{p.name} did not stop at its boot gate: {p.state}")
        self.run_.history.append(h.BeatStarted(p.name))
        p.woke = self.epoch
        self._go(p)

    def _go(self, p: BeatProc) -> None:
        if p.conn is None or p.state not in ("boot", "tick", "lock", "send"):
            raise HarnessError(f"cannot let {p.name} go: it is {p.state}")
        p.state = "running"
        self.wire.send(p.conn, {"go": True, "clock": self.slot * mb.PERIOD})
        self._wait(lambda: p.state != "running", f"{p.name} to park or exit")

    def _alive(self, p: BeatProc) -> Callable[[], None]:
        def check() -> None:
            if p.conn is None and not p.managed.alive():
                raise HarnessError(
                    f"{p.name} exited before it said hello:\n{p.managed.log_tail(30)}"
                )

        return check

    def _wait(
        self, done: Callable[[], bool], what: str, check: Callable[[], None] | None = None
    ) -> None:
        deadline = procs_time() + TIMEOUT
        while not done():
            if check is not None:
                check()
            left = deadline - procs_time()
            if left <= 0:
                states = ", ".join(f"{q.name}:{q.state}" for q in self.beats.values())
                raise HarnessTimeout(f"timed out after {TIMEOUT:.0f}s waiting for {what}; {states}")
            if not self.wire.events:
                self.wire.read(min(left, 0.2))
            while self.wire.events:
                self._apply(*self.wire.events.popleft())

    def _apply(self, cid: int, msg: dict[str, Any] | None) -> None:
        history = self.run_.history
        if msg is not None and msg.get("t") == "hello":
            p = self._tokens.get(msg["beat"])
            if p is None:
                return
            p.conn = cid
            self._by_conn[cid] = p
            return
        p = self._by_conn.get(cid)
        if p is None:
            return  # a beat of an earlier example
        if msg is None:
            self.wire.forget(cid)
            del self._by_conn[cid]
            p.state = "dead"
            if not p.killed:
                with contextlib.suppress(HarnessError):
                    p.managed.kill_group()  # reap it
                p.error = _last_error(p.managed.log_tail(40))
                history.append(h.BeatExited(p.name, p.error))
            return
        kind = msg.get("t")
        if kind == "gate":
            gate = msg["kind"]
            p.state = gate
            if gate == "send":
                history.append(h.BeatDue(p.name, msg["entry"], _slot(msg["due"])))
            elif gate in ("tick", "lock"):
                history.append(h.BeatAsleep(p.name, gate))
        elif kind == "rec":
            k = msg["k"]
            if k == "sent":
                history.append(
                    h.BeatSent(p.name, msg["entry"], _slot(msg["due"]), _slot(msg["at"]))
                )
            elif k == "saved":
                history.append(h.BeatSaved(p.name))
            elif k == "wrote":
                last = None if msg["last"] is None else _slot(msg["last"])
                history.append(h.BeatWrote(p.name, msg["entry"], last, int(msg["runs"])))
            elif k == "loaded":
                history.append(h.BeatReloaded(p.name))
            elif k == "locked":
                self.holder = p.name
                history.append(h.BeatLocked(p.name))
            else:
                self.cluster.controller.anomalies.append(f"unknown beat record {k!r}")

    # --- the end -------------------------------------------------------------------------

    def _redis(self) -> Any:
        import redis

        if getattr(self, "_client", None) is None:
            self._client = redis.Redis.from_url(self.cluster.env["SUITE_BROKER_URL"])
        return self._client

    def _read_queue(self) -> None:
        """What the broker holds: the messages the beats published, by entry."""
        counts = dict.fromkeys(mb.ENTRIES, 0)
        for raw in self._redis().lrange(self.queue, 0, -1):
            body = json.loads(base64.b64decode(json.loads(raw)["body"]))
            entry = str(body[0][0])
            counts[entry] = counts.get(entry, 0) + 1
        for entry, count in counts.items():
            self.run_.history.append(h.BeatQueued(entry, count))

    def _read_rows(self) -> None:
        """What django-celery-beat's rows hold once every beat is parked."""
        rows = beat_db.rows(mb.ENTRIES)
        for entry in mb.ENTRIES:
            last, runs = rows.get(entry, (None, -1))
            slot = None if last is None else _slot(last)
            self.run_.history.append(h.BeatRow(entry, slot, runs))

    def _cleanup(self) -> None:
        for p in self.beats.values():
            if p.paused:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(p.managed.pid, signal.SIGCONT)
            p.killed = True
            p.managed.kill_group()
        try:  # every connection's end read, so none is left for the next example
            self._wait(lambda: not self._by_conn, "the beats' connections to close")
        finally:
            self._by_conn.clear()
            self._tokens.clear()
        with contextlib.suppress(Exception):
            client = self._redis()
            keys = [self.queue, *client.scan_iter(match=f"{self.prefix}*")]
            client.delete(*keys)
        _remove(self.dir)


def _slot(seconds: float) -> int:
    return round(float(seconds) / mb.PERIOD)


def _last_error(log: str) -> str:
    """The exception a beat died of, from the end of its log (its class and message:
    no timestamp, so a replay's timeline reads the same)."""
    found = re.findall(r"\b([\w.]*(?:Error|Exception|Exit)\b:?[^\n]*)", log)
    return found[-1].strip()[:160] if found else "no error in its log"


def _remove(path: Path) -> None:
    import shutil

    shutil.rmtree(path, ignore_errors=True)


def procs_time() -> float:
    import time

    return time.monotonic()
