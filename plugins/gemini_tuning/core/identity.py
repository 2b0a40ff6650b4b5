"""Idempotence for paid calls: a run-stable identity key, an input fingerprint, and the decision what to do with
a job found from an earlier try.

The key comes from (dag, task, run, map index), never the try number, so every retry of one task instance maps to
the same job. The fingerprint covers every input that changes what would be trained, so a re-expanded mapped task
or an edited DAG that reuses a map index is noticed (apache/airflow #72788).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Literal

from .states import JobStatus

KEY_LABEL = "gemini-tuning-key"
FINGERPRINT_LABEL = "gemini-tuning-fp"
ATTEMPT_LABEL = "gemini-tuning-attempt"


def identity_key(dag_id: str, task_id: str, run_id: str, map_index: int | None) -> str:
    raw = json.dumps([dag_id, task_id, run_id, -1 if map_index is None else int(map_index)])
    return "k" + hashlib.sha256(raw.encode()).hexdigest()[:20]


def fingerprint(inputs: dict) -> str:
    """Stable hash of the job's inputs (canonical JSON: sorted keys, no whitespace)."""
    raw = json.dumps(inputs, sort_keys=True, separators=(",", ":"), default=str)
    return "f" + hashlib.sha256(raw.encode()).hexdigest()[:20]


Action = Literal["create", "reattach", "return", "cancel_and_create", "fail"]
FingerprintPolicy = Literal["cancel_and_resubmit", "fail"]


@dataclass(frozen=True)
class Decision:
    """What a (re)try does about the job an earlier try started (:func:`decide_launch`).

    :param action: ``create``, ``reattach`` (to a running job), ``return`` (it already succeeded),
        ``cancel_and_create`` (inputs changed) or ``fail``.
    :param reason: one sentence saying why, for the task log.
    """

    action: Action
    reason: str


def decide_launch(existing: JobStatus | None, existing_fingerprint: str | None, fingerprint_now: str,
           policy: FingerprintPolicy) -> Decision:
    """What to do on (re)try given the job an earlier try started (None: no job)."""
    if existing is None:
        return Decision("create", "no earlier job for this task instance")
    same = existing_fingerprint == fingerprint_now
    if not same:
        if existing.terminal:
            return Decision("create", f"inputs changed since {existing.name} ({existing.state}); creating a new job")
        if policy == "fail":
            return Decision("fail", f"inputs changed while {existing.name} is still {existing.state} "
                                    f"(fingerprint {existing_fingerprint} -> {fingerprint_now}); "
                                    "on_fingerprint_change='fail'")
        return Decision("cancel_and_create", f"inputs changed while {existing.name} is {existing.state}: "
                                             "cancelling it and submitting a new job")
    if existing.succeeded:
        return Decision("return", f"{existing.name} already succeeded with these inputs")
    if existing.terminal:
        return Decision("create", f"{existing.name} ended {existing.state}; creating a new job")
    return Decision("reattach", f"{existing.name} is {existing.state} with the same inputs; reattaching")
