"""Everything a test session runs on: servers, the controller, and reusable workers.

Servers are the harness's own (free loopback ports, a temp dir) unless a URL in the
environment points at an existing one: ``SUITE_BROKER_URL``, ``SUITE_CACHE_REDIS_URL``,
``SUITE_MEMCACHED`` (host:port), ``SUITE_PG_DSN``. RabbitMQ is a service, by
``SUITE_AMQP_URL`` (default: guest on 127.0.0.1:5672), only looked at when a scenario
uses it; the run's queues carry its run id and expire once unused. A scenario that
needs a ``consumer_timeout`` (node-wide in RabbitMQ) gets a private node of the
harness's own instead (harness/rabbit.py, ``Cluster.amqp_url``).
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import shutil
import socket
import tempfile
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from harness import expiry, procs, timing
from harness.brokers import AmqpBroker, Broker, RedisBroker
from harness.controller import Controller
from harness.errors import HarnessError
from harness.forkserver import ForkServer
from harness.rabbit import RabbitNode
from harness.servers import Memcached, Postgres, RedisServer
from harness.workers import ROOT, Worker, WorkerSpec

DEFAULT_AMQP_URL = "amqp://guest:guest@127.0.0.1:5672//"
QUEUE_EXPIRES_MS = 600_000  # an abandoned run's queues vanish from RabbitMQ after 10 min
STANDBY_DEEPEN_AFTER = 3  # replacements of one spec before it keeps two standbys
# Worker specs kept warm at once (SUITE_WARM_SPECS). An idle worker still costs about
# 1.5% of a core (its event loop, the 50 ms unacked-restore scan on Redis), and a full
# matrix run touches hundreds of specs: with every one kept, two runs on 2 cores reached
# a load of 29 (2026-12-07). Rows of one config run one after another, so the least
# recently used spec beyond this many is killed, its standbys with it; using it again
# starts it again (~0.5 s from the fork server).
WARM_SPECS = 6


def _reachable(url_or_address: str, what: str, env_name: str) -> None:
    if "://" in url_or_address:
        parsed = urlparse(url_or_address)
        host, port = parsed.hostname or "127.0.0.1", parsed.port or 0
    else:
        host, _, p = url_or_address.rpartition(":")
        port = int(p)
    try:
        socket.create_connection((host, port), timeout=3).close()
    except OSError as exc:
        raise HarnessError(
            f"{what} at {url_or_address} is unreachable ({exc.strerror or exc}): "
            f"start it, or unset {env_name} to let the harness start its own"
        ) from None


class Cluster:
    def __init__(self, run_dir: Path | None = None) -> None:
        self._own_dir = run_dir is None
        self.run_dir = run_dir or Path(tempfile.mkdtemp(prefix="celery-suite-"))
        self.controller = Controller()
        self.servers: list[Any] = []
        self.env: dict[str, str] = {}
        self.workers: dict[WorkerSpec, Worker] = {}
        self._used: dict[WorkerSpec, None] = {}  # specs by last use, oldest first
        self._warm_specs = int(os.environ.get("SUITE_WARM_SPECS", WARM_SPECS))
        self._standby: dict[WorkerSpec, list[Worker]] = {}  # oldest first
        self._replaced: dict[WorkerSpec, int] = {}
        self._incarnations = 0
        self._examples = 0
        self._app: Any = None
        self._senders: dict[str, Any] = {}
        self._brokers: dict[str, Broker] = {}
        self._pg: Any = None
        self._backends: dict[str, Any] = {}
        self._rabbits: dict[int, RabbitNode] = {}  # consumer_timeout_ms -> private node
        self._forkserver: ForkServer | None = None
        self._retired: list[Worker] = []
        self._queues: dict[str, list[str]] = {"redis": [], "amqp": []}  # every queue made
        self._declared: set[str] = set()  # Redis queues a send has declared
        self.run_id = secrets.token_hex(3) + "-"

    # --- start / stop --------------------------------------------------------------------

    def start(self) -> Cluster:
        procs.install_cleanup()
        if self._own_dir:
            procs.remove_on_exit(str(self.run_dir))
        env = {
            "SUITE_CONTROL": "{}:{}".format(*self.controller.address),
            "SUITE_RUN_DIR": str(self.run_dir),
            "PYTHONPATH": os.pathsep.join(
                p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p
            ),
        }
        env["SUITE_BROKER_URL"] = self._redis("SUITE_BROKER_URL", "the broker Redis")
        env["SUITE_CACHE_REDIS_URL"] = self._redis("SUITE_CACHE_REDIS_URL", "the cache Redis")
        if addr := os.environ.get("SUITE_MEMCACHED"):
            _reachable(addr, "memcached", "SUITE_MEMCACHED")
        else:
            mc = Memcached(self.run_dir)
            mc.start()
            self.servers.append(mc)
            addr = mc.address
        env["SUITE_MEMCACHED"] = addr
        if dsn := os.environ.get("SUITE_PG_DSN"):
            _reachable(dsn, "PostgreSQL", "SUITE_PG_DSN")
        else:
            pg = Postgres(self.run_dir)
            pg.start()
            self.servers.append(pg)
            dsn = pg.dsn()
        env["SUITE_PG_DSN"] = dsn
        env["SUITE_RESULT_URL"] = env["SUITE_CACHE_REDIS_URL"].rsplit("/", 1)[0] + "/1"
        # Celery's database result backend (SQLAlchemy) on the run's PostgreSQL.
        env["SUITE_RESULT_DB_URL"] = "db+" + re.sub(
            r"^postgres(ql)?://", "postgresql+psycopg://", dsn
        )
        env["SUITE_AMQP_URL"] = os.environ.get("SUITE_AMQP_URL", DEFAULT_AMQP_URL)
        env["SUITE_QUEUE_EXPIRES_MS"] = str(QUEUE_EXPIRES_MS)
        # Workers' temporary files (billiard's pymp-* dirs, left behind by every
        # killed process) stay in the run dir, which stop() removes.
        tmp = self.run_dir / "tmp"
        tmp.mkdir(exist_ok=True)
        self.env = {**os.environ, **env, "TMPDIR": str(tmp)}
        if os.environ.get("SUITE_FORKSERVER", "1") == "1":
            # Imports in the background while PostgreSQL and the tables are set up.
            self._forkserver = ForkServer(self.run_dir, self.env, str(ROOT))
        # The test process uses the same Django settings to create tables, read the
        # invoice store and expire database-cache rows. Django is configured once per
        # process, so one process holds one cluster at a time. It also writes and reads
        # django-celery-beat's rows (the beat area's DatabaseScheduler).
        self._saved_env = {k: os.environ.get(k) for k in env}
        os.environ.update(env)
        from tasks import django_setup

        django_setup.configure(apps=(django_setup.BEAT_APP,))
        django_setup.create_tables()
        from tasks.effects import store

        store.create_table(self.pg)
        return self

    @property
    def pg(self) -> Any:
        """The harness's own connection to the run's PostgreSQL (autocommit)."""
        if self._pg is None:
            import psycopg

            self._pg = psycopg.connect(self.env["SUITE_PG_DSN"], autocommit=True)
        return self._pg

    def _redis(self, env_name: str, what: str) -> str:
        if url := os.environ.get(env_name):
            _reachable(url, what, env_name)
            return url
        server = RedisServer(self.run_dir / env_name.lower())
        server.start()
        self.servers.append(server)
        return str(server.url(0))

    @property
    def forkserver(self) -> ForkServer | None:
        """What forks this cluster's celery processes (workers, beats), or None when
        each starts as a fresh interpreter (``SUITE_FORKSERVER=0``)."""
        return self._forkserver

    def stop(self) -> None:
        standbys = [w for ws in self._standby.values() for w in ws]
        workers = [*self.workers.values(), *standbys, *self._retired]
        for worker in workers:  # every warm shutdown at once (~1 s; gevent's 4-5 s)
            worker.begin_stop()
            self.wake(worker)  # its loop sees the SIGTERM now, not after its poll
        for worker in workers:
            worker.stop()
        if self._forkserver is not None:
            self._forkserver.stop()
            self._forkserver = None
        if "amqp" in self._brokers:
            self._brokers["amqp"].delete(self._queues["amqp"])
        for broker in self._brokers.values():
            broker.close()
        self._brokers.clear()
        if self._pg is not None:
            with contextlib.suppress(Exception):
                self._pg.close()
            self._pg = None
        self.workers.clear()
        self._standby.clear()
        self._backends.clear()
        self._rabbits.clear()  # stopped with the other servers
        for app in [self._app, *self._senders.values()]:
            _quiet_after_stop(app)
        for server in reversed(self.servers):
            server.stop()
        self.servers.clear()
        self.controller.close()
        for k, v in getattr(self, "_saved_env", {}).items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        if self._own_dir:
            shutil.rmtree(self.run_dir, ignore_errors=True)

    def __enter__(self) -> Cluster:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # --- workers and tasks -------------------------------------------------------------

    def worker(self, spec: WorkerSpec) -> Worker:
        """A ready worker for ``spec``, started on first use and reused afterwards."""
        self._use(spec)
        worker = self.workers.get(spec)
        if worker is None:
            worker = self.workers[spec] = self._new_worker(spec)
        if worker.alive() and not worker.ready():
            # A killed child's replacement may still be starting: give it the time a
            # fork takes before calling the worker broken.
            with contextlib.suppress(HarnessError):
                worker.await_ready(timeout=10)
        if not worker.alive() or not worker.ready():
            if worker.alive():
                worker.kill_main()
            worker.start()
        return worker

    def _use(self, spec: WorkerSpec) -> None:
        """``spec`` is used now; the least recently used specs beyond ``WARM_SPECS``
        are evicted."""
        self._used.pop(spec, None)
        self._used[spec] = None
        while len(self._used) > self._warm_specs:
            self.evict(next(iter(self._used)))

    def evict(self, spec: WorkerSpec) -> None:
        """Kill ``spec``'s idle worker and its standbys (between examples). SIGKILL, not
        a warm shutdown: a worker in warm shutdown goes on consuming until its loop
        notices, beside the next worker of its spec on the same queues (a routing
        row's message went to the old one, 2026-12-07)."""
        self._used.pop(spec, None)
        active = self.workers.pop(spec, None)
        for w in [*([active] if active else []), *self._standby.pop(spec, [])]:
            w.kill_main()
            w.stop()

    def replace(
        self, spec: WorkerSpec, adopt: list[str] | None = None, alias: str | None = None
    ) -> Worker:
        """The worker for ``spec`` died: promote the standby (started in the background
        after the previous replacement) and launch the next standby.

        ``adopt``: queues the dead worker consumed that the standby must now consume
        too (remote control ``add_consumer``), so what the broker gives back reaches
        a worker: the "second worker" of a redelivery. ``alias``: the standby's name in
        the history, given before it adopts: the broker's redeliveries reach it at
        once, and their receipts are named as they arrive (a soak run's receipts named
        the dead ``w1``, 2026-12-07)."""
        waiting = self._standby.get(spec) or [self._new_worker(spec)]
        standby = waiting.pop(0)
        self._replaced[spec] = self._replaced.get(spec, 0) + 1
        if standby._managed is None:
            standby.launch()
        standby.await_ready()
        if alias is not None:
            self.controller.aliases[standby.hostname] = alias
        for queue in adopt or []:
            self.adopt(standby, queue)
        self.workers[spec] = standby
        self.prepare_standby(spec)
        return standby

    def retire(self, worker: Worker) -> None:
        """A worker on its way out (warm shutdown): stopped with the others at the end."""
        self._retired.append(worker)
        if self.workers.get(worker.spec) is worker:
            del self.workers[worker.spec]

    def prepare_standby(self, spec: WorkerSpec) -> None:
        """Launch the standby for ``spec`` now (it starts while scenarios run).

        A worker takes ~0.3 s to start, longer than a kill-main scenario once it is
        warm, so a spec whose workers keep being replaced keeps two standbys: each
        then has two scenarios' time to get ready (bench ``delivery-kill-main``)."""
        depth = 1 if self._replaced.get(spec, 0) < STANDBY_DEEPEN_AFTER else 2
        waiting = self._standby.setdefault(spec, [])
        while len(waiting) < depth:
            nxt = self._new_worker(spec)
            nxt.launch()
            waiting.append(nxt)

    def own_queues(self, kind: str, queues: list[str]) -> None:
        """Queues of this run that no worker of its own names (a runner's routing
        queues): deleted from RabbitMQ with the rest when the run stops."""
        self._queues[kind] += [q for q in queues if q not in self._queues[kind]]

    def adopt(self, worker: Worker, queue: str) -> None:
        """Make ``worker`` consume ``queue`` too, and wait until it does."""
        ctl = self.controller
        ctl.command(worker.main(), {"t": "adopt", "queue": queue})
        ctl.wait(
            lambda: (worker.hostname, queue) in ctl.adopted,
            f"worker {worker.hostname} to consume {queue}",
        )
        self.broker(worker.spec.broker, worker.spec.consumer_timeout_ms).wake(worker.main().pid)
        worker.queues.append(queue)

    def wake(self, worker: Worker) -> None:
        """Make ``worker``'s event loop look at its work now: what it has ready (a
        deferred ack), due timers, a shutdown asked for (tasks/agent.py ``wake``)."""
        try:
            main = worker.main()
        except HarnessError:
            return  # no live main process: nothing to wake
        if not main.paused:
            self.controller.command(main, {"t": "wake"})

    def drop_connection(self, worker: Worker) -> None:
        """Cut ``worker``'s main process's connections to the broker, and wait until
        it says it did (it reconnects by itself)."""
        ctl = self.controller
        before = ctl.dropped.get(worker.hostname, 0)
        ctl.command(worker.main(), {"t": "drop"})
        ctl.wait(
            lambda: ctl.dropped.get(worker.hostname, 0) > before,
            f"worker {worker.hostname} to drop its broker connections",
        )

    def _new_worker(self, spec: WorkerSpec) -> Worker:
        self.backend(spec.results)  # its tables exist before any worker writes a state
        self._incarnations += 1
        env = self.env
        if spec.consumer_timeout_ms is not None:
            env = {**env, "SUITE_AMQP_URL": self.amqp_url(spec.consumer_timeout_ms)}
        worker = Worker(
            spec, self.controller, env, self.run_dir, self._incarnations, self.run_id,
            self._forkserver,
        )  # fmt: skip
        if spec.consumer_timeout_ms is None:  # a private node goes with all its queues
            self._queues[spec.broker].append(worker.queue)
        return worker

    def amqp_url(self, consumer_timeout_ms: int | None = None) -> str:
        """The RabbitMQ service, or, for a ``consumer_timeout``, a private node of ours
        started on first use: the setting is node-wide in RabbitMQ 3.10, and the
        service is shared (harness/rabbit.py)."""
        if consumer_timeout_ms is None:
            return str(self.env["SUITE_AMQP_URL"])
        node = self._rabbits.get(consumer_timeout_ms)
        if node is None:
            node = RabbitNode(self.run_dir / f"rabbit-ct{consumer_timeout_ms}", consumer_timeout_ms)
            node.start()
            self.servers.append(node)
            self._rabbits[consumer_timeout_ms] = node
        return node.url()

    def broker(self, kind: str, consumer_timeout_ms: int | None = None) -> Broker:
        """Probes of the broker ``kind`` (redis: the run's own; amqp: the service, or
        the private node with that consumer timeout)."""
        key = _broker_key(kind, consumer_timeout_ms)
        if key not in self._brokers:
            if kind == "redis":
                self._brokers[key] = RedisBroker(self.env["SUITE_BROKER_URL"])
            elif kind == "amqp":
                self._brokers[key] = AmqpBroker(self.amqp_url(consumer_timeout_ms))
            else:
                raise HarnessError(f"unknown broker {kind!r}: choose redis or amqp")
        return self._brokers[key]

    def sender(
        self, kind: str, consumer_timeout_ms: int | None = None, results: str = "redis"
    ) -> Any:
        """A Celery app that publishes to broker ``kind`` (the application side), with
        the result backend ``results`` (a chord is sent through it)."""
        if kind == "redis" and results == "redis":
            return self.app
        key = _broker_key(kind, consumer_timeout_ms) + ("" if results == "redis" else "-db")
        if key not in self._senders:
            from celery import Celery

            self.broker(kind, consumer_timeout_ms)  # one clear error if it is unreachable
            _ = self.app  # tasks.app sets how the suite declares queues
            self.backend(results)  # one clear error if SQLAlchemy is missing
            url = self.amqp_url(consumer_timeout_ms) if kind == "amqp" else None
            backend = "SUITE_RESULT_URL" if results == "redis" else "SUITE_RESULT_DB_URL"
            sender = Celery(
                f"suite-sender-{key}", broker=url or self.env["SUITE_BROKER_URL"],
                backend=self.env[backend],  # a chord is sent through it
            )  # fmt: skip
            sender.conf.broker_connection_retry_on_startup = False
            self._senders[key] = sender
        return self._senders[key]

    def backend(self, kind: str) -> Any:
        """The result backend ``kind`` as the workers of that kind see it: ``redis``
        (the app's own) or ``db`` (SQLAlchemy, whose tables are made here, once: two
        workers making them at once collide in PostgreSQL's catalog)."""
        if kind == "redis":
            return self.app.backend
        if kind != "db":
            raise HarnessError(f"unknown result backend {kind!r}: choose redis or db")
        if kind not in self._backends:
            from celery.backends.database import DatabaseBackend

            try:
                backend = DatabaseBackend(app=self.app, url=self.env["SUITE_RESULT_DB_URL"][3:])
                backend.get_task_meta("suite-create-tables")
            except ImportError as exc:
                raise HarnessError(
                    f"the database result backend needs SQLAlchemy ({exc}): "
                    "install the suite with `pip install -e .`"
                ) from None
            self._backends[kind] = backend
        return self._backends[kind]

    def state(self, task_id: str, results: str = "redis") -> str:
        """The task's state in the result backend (PENDING when nothing was stored)."""
        return str(self.app.AsyncResult(task_id, backend=self.backend(results)).state)

    def effect_count(self, order: str) -> int:
        from tasks.effects import store

        return store.count(self.pg, order)

    @property
    def app(self) -> Any:
        if self._app is None:
            from tasks.app import app

            self._app = app
        return self._app

    def send(
        self,
        worker: Worker,
        name: str,
        spec: dict[str, Any],
        task_id: str | None = None,
        queue: str | None = None,
        countdown: float | None = None,
    ) -> None:
        """Publish task ``name`` to the worker's queue (or ``queue``).

        A task registered with ``ignore_result`` is sent with it: otherwise Celery
        subscribes to a result channel per send (``backend.on_task_call``) that the
        worker never publishes to, and unsubscribes when the result is dropped. On
        Redis the queue is declared by its first send only: its ``x-expires``
        (tasks/patches/expiring_queues.py) makes kombu redeclare it on every publish
        (``Queue.can_cache_declaration``), and a Redis declaration only reads the
        queue's length and records that expiry in the sending channel, which keeps it
        (the next sends still set ``PEXPIRE``; kombu/transport/redis.py
        ``_new_queue``). RabbitMQ keeps kombu's behaviour: there the queue can expire.
        """
        target = queue or worker.queue
        options: dict[str, Any] = {}
        if getattr(self.app.tasks.get(name), "ignore_result", False):
            options["ignore_result"] = True
        redis = worker.spec.broker == "redis"
        if redis and target in self._declared:
            options["declare"] = []
        with timing.phase("send"):
            self.sender(worker.spec.broker, worker.spec.consumer_timeout_ms).send_task(
                name, args=[spec], queue=target, task_id=task_id, countdown=countdown, **options
            )
        if redis:
            self._declared.add(target)

    def send_chord(
        self, worker: Worker, spec: dict[str, Any], task_id: str, body_id: str, queue: str
    ) -> None:
        """``suite.deliver`` as the one header task of a chord whose body is
        ``suite.chord_body`` (the result backend counts the header's results)."""
        from celery import chord

        app = self.sender(worker.spec.broker, worker.spec.consumer_timeout_ms)
        header = app.signature("suite.deliver", args=[spec], queue=queue, task_id=task_id)
        body = app.signature("suite.chord_body", queue=queue, task_id=body_id)
        with timing.phase("send"):
            chord([header], body).apply_async()

    def next_example(self) -> int:
        self._examples += 1
        return self._examples

    # --- the expiry move -----------------------------------------------------------------

    def expire(self, key: str) -> list[str]:
        """Expire the lock's entries on every server (LocMemCache follows the virtual
        clock the runner advances)."""
        from django.conf import settings

        done = expiry.expire_redis(self.env["SUITE_CACHE_REDIS_URL"], key)
        stored = self.controller.memcached_keys
        done += expiry.expire_memcached(self.env["SUITE_MEMCACHED"], key, stored)
        for alias in ("db-sqlite", "db-postgres"):
            if alias in settings.CACHES:
                done += expiry.expire_db_cache(alias, key)
        return done

    def invoices(self, order: str) -> int:
        from tasks.invoices.models import Invoice

        return int(Invoice.objects.filter(order=order).count())


def _broker_key(kind: str, consumer_timeout_ms: int | None) -> str:
    """One probe and one sender per broker: the service, or each private node."""
    return kind if consumer_timeout_ms is None else f"{kind}-ct{consumer_timeout_ms}"


def _quiet_after_stop(app: Any) -> None:
    """An AsyncResult still held when the run ends (a sent chord keeps its results
    pending in the backend) unsubscribes from its task's channel when it is finalized,
    after the Redis server is gone: it would retry and warn at exit. Nothing listens
    any more, so there is nothing to unsubscribe from."""
    consumer = getattr(app.backend, "result_consumer", None) if app is not None else None
    if consumer is not None:
        consumer.cancel_for = lambda *_args, **_kwargs: None
