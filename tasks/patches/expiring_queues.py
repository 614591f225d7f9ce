"""Queues that vanish once unused, so a killed test run leaves nothing on a shared broker.

On a shared RabbitMQ every queue the suite creates carries ``x-expires``. Celery
declares a queue it was not configured with through ``Queues.new_missing``
(celery/app/amqp.py); the sender, the workers and the harness all import
``tasks.app``, so every declaration of a queue carries the same arguments (RabbitMQ
refuses a redeclaration with different ones).
"""

from __future__ import annotations

from typing import Any


def install(ms: int) -> None:
    """Give every queue Celery makes on the fly ``x-expires: ms``; nothing if 0."""
    if not ms:
        return
    from celery.app import amqp

    plain = amqp.Queues.new_missing

    def new_missing(self: Any, name: str) -> Any:
        queue = plain(self, name)
        queue.queue_arguments = {**(queue.queue_arguments or {}), "x-expires": ms}
        return queue

    amqp.Queues.new_missing = new_missing
