"""The messages of a pipeline's notifications (:mod:`gemini_tuning.notifications`): what one event says, composed
from the run's ids, the gate's decision and per-rule verdicts, and the run's links. Pure (no I/O) except
:func:`run_links`, which reads ``[api] base_url`` when no base URL is given.

What a message never carries: prompt text, model answers, rule reasons or details (free text that can quote
the data), exception messages, credentials, connection ids or hosts.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import quote

from .core.constants import UI_PREFIX

EVENTS = ("promote", "delete", "approval_needed", "failure")
DECISIONS = ("promote", "delete", "no_decision", "rejected")

_NAME = re.compile(r"^[A-Za-z0-9_:.\-]{1,80}$")            # a gate rule's name
_RESOURCE = re.compile(r"^[A-Za-z0-9_./@:\-]{1,300}$")      # a model resource name, a checkpoint id
_CONTROL = re.compile(r"[\x00-\x1f\x7f]+")


# ---------------------------------------------------------------------------------------------- messages
def _one_line(value: Any, limit: int = 250) -> str:
    """``value`` as text on one line (control characters collapsed), at most ``limit`` characters."""
    text = _CONTROL.sub(" ", str(value)).strip()
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _number(value: Any) -> str:
    """A rule's observed value or threshold, if it is a number (anything else is not shown: it could be text)."""
    if value is None:
        return "n/a"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return "nan" if math.isnan(value) else f"{value:.4g}"
    return "(not shown)"


def _decision(value: Any) -> str:
    return value if isinstance(value, str) and value in DECISIONS else "unknown"


def _resource(value: Any) -> str | None:
    return value if isinstance(value, str) and _RESOURCE.match(value) else None


def _candidate(candidate: Any) -> str | None:
    """The candidate's model resource name (and checkpoint), or None when absent or not a plain resource name."""
    if isinstance(candidate, Mapping):
        name = _resource(candidate.get("tuned_model"))
        ckpt = candidate.get("checkpoint_id")
        ckpt = _resource(str(ckpt)) if ckpt not in (None, "", "None") else None
        return f"{name} (checkpoint {ckpt})" if name and ckpt else name
    return _resource(candidate)


def verdict_lines(gate_xcom_or_verdict: dict | None) -> list[str]:
    """One line per gate rule: ``"<name>: PASS|FAIL|SKIPPED (observed <value> vs threshold <value>)"``.

    Only the rule's name, its verdict and its numbers: the reason and details (free text) are left out, a name
    that is not a plain identifier is replaced, and a non-numeric value is "(not shown)", so nothing the
    evaluation saw (prompts, answers) can reach a message.

    :param gate_xcom_or_verdict: the gate's XCom (key ``gate``) or the verdict record (``core.verdict``): both
        carry ``rules``, a list of ``{name, verdict, observed, threshold, ...}``. None or no rules: ``[]``.
    :return: the lines, in the gate's order.
    """
    rules = (gate_xcom_or_verdict or {}).get("rules") if isinstance(gate_xcom_or_verdict, Mapping) else None
    if not isinstance(rules, Sequence) or isinstance(rules, str | bytes):
        return []
    lines = []
    for rule in rules:
        if not isinstance(rule, Mapping):
            continue
        name = rule.get("name")
        name = name if isinstance(name, str) and _NAME.match(name) else "(unnamed rule)"
        verdict = rule.get("verdict")
        verdict = verdict.upper() if verdict in ("pass", "fail", "skipped") else "?"
        lines.append(f"{name}: {verdict} (observed {_number(rule.get('observed'))} vs threshold "
                     f"{_number(rule.get('threshold'))})")
    return lines


_TITLES = {
    "promote": "candidate promoted to champion",
    "delete": "candidate deleted",
    "approval_needed": "approval needed to promote the candidate",
    "failure": "run failed",
}
_LEADS = {
    "promote": "The gate's verdict said promote and the candidate is now the champion.",
    "delete": "The candidate was deleted: the gate's verdict said delete, or a reviewer rejected the promotion.",
    "approval_needed": "The gate's verdict says promote; a reviewer must Approve or Reject it (Airflow's Required "
                       "actions, task 'approval' of this run). No answer before the timeout counts as Reject.",
    "failure": "The run failed. See the run page and the task logs for the cause.",
}


def compose(event: str, *, pipeline_id: str, dag_id: str, run_id: str, decision: str | None,
            verdict_lines: Sequence[str], run_url: str | None, report_url: str | None, candidate: Any = None,
            airflow_run_url: str | None = None, task_id: str | None = None) -> tuple[str, str]:
    """The message of one event: ``(subject, plain-text body)``. Pure: no I/O.

    :param event: one of :data:`EVENTS`.
    :param pipeline_id: the pipeline file's id.
    :param dag_id: the DAG's id.
    :param run_id: the DAG run's id.
    :param decision: the gate's decision (``promote``, ``delete``, ``no_decision``), ``rejected`` (a reviewer's
        Reject), or None (no verdict): anything else is shown as ``unknown``.
    :param verdict_lines: the gate's rules (:func:`verdict_lines`).
    :param run_url: the run's page in the plugin's UI.
    :param report_url: the run's report.
    :param candidate: the candidate (the verdict's ``candidate``, a tuning result, or a model resource name);
        only its model resource name and checkpoint are shown.
    :param airflow_run_url: Airflow's own page of the run.
    :param task_id: the task the event is about (the failed task, for ``failure``).
    :return: the subject (one line) and the body.
    """
    if event not in EVENTS:
        raise ValueError(f"unknown notification event {event!r}; expected one of {', '.join(EVENTS)}")
    pid, dag, run = _one_line(pipeline_id, 120), _one_line(dag_id, 250), _one_line(run_id, 250)
    subject = _one_line(f"[gemini-tuning] {pid}: {_TITLES[event]} (run {run})", 300)
    lines = [_LEADS[event], "", f"Pipeline: {pid}", f"DAG: {dag}", f"Run: {run}", f"Event: {event}",
             f"Decision: {_decision(decision).upper()}"]
    name = _candidate(candidate)
    if name:
        lines.append(f"Candidate: {name}")
    if task_id and _NAME.match(str(task_id)):
        lines.append(f"Task: {task_id}")
    lines += ["", "Gate rules:"]
    rules = [_one_line(x, 200) for x in verdict_lines or ()]
    lines += [f"  - {x}" for x in rules] if rules else ["  (no gate verdict in this run)"]
    links = [(label, _one_line(url, 1000)) for label, url in
             (("Run page", run_url), ("Report", report_url), ("Airflow run", airflow_run_url)) if url]
    if links:
        lines += ["", "Links:"] + [f"  {label}: {url}" for label, url in links]
    return subject, "\n".join(lines) + "\n"


def run_links(dag_id: str, run_id: str, base_url: str | None = None) -> dict[str, str]:
    """The links of a run: ``run_url`` (the plugin's run page), ``report_url``, ``airflow_run_url``.

    :param dag_id: the DAG's id.
    :param run_id: the run's id.
    :param base_url: the api-server's external URL; None: ``[api] base_url`` (empty: the links are paths).
    :return: the three URLs.
    """
    if base_url is None:
        from airflow.configuration import conf

        base_url = conf.get("api", "base_url", fallback=None) or ""
    base = base_url.rstrip("/")
    dag, run = quote(dag_id, safe=""), quote(run_id, safe="")
    return {"run_url": f"{base}{UI_PREFIX}/runs/{dag}/{run}", "report_url": f"{base}{UI_PREFIX}/report/{dag}/{run}",
            "airflow_run_url": f"{base}/dags/{dag}/runs/{run}"}
