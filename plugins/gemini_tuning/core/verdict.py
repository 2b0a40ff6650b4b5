"""The verdict record: what the gate decided, about exactly which candidate, against which champion, under which
policy. Pure (no Airflow, no network); the operators read and write it in GCS beside the run's results.

Purpose
    The product's one promise is that only a model that beat the champion under the pipeline's policy reaches
    production. DAG wiring alone cannot keep that promise (a trigger rule, a cleared task or a bug can start
    ``promote``), so the steps that act on a candidate check the record themselves: defence in depth.
How it works
    The gate writes one record per decision (:func:`build_verdict`), whose ``verdict_id`` is a hash of its
    content. ``promote`` refuses unless :func:`check_promotion` passes: the record exists, is this run's, says
    ``promote``, names exactly the candidate (model version and checkpoint) it is about to promote and the champion
    pointer generation it is about to swap from, and was judged under the policy (gate configuration) ``promote``
    was given; when the run has an approval step, a human's (or the automatic) approval bound to that same
    ``verdict_id``. The deletes check :func:`check_deletion`: a ``delete`` verdict, or a rejection bound to a
    ``promote`` verdict, about this candidate.
What it does not do
    Sign anything: whoever can write the run's GCS prefix can write a record. The check protects the promise
    against faults, wiring and people who can only trigger runs, not against someone with write access to the
    bucket (they could move the pointer directly).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any

KIND = "gemini_tuning_verdict"
VERSION = 1
PROMOTE, DELETE, NO_DECISION = "promote", "delete", "no_decision"


class VerdictRefused(Exception):
    """A step that would act on a candidate found no verdict that allows it (the message says what is missing)."""


def _canonical(obj: Any) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str).encode()


def policy_hash(policy: Mapping[str, Any]) -> str:
    """``sha256:<hex>`` of the resolved gate configuration (``GateConfig.to_dict()``), key order independent."""
    return "sha256:" + hashlib.sha256(_canonical(dict(policy))).hexdigest()


def promotion_candidate(candidate: Mapping[str, Any] | None, evaluation: Mapping[str, Any] | None) -> dict:
    """What a promotion would make champion: the tuning result, with the evaluation's chosen checkpoint (its
    endpoint and id) when it scored every checkpoint. Raises :class:`VerdictRefused` without a tuned model."""
    if not isinstance(candidate, Mapping) or not isinstance(candidate.get("tuned_model"), str) \
            or not candidate.get("tuned_model"):
        raise VerdictRefused(f"no candidate: the tuning step produced no tuned model ({_short(candidate)})")
    cand = dict(candidate)
    best = (evaluation or {}).get("best_checkpoint") if isinstance(evaluation, Mapping) else None
    if isinstance(best, Mapping) and best.get("checkpoint_id") is not None:
        cand.update(endpoint=best.get("endpoint"), checkpoint_id=str(best["checkpoint_id"]))
    return cand


def identity(candidate: Mapping[str, Any]) -> dict:
    """The fields that name a candidate: backend, model version, checkpoint (None: the version's default)."""
    ckpt = candidate.get("checkpoint_id")
    return {"backend": candidate.get("backend"), "tuned_model": candidate.get("tuned_model"),
            "checkpoint_id": None if ckpt in (None, "", "None") else str(ckpt)}


def build_verdict(*, decision: str, summary: str, rules: list, candidate: Mapping[str, Any],
                  champion_generation: int, champion_model: str | None, policy: Mapping[str, Any],
                  dag_id: str, run_id: str, decided_at: str, results_uri: str | None = None,
                  pipeline: Mapping[str, Any] | None = None) -> dict:
    """The record the gate writes. ``verdict_id`` hashes everything else in it.

    :param pipeline: the reviewed pipeline file the run was built from (``id``, ``file``, ``revision``: the
        file's content hash, ``policy_hash``: the hash of its ``policy:`` section); None for a DAG built in code.
        Recorded (and hashed) so every promotion can be traced to the reviewed policy it was judged by.
    """
    if decision not in (PROMOTE, DELETE, NO_DECISION):
        raise ValueError(f"unknown decision {decision!r}")
    body = {"kind": KIND, "version": VERSION, "dag_id": dag_id, "run_id": run_id, "decided_at": decided_at,
            "decision": decision, "summary": summary, "rules": list(rules),
            "candidate": {**identity(candidate), "endpoint": candidate.get("endpoint")},
            "champion": {"generation": int(champion_generation), "tuned_model": champion_model},
            "policy": dict(policy), "policy_hash": policy_hash(policy), "results_uri": results_uri,
            "pipeline": dict(pipeline) if pipeline else None}
    return {**body, "verdict_id": hashlib.sha256(_canonical(body)).hexdigest()[:24]}


def _short(value: Any, n: int = 120) -> str:
    text = json.dumps(value, default=str) if not isinstance(value, str) else value
    return text if len(text) <= n else text[: n - 3] + "..."


def check_record(verdict: Any, *, dag_id: str, run_id: str, where: str) -> dict:
    """The record is well formed, intact (its ``verdict_id`` matches its content) and this run's."""
    if verdict is None:
        raise VerdictRefused(f"no verdict record at {where}: the gate has not decided in this run")
    if not isinstance(verdict, Mapping) or verdict.get("kind") != KIND:
        raise VerdictRefused(f"{where} is not a verdict record ({_short(verdict)})")
    body = {k: v for k, v in verdict.items() if k != "verdict_id"}
    if hashlib.sha256(_canonical(body)).hexdigest()[:24] != verdict.get("verdict_id"):
        raise VerdictRefused(f"{where}: the verdict record was changed after the gate wrote it (its verdict_id "
                             "does not match its content)")
    if (verdict.get("dag_id"), verdict.get("run_id")) != (dag_id, run_id):
        raise VerdictRefused(f"{where} is the verdict of {verdict.get('dag_id')}/{verdict.get('run_id')}, not of "
                             f"this run ({dag_id}/{run_id})")
    return dict(verdict)


def _same_candidate(verdict: Mapping[str, Any], candidate: Mapping[str, Any], what: str) -> None:
    judged, now = {k: (verdict.get("candidate") or {}).get(k) for k in ("backend", "tuned_model", "checkpoint_id")}, \
        identity(candidate)
    if judged != now:
        raise VerdictRefused(f"the verdict is about {judged}, but {what} {now}")


def check_promote_verdict(verdict: Any, *, dag_id: str, run_id: str, where: str) -> dict:
    """:func:`check_record`, and the record says ``promote``."""
    v = check_record(verdict, dag_id=dag_id, run_id=run_id, where=where)
    if v.get("decision") != PROMOTE:
        raise VerdictRefused(f"the gate's verdict is {str(v.get('decision')).upper()}, not PROMOTE: "
                             f"{v.get('summary')}")
    return v


def check_promotion(verdict: Any, *, candidate: Mapping[str, Any], champion_generation: int,
                    policy: Mapping[str, Any] | None, dag_id: str, run_id: str, where: str,
                    approval: Mapping[str, Any] | None = None, approval_required: bool = False,
                    pipeline: Mapping[str, Any] | None = None) -> dict:
    """Raise :class:`VerdictRefused` unless ``verdict`` allows promoting exactly ``candidate`` from the champion
    pointer at ``champion_generation`` under ``policy``; with ``approval_required``, ``approval`` (the approval
    step's result) must approve this very verdict; with ``pipeline``, the verdict must have been judged under that
    reviewed pipeline file (same id, revision and policy hash). Returns the record."""
    v = check_promote_verdict(verdict, dag_id=dag_id, run_id=run_id, where=where)
    _same_candidate(v, candidate, "promote would promote")
    judged_gen = (v.get("champion") or {}).get("generation")
    if judged_gen != int(champion_generation):
        raise VerdictRefused(f"the verdict compared the candidate with the champion pointer at generation "
                             f"{judged_gen}, but promote would swap from generation {champion_generation}")
    if policy is not None and policy_hash(policy) != v.get("policy_hash"):
        raise VerdictRefused(f"the verdict was judged under policy {v.get('policy_hash')}, but promote was given "
                             f"policy {policy_hash(policy)}")
    if pipeline:
        judged = {k: (v.get("pipeline") or {}).get(k) for k in ("id", "revision", "policy_hash")}
        expected = {k: pipeline.get(k) for k in ("id", "revision", "policy_hash")}
        if judged != expected:
            raise VerdictRefused(f"the verdict was judged under pipeline file {judged}, but promote belongs to "
                                 f"{expected}")
    if approval_required:
        if not isinstance(approval, Mapping):
            raise VerdictRefused("no approval: the approval step has not approved this run's verdict")
        if approval.get("verdict_id") != v["verdict_id"]:
            raise VerdictRefused(f"the approval was given for verdict {approval.get('verdict_id')}, not for the "
                                 f"current verdict {v['verdict_id']} (ask again: clear the approval task)")
        if approval.get("approved") is not True:
            raise VerdictRefused(f"the approval step answered {approval.get('chosen')!r}, not Approve")
    return v


def check_deletion(verdict: Any, *, candidate: Mapping[str, Any], dag_id: str, run_id: str, where: str,
                   allowed: tuple[str, ...] = ("delete", "reject"),
                   approval: Mapping[str, Any] | None = None) -> str:
    """Raise :class:`VerdictRefused` unless this candidate was doomed: a ``delete`` verdict about it (``"delete"``
    in ``allowed``), or a ``promote`` verdict about it that the approval step rejected (``"reject"`` in
    ``allowed``; the rejection must be bound to that verdict). Returns ``"delete"`` or ``"reject"``."""
    v = check_record(verdict, dag_id=dag_id, run_id=run_id, where=where)
    judged = (v.get("candidate") or {}).get("tuned_model")
    if judged != candidate.get("tuned_model"):
        raise VerdictRefused(f"the verdict is about {judged}, not {candidate.get('tuned_model')}")
    if v.get("decision") == DELETE and "delete" in allowed:
        return "delete"
    if v.get("decision") == PROMOTE and "reject" in allowed and isinstance(approval, Mapping) \
            and approval.get("approved") is False and approval.get("verdict_id") == v["verdict_id"]:
        return "reject"
    if v.get("decision") == NO_DECISION:
        why = "the gate made no decision (an outage or too few scored prompts): it is kept for a rerun"
    elif v.get("decision") == PROMOTE:
        why = "it passed the gate" + (" and no approval bound to that verdict rejected it" if "reject" in allowed
                                      else "")
    else:
        why = f"the verdict is {v.get('decision')!r}"
    raise VerdictRefused(f"keeping {candidate.get('tuned_model')}: {why}")
