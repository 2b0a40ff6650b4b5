"""Notifications of a pipeline's runs: promote, delete, approval needed and failure, through Airflow's notifiers.

A pipeline file's ``notifications:`` section::

    notifications:
      events: [promote, delete, approval_needed, failure]
      smtp: {to: [ml-support@example.com], conn_id: smtp_default}    # optional (from_email: optional too)
      webhook: {conn_id: gemini_tuning_webhook}                      # optional: an Airflow HTTP connection
                                                                     # (endpoint: optional path under its host)

Each event becomes a :class:`GeminiTuningNotifier` (an Airflow ``BaseNotifier``). When Airflow calls it, it reads
the run from the context (the gate's decision and per-rule verdicts from XCom ``gate``, the DAG and run ids),
composes one message (:func:`compose`, pure) and sends it through the configured channels: e-mail with the SMTP
provider's ``SmtpNotifier``, a JSON POST with the HTTP provider's ``HttpNotifier`` (both called with the composed
text as is: it is never rendered as a Jinja template). A channel that fails (server down, refused, bad
connection) is logged as a warning and skipped: a notification never fails a task, never holds one back, never
changes a decision.

Which Airflow hook each event is attached to:

============== ====================================================== ========================================
event          task(s)                                                Airflow hook
============== ====================================================== ========================================
promote        ``promote``                                            ``on_success_callback``
delete         ``delete``, ``delete_rejected`` (decision "rejected")  ``on_success_callback``
approval_needed ``approval``                                          ``notifiers=`` of ``HITLOperator``: called
                                                                      only when the task really waits for a
                                                                      human (``require_approval``)
failure        the DAG                                                ``on_failure_callback`` (the DAG run
                                                                      failed)
============== ====================================================== ========================================

**How the DAG factory uses it** (``dags/gemini_tuning_pipelines.py``, one DAG per pipeline file; ``spec`` is the
parsed YAML, ``pid`` the pipeline's id)::

    from gemini_tuning.notifications import callbacks_for_task, dag_callbacks

    notes = spec.get("notifications") or {}
    with DAG(dag_id=..., ..., **dag_callbacks(notes, pid)) as dag:
        ...
        approval = GeminiApprovalOperator(task_id="approval", ..., **callbacks_for_task(notes, pid, "approval"))
        promote = GeminiPromoteOperator(task_id="promote", ..., **callbacks_for_task(notes, pid, "promote"))
        delete = GeminiDeleteTunedModelOperator(task_id="delete", ..., **callbacks_for_task(notes, pid, "delete"))
        delete_rejected = GeminiDeleteTunedModelOperator(task_id="delete_rejected", ...,
                                                         **callbacks_for_task(notes, pid, "delete_rejected"))

Every other task gets ``{}``, so ``**callbacks_for_task(notes, pid, task_id)`` can be passed to every operator.
A task that already has an ``on_success_callback`` (or a DAG that has an ``on_failure_callback``) must merge the
lists itself (``[*mine, *callbacks_for_task(...)["on_success_callback"]]``). An invalid section (an unknown event
or key, an e-mail channel without recipients, a webhook without ``conn_id``) raises ``ValueError`` at parse
time: a typo must not silently switch notifications off.

Links in the messages: the plugin's run page ``{base_url}/gemini-tuning/runs/{dag_id}/{run_id}``, the run's
report ``{base_url}/gemini-tuning/report/{dag_id}/{run_id}`` and Airflow's run page
``{base_url}/dags/{dag_id}/runs/{run_id}`` (``base_url``: ``[api] base_url``; ids URL-quoted).

What a message never carries: prompt text, model answers, rule reasons or details (free text that can quote
the data), exception messages, credentials, connection ids or hosts. It carries the pipeline, DAG and run ids, the
decision, one line per gate rule (name, PASS/FAIL, the observed number vs the threshold) and the candidate's
model resource name.
"""

from __future__ import annotations

import html
import logging
import math
import re
from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import quote

from airflow.sdk import BaseNotifier

log = logging.getLogger(__name__)

EVENTS = ("promote", "delete", "approval_needed", "failure")
#: task id -> (event, the operator keyword its notifier goes to, the decision it reports instead of the gate's)
TASK_EVENTS: dict[str, tuple[str, str, str | None]] = {
    "promote": ("promote", "on_success_callback", None),
    "delete": ("delete", "on_success_callback", None),
    "delete_rejected": ("delete", "on_success_callback", "rejected"),
    "approval": ("approval_needed", "notifiers", None),
}
DECISIONS = ("promote", "delete", "no_decision", "rejected")
UI_PREFIX = "/gemini-tuning"   # plugin.UI_PREFIX (not imported: the plugin module mounts the UI app)
_KEYS = {"events", "smtp", "webhook"}
_SMTP_KEYS = {"to", "conn_id", "from_email"}
_WEBHOOK_KEYS = {"conn_id", "endpoint"}

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


# ---------------------------------------------------------------------------------------------- configuration
def _check(notifications: Mapping | None) -> dict:
    """The ``notifications:`` section, validated (``ValueError``), with defaults: ``{events, smtp, webhook}``."""
    if not notifications:
        return {"events": [], "smtp": None, "webhook": None}
    if not isinstance(notifications, Mapping):
        raise ValueError(f"notifications: expected a mapping, got {type(notifications).__name__}")
    unknown = set(notifications) - _KEYS
    if unknown:
        raise ValueError(f"notifications: unknown key(s) {', '.join(sorted(map(str, unknown)))}")
    events = notifications.get("events") or []
    if isinstance(events, str) or not isinstance(events, Sequence):
        raise ValueError("notifications.events: expected a list of events")
    bad = [e for e in events if e not in EVENTS]
    if bad:
        raise ValueError(f"notifications.events: unknown event(s) {bad}; expected some of {', '.join(EVENTS)}")
    smtp = notifications.get("smtp")
    if smtp is not None:
        if not isinstance(smtp, Mapping) or set(smtp) - _SMTP_KEYS:
            raise ValueError(f"notifications.smtp: expected a mapping of {', '.join(sorted(_SMTP_KEYS))}")
        to = [smtp["to"]] if isinstance(smtp.get("to"), str) else list(smtp.get("to") or [])
        if not to or not all(isinstance(x, str) and "@" in x for x in to):
            raise ValueError("notifications.smtp.to: expected one or more e-mail addresses")
        smtp = {"to": to, "conn_id": smtp.get("conn_id") or "smtp_default", "from_email": smtp.get("from_email")}
    webhook = notifications.get("webhook")
    if webhook is not None:
        if not isinstance(webhook, Mapping) or set(webhook) - _WEBHOOK_KEYS or not webhook.get("conn_id"):
            raise ValueError("notifications.webhook: expected {conn_id: <an HTTP connection>, endpoint: <optional>}")
        webhook = {"conn_id": str(webhook["conn_id"]), "endpoint": webhook.get("endpoint")}
    return {"events": list(dict.fromkeys(events)), "smtp": smtp, "webhook": webhook}


# ---------------------------------------------------------------------------------------------- the notifier
class GeminiTuningNotifier(BaseNotifier):
    """Composes the message of one event from the run's context and sends it through the configured channels
    (module docstring). Never raises: a failure to compose or to send is logged as a warning.

    :param event: one of :data:`EVENTS`.
    :param pipeline_id: the pipeline file's id (shown in the message).
    :param smtp: ``{to: [addresses], conn_id, from_email?}`` (an Airflow SMTP connection), or None.
    :param webhook: ``{conn_id, endpoint?}`` (an Airflow HTTP connection: the JSON message is POSTed to its
        host, plus ``endpoint``), or None.
    :param decision: the decision to report instead of the gate's (``rejected`` for ``delete_rejected``).
    :param gate_task_id: the task whose XCom ``gate`` holds the gate's decision.
    :param base_url: the api-server's external URL for the links; None: ``[api] base_url``.
    """

    template_fields = ()   # nothing is rendered: the message is composed in code, never a template

    def __init__(self, event: str, *, pipeline_id: str, smtp: Mapping | None = None, webhook: Mapping | None = None,
                 decision: str | None = None, gate_task_id: str = "gate", base_url: str | None = None):
        super().__init__()
        if event not in EVENTS:
            raise ValueError(f"unknown notification event {event!r}; expected one of {', '.join(EVENTS)}")
        self.event = event
        self.pipeline_id = pipeline_id
        self.smtp = dict(smtp) if smtp else None
        self.webhook = dict(webhook) if webhook else None
        self.decision = decision
        self.gate_task_id = gate_task_id
        self.base_url = base_url

    def __repr__(self) -> str:
        channels = [c for c in ("smtp", "webhook") if getattr(self, c)]
        return f"GeminiTuningNotifier({self.event!r}, pipeline={self.pipeline_id!r}, channels={channels})"

    def message(self, context) -> dict:
        """The event's message from the Airflow context: ``{subject, text, ...}`` (the webhook's JSON payload).

        :param context: the task's (or the DAG callback's) Airflow context.
        """
        ti = context.get("ti") or context.get("task_instance")
        dag = context.get("dag")
        dag_run = context.get("dag_run")
        dag_id = getattr(ti, "dag_id", None) or getattr(dag, "dag_id", None) or getattr(dag_run, "dag_id", "?")
        run_id = context.get("run_id") or getattr(ti, "run_id", None) or getattr(dag_run, "run_id", "?")
        gate = self._gate(ti, str(dag_id), str(run_id))
        decision = self.decision or (gate or {}).get("decision")
        links = run_links(str(dag_id), str(run_id), self.base_url)
        lines = verdict_lines(gate)
        candidate = (gate or {}).get("candidate")
        task_id = getattr(ti, "task_id", None) if self.event == "failure" else None
        subject, text = compose(self.event, pipeline_id=self.pipeline_id, dag_id=str(dag_id), run_id=str(run_id),
                                decision=decision, verdict_lines=lines, candidate=candidate, task_id=task_id,
                                **links)
        return {"event": self.event, "pipeline_id": self.pipeline_id, "dag_id": str(dag_id), "run_id": str(run_id),
                "decision": _decision(decision), "candidate": _candidate(candidate), "verdict": lines,
                **links, "subject": subject, "text": text}

    def _gate(self, ti, dag_id: str, run_id: str) -> dict | None:
        """The gate's XCom: through the task instance (a task's callback, a HITL notifier); where that cannot
        reach the API (a DAG callback's context: no task runner), from the metadata DB; None if neither works."""
        errors = []
        if ti is not None:
            try:
                gate = ti.xcom_pull(task_ids=self.gate_task_id, key="gate")
                return dict(gate) if isinstance(gate, Mapping) else None
            except Exception as exc:  # noqa: BLE001 - a message without the verdict is better than none
                errors.append(type(exc).__name__)
        try:
            from airflow.models.xcom import XComModel
            from airflow.utils.session import create_session

            with create_session() as session:
                row = session.scalars(XComModel.get_many(run_id=run_id, key="gate", task_ids=self.gate_task_id,
                                                         dag_ids=dag_id, limit=1)).first()
                gate = XComModel.deserialize_value(row) if row is not None else None
            return dict(gate) if isinstance(gate, Mapping) else None
        except Exception as exc:  # noqa: BLE001 - a message without the verdict is better than none
            errors.append(type(exc).__name__)
        log.warning("gemini_tuning notification %s: the gate's XCom could not be read (%s)", self.event,
                    ", ".join(errors))
        return None

    @staticmethod
    def _from_email(smtp: Mapping) -> str | None:
        """The sender: the channel's ``from_email``, else ``[email] from_email``, else the SMTP connection's
        (resolved here, so that ``SmtpNotifier`` renders nothing)."""
        if smtp.get("from_email"):
            return smtp["from_email"]
        from airflow.configuration import conf

        sender = conf.get("email", "from_email", fallback=None)
        if sender:
            return sender
        from airflow.providers.smtp.hooks.smtp import SmtpHook

        conn = SmtpHook.get_connection(smtp.get("conn_id") or "smtp_default")
        return conn.extra_dejson.get("from_email") or None

    def channel(self, name: str, msg: dict) -> BaseNotifier:
        """The provider's notifier that sends ``msg`` through channel ``name``: ``smtp``: an ``SmtpNotifier``
        (the text in a ``<pre>`` block), ``webhook``: an ``HttpNotifier`` POSTing ``msg`` as JSON. Built per
        message: ``SmtpNotifier`` keeps state between sends.

        :param name: ``smtp`` or ``webhook`` (configured).
        :param msg: :meth:`message`'s result.
        """
        if name == "smtp":
            from airflow.providers.smtp.notifications.smtp import SmtpNotifier

            body = f"<pre style=\"font-family: monospace\">{html.escape(msg['text'])}</pre>"
            return SmtpNotifier(to=list(self.smtp["to"]), from_email=self._from_email(self.smtp),
                                subject=msg["subject"], html_content=body,
                                smtp_conn_id=self.smtp.get("conn_id") or "smtp_default")
        if name == "webhook":
            from airflow.providers.http.notifications.http import HttpNotifier

            return HttpNotifier(http_conn_id=self.webhook["conn_id"], endpoint=self.webhook.get("endpoint"),
                                method="POST", json=msg, extra_options={"timeout": 30})
        raise ValueError(f"unknown channel {name!r}")

    def notify(self, context) -> None:
        """Compose and send through each configured channel; log a warning for each that fails (never raises).

        :param context: the task's (or the DAG callback's) Airflow context.
        """
        try:
            msg = self.message(context)
        except Exception as exc:  # a notification never fails the task (logged with its traceback)
            log.warning("gemini_tuning notification %s not sent: composing it failed (%s)", self.event,
                        type(exc).__name__, exc_info=True)
            return
        for name in [n for n in ("smtp", "webhook") if getattr(self, n)]:
            try:
                # notify, not __call__: the composed text is never rendered as Jinja; the providers' notifiers
                # need no context (a DAG callback's, from the scheduler, holds a SerializedDAG they cannot use)
                self.channel(name, msg).notify({})
            except Exception as exc:  # noqa: BLE001 - a notification never fails the task
                log.warning("gemini_tuning notification %s for %s/%s not sent through %s: %s: %s", self.event,
                            msg["dag_id"], msg["run_id"], name, type(exc).__name__, _one_line(exc, 300))
            else:
                log.info("gemini_tuning notification %s for %s/%s sent through %s", self.event, msg["dag_id"],
                         msg["run_id"], name)

    def __call__(self, *args) -> None:
        """Airflow's entry point (a callback, a HITL notifier): :meth:`notify`, never raising. Unlike
        ``BaseNotifier.__call__`` nothing is merged into the context or rendered (there is no template).

        :param args: the context (or the old DAG-callback arguments, as ``BaseNotifier`` takes them).
        """
        context = args[0] if len(args) == 1 else {"dag": args[0] if args else None}
        self.notify(context if isinstance(context, Mapping) else {})


# ---------------------------------------------------------------------------------------------- wiring
def notifier_callbacks(notifications: Mapping | None, pipeline_id: str) -> dict[str, list[GeminiTuningNotifier]]:
    """One notifier per configured event: ``{event: [GeminiTuningNotifier]}``. No channel configured (neither
    ``smtp`` nor ``webhook``), or no events: ``{}``.

    :param notifications: the pipeline file's ``notifications:`` section (or None). Invalid: ``ValueError``.
    :param pipeline_id: the pipeline's id (shown in the messages).
    """
    cfg = _check(notifications)
    if not (cfg["smtp"] or cfg["webhook"]):
        return {}
    return {event: [GeminiTuningNotifier(event, pipeline_id=pipeline_id, smtp=cfg["smtp"], webhook=cfg["webhook"])]
            for event in cfg["events"]}


def callbacks_for_task(notifications: Mapping | None, pipeline_id: str, task_id: str) -> dict[str, list]:
    """The operator keyword arguments that attach the task's notifications (:data:`TASK_EVENTS`):
    ``{"on_success_callback": [...]}`` for ``promote``, ``delete`` and ``delete_rejected``, ``{"notifiers":
    [...]}`` for ``approval`` (``HITLOperator`` calls them when it starts waiting), ``{}`` otherwise or when
    the event is not configured.

    :param notifications: the pipeline file's ``notifications:`` section (or None).
    :param pipeline_id: the pipeline's id.
    :param task_id: the task's id in the pipeline DAG.
    """
    if task_id not in TASK_EVENTS:
        _check(notifications)
        return {}
    event, keyword, decision = TASK_EVENTS[task_id]
    notifiers = notifier_callbacks(notifications, pipeline_id).get(event)
    if not notifiers:
        return {}
    if decision:
        for n in notifiers:
            n.decision = decision
    return {keyword: notifiers}


def dag_callbacks(notifications: Mapping | None, pipeline_id: str) -> dict[str, list]:
    """The DAG keyword arguments of the ``failure`` event: ``{"on_failure_callback": [...]}`` (or ``{}``).

    :param notifications: the pipeline file's ``notifications:`` section (or None).
    :param pipeline_id: the pipeline's id.
    """
    notifiers = notifier_callbacks(notifications, pipeline_id).get("failure")
    return {"on_failure_callback": notifiers} if notifiers else {}
