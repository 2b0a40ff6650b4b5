"""Polling until something holds; a timeout fails the test with what was last seen."""

from __future__ import annotations

import time


def wait_until(get, done, timeout: float = 60.0, interval: float = 0.2):
    """Polls ``get()`` until ``done(value)``; fails the test with the last value on timeout."""
    deadline = time.monotonic() + timeout
    while True:
        obj = get()
        if done(obj):
            return obj
        assert time.monotonic() < deadline, f"timed out waiting; last: {obj}"
        time.sleep(interval)


def wait_for(predicate, timeout: float, what: str, interval: float = 0.5):
    """Polls ``predicate()`` until it returns something truthy (returned); fails the test naming ``what``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out waiting for {what}")
