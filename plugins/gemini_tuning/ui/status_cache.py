"""At most one status request per job per ``ttl`` seconds, however many people look, and none for a finished job.

The api-server may run several worker processes; the cache is a directory of small JSON files (one per job,
written atomically) with an exclusive ``flock`` around the refresh, so concurrent viewers in any process of
one host wait for the one request in flight and then read its answer. A job in a terminal state is kept and never
asked about again. A failed request is cached too (with its error) so a broken service is not hammered.
Several api-server *hosts* each keep their own cache: the bound is per host.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import time
from collections.abc import Callable
from pathlib import Path

from ..core.polling import PollState
from ..core.states import TERMINAL_STATES

Fetch = Callable[[str, str], dict]     # (backend, poll name) -> JobStatus.summary()


class StatusCache:
    """One cache directory of job statuses.

    :param directory: where the entries live (created).
    :param fetch: asks the service: (backend, poll name) -> a ``JobStatus.summary()``.
    :param ttl: how long an entry of a job that is not terminal stays fresh, in seconds.
    :param clock: the time function, epoch seconds (tests pass a fake one).
    """

    def __init__(self, directory: str | os.PathLike, fetch: Fetch, ttl: float = 30.0, clock=time.time):
        self.dir = Path(directory)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.fetch = fetch
        self.ttl = float(ttl)
        self.clock = clock

    def _path(self, backend: str, ref: str) -> Path:
        return self.dir / (hashlib.sha256(f"{backend}\0{ref}".encode()).hexdigest()[:32] + ".json")

    @staticmethod
    def _read(path: Path) -> dict | None:
        try:
            return json.loads(path.read_text())
        except (OSError, ValueError):
            return None

    def _fresh(self, entry: dict | None) -> bool:
        return bool(entry) and (entry.get("terminal") or self.clock() - entry.get("at", 0) < self.ttl)

    def get(self, backend: str, ref: str) -> dict:
        """``{"at", "status" (a JobStatus summary or None), "terminal", "error", "eta_seconds", "requests"}``."""
        path = self._path(backend, ref)
        entry = self._read(path)
        if self._fresh(entry):
            return entry
        with open(path.with_suffix(".lock"), "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)          # one refresh at a time; the others wait, then read it
            entry = self._read(path)
            if self._fresh(entry):
                return entry
            entry = self._refresh(backend, ref, entry or {})
            tmp = path.with_suffix(f".tmp{os.getpid()}")
            tmp.write_text(json.dumps(entry, default=str))
            os.replace(tmp, path)
            return entry

    def _refresh(self, backend: str, ref: str, old: dict) -> dict:
        now = self.clock()
        entry = {"at": now, "status": old.get("status"), "terminal": False, "error": None,
                 "requests": int(old.get("requests") or 0) + 1, "first": old.get("first"), "eta_seconds": None}
        try:
            status = self.fetch(backend, ref)
        except Exception as exc:  # noqa: BLE001 - shown on the page, retried after ttl
            entry["error"] = f"{type(exc).__name__}: {exc}"[:500]
            return entry
        entry["status"] = status
        entry["terminal"] = status.get("state") in TERMINAL_STATES
        poll = PollState(first=tuple(entry["first"]) if entry.get("first") else None)
        entry["eta_seconds"] = poll.eta(now, status.get("progress_percent"))
        entry["first"] = list(poll.first) if poll.first else None
        return entry
