"""Errors the harness raises: each message is one sentence that names the fix."""

from __future__ import annotations


class HarnessError(Exception):
    """The harness could not set up or drive what a test asked for."""


class MissingBinary(HarnessError):
    """A server binary the harness needs is not installed."""


class HarnessTimeout(HarnessError):
    """Something the harness waited for did not happen in time."""
