"""Fault injection: per-route rules (HTTP errors with Retry-After, connection resets, latency, stalls) and planned
job failures. Rules are set at start (``--faults``) and at runtime through ``/_emulator/faults``.

A rule:  {"kind": "status"|"reset"|"latency"|"stall", "path": "<regex searched in the path>", "method": "GET",
          "status": 503, "message": "...", "retry_after": 2, "count": 3, "probability": 1.0, "delay_s": 0.5}
``count`` is how many times the rule fires before it is exhausted (null = forever). ``latency`` rules delay and
let the request go on (several can add up); the first matching ``status``/``reset``/``stall`` rule ends it.
``reset_after``/``stall_after`` let the request be *processed* and then drop or hold the response: the call went
through but the client never hears of it (a create whose answer is lost).
"""

from __future__ import annotations

import random
import re
import threading
from dataclasses import asdict, dataclass, field

from .errors import STATUS_BY_CODE

KINDS = ("status", "reset", "latency", "stall", "reset_after", "stall_after")


@dataclass
class FaultRule:
    kind: str
    path: str = ".*"
    method: str | None = None
    status: int = 503
    message: str | None = None
    retry_after: float | None = None
    count: int | None = None
    probability: float = 1.0
    delay_s: float = 0.0
    id: int = 0
    hits: int = 0
    _rx: re.Pattern | None = field(default=None, repr=False, compare=False)

    def __post_init__(self):
        if self.kind not in KINDS:
            raise ValueError(f"unknown fault kind {self.kind!r}; expected one of {KINDS}")
        if self.kind == "status" and self.status not in STATUS_BY_CODE:
            raise ValueError(f"unsupported status {self.status}")
        if not 0.0 <= self.probability <= 1.0:
            raise ValueError("probability must be within [0, 1]")
        if self.kind in ("stall", "stall_after") and not self.delay_s:
            self.delay_s = 3600.0
        self._rx = re.compile(self.path)

    @property
    def exhausted(self) -> bool:
        return self.count is not None and self.hits >= self.count

    def to_dict(self) -> dict:
        d = asdict(self)
        d.pop("_rx", None)
        d["remaining"] = None if self.count is None else max(0, self.count - self.hits)
        return d


@dataclass
class JobFailurePlan:
    """Makes the next ``count`` tuning jobs whose display name matches ``match`` fail at ``at_fraction`` of training."""

    match: str = ".*"
    count: int | None = 1
    at_fraction: float = 0.5
    code: int = 13
    message: str = "Internal error encountered while tuning. Please retry."
    applied: int = 0

    def to_dict(self) -> dict:
        return asdict(self)


class Faults:
    def __init__(self, seed: int = 0):
        self._lock = threading.Lock()
        self._rng = random.Random(seed)
        self._next_id = 1
        self.rules: list[FaultRule] = []
        self.job_failures: list[JobFailurePlan] = []

    def add(self, spec: dict) -> FaultRule:
        spec = {k: v for k, v in spec.items() if k in FaultRule.__dataclass_fields__ and not k.startswith("_")}
        spec.pop("hits", None)
        with self._lock:
            spec["id"] = self._next_id
            self._next_id += 1
            rule = FaultRule(**spec)
            self.rules.append(rule)
        return rule

    def add_job_failure(self, spec: dict) -> JobFailurePlan:
        plan = JobFailurePlan(**{k: v for k, v in spec.items() if k in JobFailurePlan.__dataclass_fields__})
        re.compile(plan.match)
        with self._lock:
            self.job_failures.append(plan)
        return plan

    def clear(self) -> None:
        with self._lock:
            self.rules.clear()
            self.job_failures.clear()

    def match(self, method: str, path: str) -> tuple[float, FaultRule | None]:
        """Returns (added latency in seconds, the terminal rule that fires or None)."""
        delay = 0.0
        with self._lock:
            for rule in self.rules:
                if rule.exhausted or (rule.method and rule.method.upper() != method.upper()):
                    continue
                if not rule._rx.search(path):
                    continue
                if rule.probability < 1.0 and self._rng.random() >= rule.probability:
                    continue
                rule.hits += 1
                if rule.kind == "latency":
                    delay += rule.delay_s
                    continue
                return delay, rule
        return delay, None

    def take_job_failure(self, display_name: str) -> JobFailurePlan | None:
        with self._lock:
            for plan in self.job_failures:
                if plan.count is not None and plan.applied >= plan.count:
                    continue
                if re.search(plan.match, display_name or ""):
                    plan.applied += 1
                    return plan
        return None

    def to_dict(self) -> dict:
        with self._lock:
            return {"rules": [r.to_dict() for r in self.rules],
                    "job_failures": [p.to_dict() for p in self.job_failures]}
