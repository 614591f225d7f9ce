"""The harness's private RabbitMQ node: it answers, enforces its short consumer_timeout,
and leaves nothing behind.

Why a private node: the suite checks that RabbitMQ's ``consumer_timeout`` closes a
channel whose delivery stays unacked too long and requeues everything on it. In 3.10
that timeout is node-wide, and the machine's service is shared, so the harness boots a
node of its own with a 2 s timeout and a 100 ms channel tick. These tests pin what the
suite relies on: the close (406 PRECONDITION_FAILED, channel only, the connection
lives), the requeue with the redelivered flag, and clean stops, also when the test
process is SIGKILLed. Each boot costs 4-10 s, so (a) and (b) share one node.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import amqp
import kombu
import psutil
import pytest

from harness.procs import wait_until
from harness.rabbit import RabbitNode

pytestmark = pytest.mark.servers

ROOT = Path(__file__).resolve().parents[2]
CONSUMER_TIMEOUT_MS = 2000
SLACK_S = 3.0  # scheduling delays on two busy cores

# Boots a node under the suite's cleanup, prints its processes, then waits to be killed.
CHILD = """
import sys, tempfile, time
from harness import procs
from harness.rabbit import RabbitNode
procs.install_cleanup()
node = RabbitNode(tempfile.mkdtemp(dir=sys.argv[1]), consumer_timeout_ms=2000).start()
print(" ".join(str(p.pid) for p in node.processes()), flush=True)
time.sleep(600)
"""


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RabbitNode]:
    with RabbitNode(
        tmp_path_factory.mktemp("rabbit"), consumer_timeout_ms=CONSUMER_TIMEOUT_MS
    ) as n:
        yield n


def _alive(procs: list[psutil.Process]) -> list[psutil.Process]:
    alive = []
    for p in procs:
        try:
            if p.is_running() and p.status() != psutil.STATUS_ZOMBIE:
                alive.append(p)
        except psutil.NoSuchProcess:
            pass
    return alive


def _registered_on_shared_epmd(node_name: str) -> bool:
    epmd = shutil.which("epmd")
    if epmd is None:
        return False
    env = {k: v for k, v in os.environ.items() if not k.startswith("ERL_")}
    out = subprocess.run([epmd, "-names"], env=env, capture_output=True, text=True, timeout=5)
    return f"name {node_name.split('@')[0]} " in out.stdout


def test_node_accepts_a_kombu_connection(node: RabbitNode) -> None:
    assert node.url() == f"amqp://guest:guest@127.0.0.1:{node.port}//"
    queue = f"hello-{uuid.uuid4().hex}"
    with kombu.Connection(node.url(), connect_timeout=5) as conn:
        conn.connect()
        q = conn.SimpleQueue(queue)
        q.put({"hello": 1})
        msg = q.get(timeout=5)
        assert msg.payload == {"hello": 1}
        msg.ack()
        q.close()
        conn.default_channel.queue_delete(queue)
    assert not _registered_on_shared_epmd(node.node_name)


def test_unacked_delivery_closes_its_channel_and_is_requeued(node: RabbitNode) -> None:
    queue = f"ct-{uuid.uuid4().hex}"
    with kombu.Connection(node.url(), connect_timeout=5) as conn:
        conn.default_channel.queue_declare(queue, auto_delete=False)
        producer = conn.Producer()
        for n in (1, 2):
            producer.publish({"n": n}, routing_key=queue, serializer="json")

        deliveries: list[tuple[float, Any]] = []
        channel = conn.channel()
        channel.basic_qos(0, 2, False)
        consumer = kombu.Consumer(
            channel,
            queues=[kombu.Queue(queue, no_declare=True)],
            callbacks=[lambda body, message: deliveries.append((time.monotonic(), message))],
        )
        consumer.consume()
        deadline = time.monotonic() + node.timeout_detection_s + SLACK_S
        with pytest.raises(amqp.exceptions.PreconditionFailed) as raised:
            while time.monotonic() < deadline:
                with contextlib.suppress(TimeoutError):
                    conn.drain_events(timeout=0.1)
        closed_at = time.monotonic()

        assert [m.payload for _, m in deliveries] == [{"n": 1}, {"n": 2}]
        assert [m.delivery_info["redelivered"] for _, m in deliveries] == [False, False]
        assert raised.value.reply_code == 406
        assert "delivery acknowledgement on channel" in str(raised.value)
        assert f"Timeout value used: {CONSUMER_TIMEOUT_MS} ms" in str(raised.value)
        elapsed = closed_at - deliveries[0][0]
        assert CONSUMER_TIMEOUT_MS / 1000 - 0.25 <= elapsed <= node.timeout_detection_s + 1.0

        # Only the channel is closed; the broker requeues its unacked deliveries as it
        # tears the channel down, just after the close.
        assert conn.connected
        check = conn.channel()
        wait_until(
            lambda: check.queue_declare(queue, passive=True).message_count == 2,
            timeout=5,
            what=f"both deliveries back in {queue}",
            interval=0.05,
        )
        again = [check.basic_get(queue, no_ack=True) for _ in range(2)]
        assert [m.delivery_info["redelivered"] for m in again] == [True, True]
        assert sorted(json.loads(m.body)["n"] for m in again) == [1, 2]
        check.queue_delete(queue)


def test_stop_leaves_no_process_behind(tmp_path: Path) -> None:
    node = RabbitNode(tmp_path, consumer_timeout_ms=CONSUMER_TIMEOUT_MS).start()
    started = node.processes()
    names = {p.name() for p in started}
    assert {"beam.smp", "epmd", "erl_child_setup"} <= names, names
    # erl_child_setup calls setsid: the node's group alone would miss it.
    assert any(os.getpgid(p.pid) != node.pid for p in started if p.name() != "epmd")
    node.stop()
    assert _alive(started) == []
    assert node.processes() == []
    assert not _registered_on_shared_epmd(node.node_name)
    node.stop()  # idempotent


def test_a_sigkilled_test_process_leaves_no_node_behind(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(tmp_path)],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert child.stdout is not None
    try:
        line = child.stdout.readline()
        assert line, "the child exited before its node was up"
        started = [psutil.Process(int(pid)) for pid in line.split()]
        assert {p.name() for p in started} >= {"beam.smp", "epmd", "erl_child_setup"}
    finally:
        os.kill(child.pid, signal.SIGKILL)
        child.wait(5)
        child.stdout.close()
    wait_until(lambda: not _alive(started), timeout=10, what="the node's processes to die")
