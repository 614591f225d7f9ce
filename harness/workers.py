"""Real ``celery worker`` processes: start, wait ready, kill, pause, restart.

A worker is started once per (pool, concurrency) and reused across examples; it consumes
its own queue so a task goes exactly to the worker the scenario meant.
"""

from __future__ import annotations

import os
import re
import signal
import sys
from dataclasses import dataclass, replace
from pathlib import Path

import psutil

from harness import procs
from harness.controller import Controller, Execution, Proc
from harness.errors import HarnessError
from harness.forkserver import ForkServer
from tasks.settings import Settings

ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class WorkerSpec:
    pool: str
    concurrency: int
    acks_late: bool = False
    reject_on_worker_lost: bool = False
    acks_on_failure: bool = True  # task_acks_on_failure_or_timeout
    dedup: bool = False  # worker_deduplicate_successful_tasks
    cancel_on_loss: bool = False  # worker_cancel_long_running_tasks_on_connection_loss
    broker: str = "redis"
    track_started: bool = False
    prefetch: int = 1
    max_tasks_per_child: int | None = None
    state_init: int | None = None  # what worker_process_init sets (tasks/state.py)
    gates: bool = False  # scheduling points inside the prefork pool (tasks/patches/gates.py)
    results: str = "redis"  # the result backend: redis | db (SQLAlchemy on PostgreSQL)
    consumer_timeout_ms: int | None = None  # amqp: a private node with this timeout
    chord_ordered: bool = True  # Redis results: a chord's join is a sorted set, else a list
    # The queues it consumes (``-Q``), by name without the run id, instead of its own
    # queue; and the routing settings its app gets (tasks/routing.py, JSON): the
    # routing area's workers only.
    queues: tuple[str, ...] = ()
    routing: str = ""
    heartbeat: float | None = None  # amqp: broker_heartbeat (s); None, Celery's default
    canvas_plugin: str | None = None  # a plug-in canvas whose tasks it registers

    @property
    def name(self) -> str:
        flags = ("-late" if self.acks_late else "") + (
            "-requeue" if self.reject_on_worker_lost else ""
        )
        flags += "" if self.acks_on_failure else "-nofailack"
        flags += ("-dedup" if self.dedup else "") + ("-cancel" if self.cancel_on_loss else "")
        extra = ("-started" if self.track_started else "") + (
            f"-p{self.prefetch}" if self.prefetch != 1 else ""
        )
        broker = "" if self.broker == "redis" else f"-{self.broker}"
        if self.consumer_timeout_ms is not None:
            broker += f"-ct{self.consumer_timeout_ms}"
        if self.max_tasks_per_child is not None:
            extra += f"-mtpc{self.max_tasks_per_child}"
        if self.state_init is not None:
            extra += f"-init{self.state_init}"
        extra += ("-gates" if self.gates else "") + ("" if self.results == "redis" else "-dbres")
        extra += "" if self.chord_ordered else "-chordlist"
        extra += f"-Q{'+'.join(self.queues)}" if self.queues else ""
        extra += "" if self.heartbeat is None else f"-hb{self.heartbeat:g}"
        if self.canvas_plugin is not None:  # a queue name: no ':' or '/'
            extra += "-canvas-" + re.sub(r"[^A-Za-z0-9_.-]", "_", self.canvas_plugin)
        return f"{self.pool}{self.concurrency}{flags}{extra}{broker}"

    @property
    def children(self) -> int:
        """Pool child processes that must say hello before the worker counts as ready."""
        return self.concurrency if self.pool == "prefork" else 0


class Worker:
    def __init__(
        self,
        spec: WorkerSpec,
        controller: Controller,
        env: dict[str, str],
        run_dir: Path,
        incarnation: int = 1,
        run_id: str = "",
        forkserver: ForkServer | None = None,
    ) -> None:
        self.spec = spec
        self.forkserver = forkserver
        self.controller = controller
        # Each incarnation has its own name and queue, so a standby can be started
        # while the active worker runs without taking its tasks. The run id keeps
        # queues of concurrent runs apart on a shared broker (RabbitMQ).
        self.queue = f"{run_id}q-{spec.name}-{incarnation}"
        self.run_id = run_id
        self.hostname = f"{run_id}{spec.name}-{incarnation}@localhost"
        self.alias = "w1"
        self._env = env
        self._log = run_dir / f"worker-{spec.name}-{incarnation}.log"
        self._managed: procs.Managed | None = None
        controller.aliases[self.hostname] = self.alias

    def start(self, timeout: float = 60.0) -> None:
        self.launch()
        self.await_ready(timeout)

    def settings(self) -> Settings:
        """What this worker is configured with: the run's settings (broker, result
        backend, queue expiry in the cluster's environment) with the spec's on top."""
        spec, run = self.spec, Settings.from_env(self._env)
        return replace(
            run,
            worker=self.hostname,
            broker_url=self._env["SUITE_AMQP_URL"] if spec.broker == "amqp" else run.broker_url,
            result_url=self._env["SUITE_RESULT_DB_URL"] if spec.results == "db" else run.result_url,
            acks_late=spec.acks_late,
            reject_on_worker_lost=spec.reject_on_worker_lost,
            acks_on_failure=spec.acks_on_failure,
            dedup=spec.dedup,
            cancel_on_loss=spec.cancel_on_loss,
            track_started=spec.track_started,
            prefetch=spec.prefetch,
            state_init=spec.state_init,
            gates=spec.gates,
            chord_ordered=spec.chord_ordered,
            routing=spec.routing,
            heartbeat=spec.heartbeat,
            canvas_plugin=spec.canvas_plugin,
        )

    def launch(self) -> None:
        """Start the process; ``await_ready`` waits for it (start-up takes ~1 s)."""
        env = {**self._env, **self.settings().to_env()}
        level = os.environ.get("SUITE_WORKER_LOGLEVEL", "WARNING")  # DEBUG to see Celery's side
        # Its own queue, or the routing area's queues (the run id keeps them apart too).
        self.queues = [f"{self.run_id}{q}" for q in self.spec.queues] or [self.queue]
        argv = [
            sys.executable, "-m", "celery", "-A", "tasks.app", "worker",
            "-P", self.spec.pool, "-c", str(self.spec.concurrency), "-Q", ",".join(self.queues),
            "-n", self.hostname, "-O", "fair", "-l", level,
            "--without-gossip", "--without-mingle", "--without-heartbeat",
        ]  # fmt: skip
        if self.spec.max_tasks_per_child is not None:
            argv += ["--max-tasks-per-child", str(self.spec.max_tasks_per_child)]
        # gevent must monkey-patch before anything imports socket or threading
        # (celery/__main__.py maybe_patch_concurrency); the fork server has already
        # imported them unpatched, so a gevent worker is a fresh interpreter.
        if self.forkserver is not None and self.spec.pool != "gevent":
            self._managed = self.forkserver.fork(
                argv[3:], name=f"worker {self.hostname}", env=env, cwd=str(ROOT),
                log_path=str(self._log),
            )  # fmt: skip
            return
        self._managed = procs.spawn(
            argv, name=f"worker {self.hostname}", env=env, cwd=str(ROOT), log_path=str(self._log)
        )

    def await_ready(self, timeout: float = 60.0) -> None:
        managed = self._managed
        if managed is None:
            raise HarnessError(f"worker {self.hostname} was never launched")

        def died() -> None:
            if not managed.alive():
                raise HarnessError(
                    f"celery worker {self.spec.name} exited during start-up "
                    f"(log {self._log}):\n{managed.log_tail()}"
                )

        self.controller.wait(
            self.ready, f"worker {self.spec.name} to start", timeout=timeout, check=died
        )
        self.check_processes()

    def ready(self) -> bool:
        ps = self.processes()
        main = [p for p in ps if p.role == "main"]
        kids = [p for p in ps if p.role == "child"]
        return len(main) == 1 and len(kids) >= self.spec.children

    def os_processes(self) -> dict[int, str]:
        """What the OS says this worker is: main pid and its children, via psutil.

        The agents' hellos name processes by role; this cross-checks them against the
        process table, so a hello from a stranger (or a child the hellos missed) is an
        error rather than a silent mix-up.
        """
        if self._managed is None:
            return {}
        try:
            main = psutil.Process(self._managed.pid)
            found = {main.pid: "main"}
            found.update({c.pid: "child" for c in main.children() if c.status() != "zombie"})
        except psutil.NoSuchProcess:
            return {}
        return found

    def check_processes(self) -> None:
        said = {p.pid: p.role for p in self.processes()}
        seen = self.os_processes()
        stray = {pid: role for pid, role in said.items() if seen.get(pid) != role}
        if stray:
            raise HarnessError(
                f"worker {self.hostname}: processes {stray} said hello but the OS shows "
                f"{seen} under its main process"
            )

    def processes(self) -> list[Proc]:
        return self.controller.procs_of(self.hostname)

    def main(self) -> Proc:
        for p in self.processes():
            if p.role == "main":
                return p
        raise HarnessError(f"worker {self.spec.name} has no live main process")

    def alive(self) -> bool:
        return self._managed is not None and self._managed.alive()

    def kill_child(self, proc: Proc) -> None:
        """SIGKILL one pool child and wait until it is gone.

        The pool forks a replacement by itself; nothing waits for it here: a task
        submitted meanwhile simply starts once the replacement is up, and the next
        example waits for a full pool (``Cluster.worker``).
        """
        os.kill(proc.pid, signal.SIGKILL)
        self.controller.wait(lambda: not proc.alive, f"{proc.name} to die")

    def kill(self, proc: Proc) -> list[Execution]:
        """SIGKILL ``proc`` (a pool child, or the main process with its group) and wait
        until every execution it ran is dead; returns those executions."""
        ctl = self.controller
        victims = [e for e in ctl.live() if e.pid == proc.pid]
        if proc.role == "child":
            self.kill_child(proc)
        else:
            self.kill_main()
        ctl.wait(lambda: all(e.state == "dead" for e in victims), f"{proc.name} to go")
        return victims

    def kill_main(self) -> None:
        """SIGKILL the main process and everything in its process group."""
        if self._managed is None:
            return
        ps = self.processes()
        self._managed.kill_group()
        self.controller.wait(
            lambda: not any(p.alive for p in ps), f"worker {self.spec.name}'s processes to die"
        )

    def terminate(self) -> None:
        """SIGTERM to the main process only: Celery's warm shutdown."""
        if self._managed is not None:
            self._managed.signal(signal.SIGTERM)

    def quit(self) -> None:
        """SIGQUIT to the main process only: Celery's cold shutdown. Waits until every
        process of the worker is gone (a process counts as gone at the end of its
        report stream, so every report it sent has been read by then)."""
        if self._managed is None:
            return
        ps = self.processes()
        self._managed.signal(signal.SIGQUIT)
        self.controller.wait(
            lambda: not any(p.alive for p in ps), f"worker {self.spec.name} to exit"
        )

    def restart(self) -> None:
        self.kill_main()
        self.start()

    def pause(self, proc: Proc) -> None:
        os.kill(proc.pid, signal.SIGSTOP)
        proc.paused = True

    def resume(self, proc: Proc) -> None:
        os.kill(proc.pid, signal.SIGCONT)
        proc.paused = False

    def _resume_paused(self) -> None:
        for p in self.processes():
            if p.paused:
                self.resume(p)

    def begin_stop(self) -> None:
        """Start the warm shutdown without waiting for it (``stop`` waits)."""
        if self._managed is not None:
            self._resume_paused()
            self._managed.terminate()

    def stop(self) -> None:
        if self._managed is not None:
            self._resume_paused()
            self._managed.stop(timeout=10)
            self._managed = None
