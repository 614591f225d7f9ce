"""The agent: each worker process's own connection to the controller.

Every process of a worker (the main process, and each prefork child) opens an agent
connection and says hello: that is how the harness discovers processes by role, knows
the worker is ready, and sees a process die (its connection closes). The main
process also reads the controller's commands on it (``Agent.commands``).
"""

from __future__ import annotations

import json
import os
import socket
import threading
from typing import Any

from celery import signals

from tasks import points


class Agent:
    def __init__(self, worker: str) -> None:
        self.worker = worker  # the hostname every message names
        self.sock: socket.socket | None = None

    def hello(self, role: str) -> None:
        """Open this process's agent connection and announce it to the controller."""
        if self.sock is not None:  # inherited from the parent across fork: not ours
            self.sock.close()
        address = points.control_address()
        if address is None:
            return
        index: Any = None
        if role == "child":
            from billiard.process import current_process

            index = getattr(current_process(), "index", None)
        self.sock = socket.create_connection(address, timeout=10)
        self.sock.settimeout(None)  # the command reader waits as long as the worker lives
        msg = {
            "t": "hello",
            "role": role,
            "pid": os.getpid(),
            "worker": self.worker,
            "index": index,
        }
        self.sock.sendall(json.dumps(msg).encode() + b"\n")

    def child_hello(self, **_: Any) -> None:
        self.hello("child")

    def main_hello(self, sender: Any = None, **_: Any) -> None:
        self.hello("main")
        if self.sock is not None and sender is not None:
            threading.Thread(target=self.commands, args=(sender, self.sock), daemon=True).start()

    def commands(self, consumer: Any, sock: socket.socket) -> None:
        """The controller's commands to this worker, over the agent connection.

        ``adopt``: consume one more queue (a standby taking over a dead worker's queue).
        ``wake``: make the event loop look at its work now. ``drop``: lose the broker.
        The controller's own channel, not Celery's remote control: a broadcast sent just
        after the worker says it is ready can miss the pidbox (Redis PUB/SUB delivers to
        subscribers only), and the reply says when the consumer really consumes."""
        for line in sock.makefile("rb"):
            msg = json.loads(line)
            if msg.get("t") == "adopt":
                consumer.call_soon(self.adopt, consumer, sock, msg["queue"])
            elif msg.get("t") == "wake":
                # From this thread the hub writes its waker: the loop runs what it has
                # ready and fires due timers now, not after its poll's timeout (up to
                # 10 s: kombu/asynchronous/hub.py fire_timers max_delay). A solo worker
                # on AMQP waits that long when it ran a task inside a ready callback
                # (_quick_drain at start, adopt): the task's ack, queued with call_soon
                # from the loop thread, wakes nothing (celery/worker/loops.py asynloop).
                consumer.call_soon(_nothing)
            elif msg.get("t") == "drop":
                # In the event loop, like adopt: the loop is what reconnects, so no fd
                # listed here is closed or reused while the drop walks them.
                consumer.call_soon(self.drop, consumer, sock)

    def adopt(self, consumer: Any, sock: socket.socket, queue: str) -> None:
        consumer.app.amqp.queues[queue]  # declared as the sender declares it (x-expires)
        consumer.add_task_queue(queue)
        reply = {"t": "adopted", "queue": queue, "worker": self.worker}
        sock.sendall(json.dumps(reply).encode() + b"\n")

    def drop(self, consumer: Any, sock: socket.socket) -> None:
        """Lose the broker: shut down every TCP connection this process has to the
        broker's port, as a network failure or a broker-side close would. Celery and
        kombu see the error on their next read and reconnect on their own."""
        import psutil
        from kombu.utils.url import urlparse

        port = urlparse(consumer.app.conf.broker_url).port
        dropped = 0
        for conn in psutil.Process().net_connections(kind="tcp"):
            if conn.raddr and conn.raddr.port == port and conn.fd != -1:
                try:
                    s = socket.socket(fileno=conn.fd)
                except OSError:
                    continue  # closed since it was listed
                try:
                    s.shutdown(socket.SHUT_RDWR)
                    dropped += 1
                except OSError:
                    pass  # already shut
                finally:
                    s.detach()  # the fd stays the library's
        msg = {"t": "dropped", "worker": self.worker, "n": dropped}
        sock.sendall(json.dumps(msg).encode() + b"\n")


def _nothing() -> None:
    pass


def install(worker: str) -> Agent:
    """Say hello from every process of the worker (``worker_process_init`` in each
    prefork child, ``worker_ready`` in the main process, which then reads commands)."""
    agent = Agent(worker)
    signals.worker_process_init.connect(agent.child_hello, weak=False)
    signals.worker_ready.connect(agent.main_hello, weak=False)
    return agent
