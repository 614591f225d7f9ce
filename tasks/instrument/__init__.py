"""Instrumented clients: every operation on shared state issued by task code is a
scheduling point (``tasks.points.point``) named after the operation and its key.

The helpers below keep point names short and readable across the clients.
"""

from __future__ import annotations

import re

MAX_KEY = 40

# Django's default key function builds "<KEY_PREFIX>:<version>:<key>"
# (django/core/cache/backends/base.py ``default_key_func``). Point names show the key
# the user wrote, so the Django-facing clients strip that prefix.
_DJANGO_PREFIX = re.compile(r"^[^:]*:\d+:")


def short(key: object, *, django: bool = False) -> str:
    """``key`` as text of at most ``MAX_KEY`` characters, for a point name."""
    if isinstance(key, bytes | bytearray | memoryview):
        text = bytes(key).decode("utf-8", errors="replace")
    else:
        text = str(key)
    if django:
        text = _DJANGO_PREFIX.sub("", text, count=1)
    if len(text) > MAX_KEY:
        text = text[: MAX_KEY - 3] + "..."
    return text


def name(system: str, verb: str, key: object = None, *, more: int = 0, django: bool = False) -> str:
    """``"redis SET invoice:o1"``; ``more`` counts further keys of a multi-key command."""
    parts = [system, verb]
    if key is not None:
        parts.append(short(key, django=django))
    if more > 0:
        parts.append(f"(+{more})")
    return " ".join(parts)
