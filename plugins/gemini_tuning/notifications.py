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
from collections.abc import Mapping, Sequence

from airflow.sdk import BaseNotifier

from .core.constants import GATE_XCOM
from .notification_messages import EVENTS, _candidate, _decision, _one_line, compose, run_links, verdict_lines

log = logging.getLogger(__name__)

#: task id -> (event, the operator keyword its notifier goes to, the decision it reports instead of the gate's)
TASK_EVENTS: dict[str, tuple[str, str, str | None]] = {
    "promote": ("promote", "on_success_callback", None),
    "delete": ("delete", "on_success_callback", None),
    "delete_rejected": ("delete", "on_success_callback", "rejected"),
    "approval": ("approval_needed", "notifiers", None),
}
_KEYS = {"events", "smtp", "webhook"}
_SMTP_KEYS = {"to", "conn_id", "from_email"}
_WEBHOOK_KEYS = {"conn_id", "endpoint"}


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
                gate = ti.xcom_pull(task_ids=self.gate_task_id, key=GATE_XCOM)
                return dict(gate) if isinstance(gate, Mapping) else None
            except Exception as exc:  # noqa: BLE001 - a message without the verdict is better than none
                errors.append(type(exc).__name__)
        try:
            from airflow.models.xcom import XComModel
            from airflow.utils.session import create_session

            with create_session() as session:
                row = session.scalars(XComModel.get_many(run_id=run_id, key=GATE_XCOM, task_ids=self.gate_task_id,
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
