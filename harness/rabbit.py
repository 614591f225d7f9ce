"""A private RabbitMQ node the harness starts itself, for broker settings that are node-wide.

The machine's RabbitMQ service is shared, and in RabbitMQ 3.10 ``consumer_timeout`` is a
node-wide setting, so a check that needs a short one gets its own node: free loopback
ports, every file under run_dir, its own epmd, and a short channel tick.

How the consumer timeout is checked (rabbit_channel in 3.10): a channel with unacked
deliveries wakes every ``channel_tick_interval`` ms (app env of ``rabbit``, default
60000, not exposed in rabbitmq.conf) and closes itself with 406 PRECONDITION_FAILED once
its oldest unacked delivery is older than ``consumer_timeout`` ms; everything unacked on
it is requeued. The tick timer starts when the channel wakes for the delivery, so the
close comes at the first tick after the timeout: about ``timeout_detection_s`` after
the delivery.

Process layout: ``rabbitmq-server`` (a sh script) leads the spawned group and runs
beam.smp; beam's ``erl_child_setup`` (and its ``inet_gethost``) call setsid, so they sit
outside that group and exit once beam is gone. ``stop`` waits for them too. epmd is a
second managed process on its own port (``epmd -port``, foreground): the node never
registers with the machine's epmd on 4369, nor starts one that would outlive it.
"""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import socket
from pathlib import Path

import amqp
import psutil

from harness.errors import HarnessError, MissingBinary
from harness.procs import Managed, free_port, spawn, wait_until
from harness.servers import HOST, _Server

# A fresh node takes 5-10 s to boot on two busy cores (most of it loading every module
# of every loaded app to find boot steps); give it room.
RABBIT_START_TIMEOUT = 60.0
EPMD_START_TIMEOUT = 5.0
STRAY_TIMEOUT = 5.0
DEFAULT_CHANNEL_TICK_MS = 100
DEBIAN_SCRIPT = "/usr/lib/rabbitmq/bin/rabbitmq-server"
_INSTALL_HINT = "install it with `apt-get install -y rabbitmq-server`"
# Variables that would point the node at the machine's service or change how it starts.
_ENV_PREFIXES = ("RABBITMQ_", "ERL_")
_ENV_DROP = ("NOTIFY_SOCKET", "CONF_ENV_FILE", "NODENAME")


def _rabbit_binaries() -> tuple[str, str]:
    """Paths of the rabbitmq-server start script and epmd.

    Not Debian's /usr/sbin/rabbitmq-server: that wrapper switches to the rabbitmq user
    and reads the service's settings.
    """
    script = DEBIAN_SCRIPT if os.access(DEBIAN_SCRIPT, os.X_OK) else None
    if script is None:
        found = shutil.which("rabbitmq-server")
        if found and not os.path.realpath(found).endswith("rabbitmq-script-wrapper"):
            script = found
    if script is None:
        raise MissingBinary(
            f"rabbitmq-server not found at {DEBIAN_SCRIPT} or on PATH: {_INSTALL_HINT}"
        )
    epmd = shutil.which("epmd")
    if epmd is None:
        candidates = sorted(glob.glob("/usr/lib/erlang/erts-*/bin/epmd"))
        epmd = candidates[-1] if candidates else None
    if epmd is None:
        raise MissingBinary(f"epmd (Erlang) not found on PATH: {_INSTALL_HINT}")
    return script, epmd


def _gone(p: psutil.Process) -> bool:
    try:
        return not p.is_running() or p.status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


class RabbitNode(_Server):
    """A RabbitMQ node of our own: ``with RabbitNode(tmp, consumer_timeout_ms=2000) as n``.

    ``url()`` is the AMQP URL (guest, default vhost). ``restart()`` SIGKILLs the node
    and boots it again on the same ports, node name and data dir.
    """

    name = "rabbitmq"
    start_timeout = RABBIT_START_TIMEOUT

    def __init__(
        self,
        run_dir: str | os.PathLike[str],
        consumer_timeout_ms: int,
        *,
        channel_tick_ms: int = DEFAULT_CHANNEL_TICK_MS,
    ) -> None:
        if consumer_timeout_ms <= 0 or channel_tick_ms <= 0:
            raise HarnessError(
                f"consumer_timeout_ms ({consumer_timeout_ms}) and channel_tick_ms "
                f"({channel_tick_ms}) must be positive numbers of milliseconds"
            )
        super().__init__(run_dir)
        self.consumer_timeout_ms = consumer_timeout_ms
        self.channel_tick_ms = channel_tick_ms
        self.dist_port = free_port()
        self.epmd_port = free_port()
        self.node_name = f"suite-{self.port}@localhost"
        self.base_dir = self.run_dir / f"rabbitmq-{self.port}"
        self._epmd: Managed | None = None

    # --- accessors ------------------------------------------------------------------------

    def url(self) -> str:
        """AMQP URL of the default vhost, as guest (allowed from loopback)."""
        return f"amqp://guest:guest@{HOST}:{self.port}//"

    @property
    def log_path(self) -> Path:
        return self.run_dir / f"rabbitmq-{self.port}.log"

    @property
    def timeout_detection_s(self) -> float:
        """Latest a delivery left unacked gets its channel closed, on an idle machine."""
        ticks = self.consumer_timeout_ms // self.channel_tick_ms + 1
        return ticks * self.channel_tick_ms / 1000

    def config_text(self) -> str:
        """The rabbitmq.conf the node runs with."""
        return (
            f"listeners.tcp.1 = {HOST}:{self.port}\n"
            f"consumer_timeout = {self.consumer_timeout_ms}\n"
            "log.console = true\n"
            "log.console.level = info\n"
            "log.console.use_colors = off\n"
            "log.file = false\n"
        )

    def advanced_config_text(self) -> str:
        """advanced.config: what rabbitmq.conf cannot set."""
        return (
            f"[{{rabbit, [{{channel_tick_interval, {self.channel_tick_ms}}}]}},\n"
            " {kernel, [{inet_dist_use_interface, {127,0,0,1}}]}].\n"
        )

    def processes(self) -> list[psutil.Process]:
        """Every live process of this node: the script's group, beam's own-session
        helpers, and the node's epmd."""
        found: dict[int, psutil.Process] = {}
        for m in (self._proc, self._epmd):
            if m is None:
                continue
            with contextlib.suppress(psutil.NoSuchProcess):
                leader = psutil.Process(m.pid)
                for p in [leader, *leader.children(recursive=True)]:
                    found[p.pid] = p
        return [p for p in found.values() if not _gone(p)]

    # --- _Server hooks --------------------------------------------------------------------

    def _argv(self) -> list[str]:
        script, _ = _rabbit_binaries()
        return [script]

    def _env(self) -> dict[str, str]:
        env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith(_ENV_PREFIXES) and k not in _ENV_DROP
        }
        b = self.base_dir
        env.update(
            HOME=str(b / "home"),  # the Erlang cookie goes here, not in root's home
            ERL_EPMD_PORT=str(self.epmd_port),
            RABBITMQ_NODENAME=self.node_name,
            RABBITMQ_DIST_PORT=str(self.dist_port),
            RABBITMQ_CONF_ENV_FILE=str(b / "rabbitmq-env.conf"),  # not /etc/rabbitmq's
            RABBITMQ_CONFIG_FILE=str(b / "rabbitmq.conf"),
            RABBITMQ_ADVANCED_CONFIG_FILE=str(b / "advanced.config"),
            RABBITMQ_ENABLED_PLUGINS_FILE=str(b / "enabled_plugins"),
            RABBITMQ_MNESIA_BASE=str(b / "mnesia"),
            RABBITMQ_LOG_BASE=str(b / "log"),
            ERL_CRASH_DUMP=str(b / "erl_crash.dump"),
        )
        return env

    def _prepare(self) -> None:
        b = self.base_dir
        for d in (b, b / "home", b / "mnesia", b / "log"):
            d.mkdir(exist_ok=True)
        (b / "rabbitmq-env.conf").write_text("")
        (b / "rabbitmq.conf").write_text(self.config_text())
        (b / "advanced.config").write_text(self.advanced_config_text())
        (b / "enabled_plugins").write_text("[].\n")
        self._start_epmd()

    def _probe(self) -> bool:
        """True once guest can log in over AMQP (the listener opens last in the boot)."""
        conn = amqp.Connection(
            f"{HOST}:{self.port}",
            userid="guest",
            password="guest",
            virtual_host="/",
            connect_timeout=2,
            read_timeout=2,
            write_timeout=2,
        )
        try:
            conn.connect()
        except (OSError, amqp.AMQPError):
            conn.collect()
            return False
        with contextlib.suppress(OSError, amqp.AMQPError):
            conn.close()
        return True

    def _await_ready(self, proc: Managed) -> None:
        try:
            super()._await_ready(proc)
        except HarnessError as e:
            cause = self._boot_failure()
            if cause:
                raise type(e)(f"{e}\nits boot failed with:\n{cause}") from None
            raise

    def _boot_failure(self) -> str:
        """The lines around RabbitMQ's BOOT FAILED banner (the cause comes well before
        the log's last lines), or ""."""
        try:
            lines = self.log_path.read_text(errors="replace").splitlines()
        except OSError:
            return ""
        for i, line in enumerate(lines):
            if "BOOT FAILED" in line:
                return "\n".join(lines[max(0, i - 8) : i + 6])
        return ""

    # --- lifecycle ------------------------------------------------------------------------

    def _abandon(self, proc: Managed | None) -> None:
        self._kill_node(proc)
        self._stop_epmd()

    def stop(self) -> None:
        """Shut the node down (SIGTERM: a clean stop takes ~1.5 s), then its helpers and
        its epmd. Idempotent; nothing of the node runs afterwards."""
        strays = self._strays(self._proc)
        try:
            super().stop()
            self._reap(strays)
        finally:
            self._stop_epmd()

    def restart(self) -> None:
        """Fault: SIGKILL the node (not its epmd), then boot it again on the same ports."""
        proc, self._proc = self._proc, None
        self._kill_node(proc)
        self.start()

    # --- helpers --------------------------------------------------------------------------

    def _kill_node(self, proc: Managed | None) -> None:
        """SIGKILL the node's group, then see its helpers outside the group gone."""
        strays = self._strays(proc)
        if proc is not None:
            proc.kill_group()
        self._reap(strays)

    def _strays(self, proc: Managed | None) -> list[psutil.Process]:
        """The node's processes outside its group (erl_child_setup calls setsid)."""
        if proc is None:
            return []
        try:
            children = psutil.Process(proc.pid).children(recursive=True)
        except psutil.NoSuchProcess:
            return []
        return [p for p in children if _pgid(p) not in (None, proc.pgid)]

    def _reap(self, strays: list[psutil.Process]) -> None:
        """Wait for helpers that exit on their own once beam is gone; kill any that don't."""
        try:
            wait_until(
                lambda: all(_gone(p) for p in strays),
                timeout=STRAY_TIMEOUT,
                what=f"{self.name} helpers {[p.pid for p in strays]} to exit after beam",
            )
        except HarnessError:
            for p in strays:
                with contextlib.suppress(psutil.NoSuchProcess):
                    p.kill()  # psutil checks it is still the same process
            wait_until(
                lambda: all(_gone(p) for p in strays),
                timeout=STRAY_TIMEOUT,
                what=f"{self.name} helpers {[p.pid for p in strays]} to die after SIGKILL",
            )

    def _start_epmd(self) -> None:
        if self._epmd is not None and self._epmd.alive():
            return
        if self._epmd is not None:
            self._epmd.stop()
        _, epmd = _rabbit_binaries()
        proc = spawn(
            [epmd, "-port", str(self.epmd_port), "-address", HOST],
            name="epmd",
            cwd=str(self.run_dir),
            log_path=str(self.run_dir / f"epmd-{self.epmd_port}.log"),
        )
        self._epmd = proc

        def listening() -> bool:
            if not proc.alive():
                raise HarnessError(
                    f"epmd exited with code {proc.popen.returncode} while starting on port "
                    f"{self.epmd_port}; fix the cause shown in its log:\n{proc.log_tail()}"
                )
            try:
                socket.create_connection((HOST, self.epmd_port), timeout=0.5).close()
            except OSError:
                return False
            return True

        wait_until(
            listening,
            timeout=EPMD_START_TIMEOUT,
            what=f"epmd on port {self.epmd_port}",
            interval=0.02,
        )

    def _stop_epmd(self) -> None:
        proc, self._epmd = self._epmd, None
        if proc is not None:
            proc.stop()

    def __repr__(self) -> str:
        return (
            f"<RabbitNode {self.node_name} port={self.port} pid={self.pid} "
            f"consumer_timeout_ms={self.consumer_timeout_ms}>"
        )


def _pgid(p: psutil.Process) -> int | None:
    try:
        return os.getpgid(p.pid)
    except ProcessLookupError:
        return None
