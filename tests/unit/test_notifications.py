"""gemini_tuning.notifications: the messages (compose, verdict_lines), that nothing secret leaks into them, the
event -> callback mapping, and that a failing channel never raises."""

from __future__ import annotations

import json
import logging

import pytest

from gemini_tuning.notifications import (
    EVENTS,
    GeminiTuningNotifier,
    callbacks_for_task,
    compose,
    dag_callbacks,
    notifier_callbacks,
    run_links,
    verdict_lines,
)

pytestmark = pytest.mark.fast

SECRET = "ya29.a0AfH6SMBsecret-token"
PROMPT = "Please route: my password is hunter2 and my card 4111-1111-1111-1111 was charged twice"
ANSWER = "MODEL ANSWER: billing_dispute"
NOTES = {"events": list(EVENTS), "smtp": {"to": ["ml-support@example.com"], "conn_id": "smtp_default"},
         "webhook": {"conn_id": "gemini_tuning_webhook"}}
GATE = {
    "decision": "promote",
    "summary": "promote",
    "rules": [
        {"name": "min_prompts", "verdict": "pass", "observed": 30, "threshold": 20, "reason": "30 >= 20"},
        {"name": "max_error_rate", "verdict": "pass", "observed": 0.0, "threshold": 0.05, "reason": "0 of 30"},
        {"name": "threshold:normalized_match", "verdict": "fail", "observed": 0.512345, "threshold": 0.6,
         "reason": "0.512 < 0.6"},
        {"name": "champion_margin", "verdict": "skipped", "observed": None, "threshold": 0.0,
         "reason": "skipped (no champion)"},
    ],
    "candidate": {"backend": "vertex", "tuned_model": "projects/1/locations/us-central1/models/2@3",
                  "checkpoint_id": "4"},
}


def message(event="promote", **kw):
    args = dict(pipeline_id="support-router", dag_id="gemini_tuning_support", run_id="manual__2026-12-07T09:00:00",
                decision="promote", verdict_lines=verdict_lines(GATE), candidate=GATE["candidate"],
                **run_links("gemini_tuning_support", "manual__2026-12-07T09:00:00", "https://airflow.example.com/"))
    args.update(kw)
    return compose(event, **args)


# ---------------------------------------------------------------------------------------------- verdict_lines
def test_verdict_lines_one_per_rule_with_name_verdict_value_and_threshold():
    assert verdict_lines(GATE) == [
        "min_prompts: PASS (observed 30 vs threshold 20)",
        "max_error_rate: PASS (observed 0 vs threshold 0.05)",
        "threshold:normalized_match: FAIL (observed 0.5123 vs threshold 0.6)",
        "champion_margin: SKIPPED (observed n/a vs threshold 0)",
    ]


@pytest.mark.parametrize("value", [None, {}, {"rules": None}, {"rules": "min_prompts"}, [], "gate", 3])
def test_verdict_lines_of_nothing_is_empty(value):
    assert verdict_lines(value) == []


def test_verdict_lines_skip_garbage_rules_and_accept_a_verdict_record():
    record = {"kind": "gemini_tuning_verdict", "rules": [None, 3, {"name": "min_prompts", "verdict": "pass",
                                                                    "observed": True, "threshold": float("nan")}]}
    assert verdict_lines(record) == ["min_prompts: PASS (observed true vs threshold nan)"]


# ---------------------------------------------------------------------------------------------- compose
@pytest.mark.parametrize("event,title", [("promote", "candidate promoted to champion"),
                                         ("delete", "candidate deleted"),
                                         ("approval_needed", "approval needed to promote the candidate"),
                                         ("failure", "run failed")])
def test_compose_has_the_decision_the_rules_the_candidate_and_the_links(event, title):
    subject, body = message(event)
    assert subject == f"[gemini-tuning] support-router: {title} (run manual__2026-12-07T09:00:00)"
    assert "Decision: PROMOTE" in body and f"Event: {event}" in body
    assert "Pipeline: support-router" in body and "DAG: gemini_tuning_support" in body
    assert "Candidate: projects/1/locations/us-central1/models/2@3 (checkpoint 4)" in body
    for line in verdict_lines(GATE):
        assert f"  - {line}\n" in body
    run = "manual__2026-12-07T09%3A00%3A00"
    assert f"Run page: https://airflow.example.com/gemini-tuning/runs/gemini_tuning_support/{run}\n" in body
    assert f"Report: https://airflow.example.com/gemini-tuning/report/gemini_tuning_support/{run}\n" in body
    assert f"Airflow run: https://airflow.example.com/dags/gemini_tuning_support/runs/{run}\n" in body


def test_compose_without_a_verdict_says_so():
    subject, body = message("failure", decision=None, verdict_lines=[], candidate=None, report_url=None,
                            task_id="tune")
    assert "Decision: UNKNOWN" in body and "(no gate verdict in this run)" in body and "Task: tune" in body
    assert "Candidate:" not in body and "Report:" not in body and "Run page:" in body


def test_compose_refuses_an_unknown_event():
    with pytest.raises(ValueError, match="unknown notification event"):
        message("promoted")


def test_run_links_default_to_the_api_base_url(monkeypatch):
    monkeypatch.setenv("AIRFLOW__API__BASE_URL", "http://localhost:28080/")
    assert run_links("d", "r+1") == {"run_url": "http://localhost:28080/gemini-tuning/runs/d/r%2B1",
                                     "report_url": "http://localhost:28080/gemini-tuning/report/d/r%2B1",
                                     "airflow_run_url": "http://localhost:28080/dags/d/runs/r%2B1"}


# ---------------------------------------------------------------------------------------------- no leaks
def hostile_gate() -> dict:
    return {
        "decision": "promote\nBcc: attacker@example.com",
        "summary": f"beats the champion on {PROMPT}",
        "rules": [
            {"name": "min_prompts", "verdict": "pass", "observed": PROMPT, "threshold": {"token": SECRET},
             "reason": f"prompt {PROMPT!r} answered {ANSWER!r}", "details": {"api_key": SECRET, "answer": ANSWER}},
            {"name": f"threshold:{PROMPT}", "verdict": f"pass {SECRET}", "observed": [ANSWER], "threshold": 0.6},
            {"name": "x\nSubject: injected", "verdict": "fail", "observed": 1, "threshold": 2},
        ],
        "candidate": {"tuned_model": f"projects/1/models/2 Authorization: Bearer {SECRET}",
                      "checkpoint_id": PROMPT},
        "pipeline": {"id": "support-router", "connection": f"https://user:{SECRET}@example.com"},
    }


def test_a_verdict_with_prompts_answers_and_secrets_leaks_none_of_them():
    gate = hostile_gate()
    for event in EVENTS:
        subject, body = compose(event, pipeline_id="support-router", dag_id="d", run_id="r",
                                decision=gate["decision"], verdict_lines=verdict_lines(gate),
                                candidate=gate["candidate"], run_url="https://a/x", report_url="https://a/y")
        for leak in (SECRET, "hunter2", "4111", "Please route", ANSWER, "billing_dispute", "attacker", "injected",
                     "Bearer"):
            assert leak not in subject and leak not in body, (leak, event)
        assert "Decision: UNKNOWN" in body
        assert "  - min_prompts: PASS (observed (not shown) vs threshold (not shown))" in body
        assert "  - (unnamed rule): ? (observed (not shown) vs threshold 0.6)" in body
        assert "  - (unnamed rule): FAIL (observed 1 vs threshold 2)" in body


def test_the_subject_is_one_line_whatever_the_ids():
    subject, body = message(pipeline_id="p\r\nBcc: x@example.com", run_id="r\nSubject: y")
    assert "\n" not in subject and "\r" not in subject
    assert "Bcc: x@example.com" not in body.splitlines()


def test_the_notifiers_message_leaks_no_channel_configuration():
    notifier = GeminiTuningNotifier("promote", pipeline_id="support-router",
                                    smtp={"to": ["ml-support@example.com"], "conn_id": "smtp_secret_conn"},
                                    webhook={"conn_id": "webhook_secret_conn", "endpoint": "hooks/secret-path"})
    msg = notifier.message({"ti": FakeTI(hostile_gate()), "run_id": "r"})
    text = json.dumps(msg)
    for leak in (SECRET, "hunter2", ANSWER, "smtp_secret_conn", "webhook_secret_conn", "secret-path",
                 "ml-support@example.com"):
        assert leak not in text, leak


# ---------------------------------------------------------------------------------------------- the mapping
def test_notifier_callbacks_one_notifier_per_configured_event():
    cbs = notifier_callbacks(NOTES, "support-router")
    assert set(cbs) == set(EVENTS)
    for event, notifiers in cbs.items():
        [n] = notifiers
        assert isinstance(n, GeminiTuningNotifier) and n.event == event and n.pipeline_id == "support-router"
        assert n.smtp == {"to": ["ml-support@example.com"], "conn_id": "smtp_default", "from_email": None}
        assert n.webhook == {"conn_id": "gemini_tuning_webhook", "endpoint": None}


def test_the_events_map_to_the_tasks_and_the_dag():
    assert [n.event for n in callbacks_for_task(NOTES, "p", "promote")["on_success_callback"]] == ["promote"]
    assert [n.event for n in callbacks_for_task(NOTES, "p", "delete")["on_success_callback"]] == ["delete"]
    rejected = callbacks_for_task(NOTES, "p", "delete_rejected")
    assert [(n.event, n.decision) for n in rejected["on_success_callback"]] == [("delete", "rejected")]
    assert callbacks_for_task(NOTES, "p", "delete")["on_success_callback"][0].decision is None
    assert [n.event for n in callbacks_for_task(NOTES, "p", "approval")["notifiers"]] == ["approval_needed"]
    assert [n.event for n in dag_callbacks(NOTES, "p")["on_failure_callback"]] == ["failure"]
    for task_id in ("prepare_dataset", "tune", "evaluate", "gate", "review_report", "cleanup_on_failure", "report"):
        assert callbacks_for_task(NOTES, "p", task_id) == {}


def test_only_the_configured_events_and_nothing_without_a_channel():
    some = {"events": ["promote", "failure"], "webhook": {"conn_id": "w"}}
    assert callbacks_for_task(some, "p", "delete") == {} and callbacks_for_task(some, "p", "approval") == {}
    assert "on_success_callback" in callbacks_for_task(some, "p", "promote") and dag_callbacks(some, "p")
    assert notifier_callbacks({"events": list(EVENTS)}, "p") == {}
    assert notifier_callbacks(None, "p") == {} and dag_callbacks({}, "p") == {}
    assert callbacks_for_task({"events": [], "smtp": {"to": "a@example.com"}}, "p", "promote") == {}


@pytest.mark.parametrize("bad", [
    {"events": ["promoted"], "smtp": {"to": ["a@example.com"]}},
    {"events": "promote", "smtp": {"to": ["a@example.com"]}},
    {"events": ["promote"], "slack": {"conn_id": "s"}},
    {"events": ["promote"], "smtp": {"to": []}},
    {"events": ["promote"], "smtp": {"to": ["not-an-address"]}},
    {"events": ["promote"], "smtp": {"to": ["a@example.com"], "password": "x"}},
    {"events": ["promote"], "webhook": {}},
    {"events": ["promote"], "webhook": {"url": "https://example.com"}},
    ["promote"],
])
def test_an_invalid_section_is_refused_at_parse_time(bad):
    with pytest.raises(ValueError, match="notifications"):
        notifier_callbacks(bad, "p")
    with pytest.raises(ValueError, match="notifications"):
        callbacks_for_task(bad, "p", "tune")


def test_the_callbacks_go_on_the_real_operators_and_the_dag_serializes():
    import pendulum
    from airflow.sdk import DAG
    from airflow.serialization.serialized_objects import DagSerialization

    from gemini_tuning.operators.approval import GeminiApprovalOperator
    from gemini_tuning.operators.promote import GeminiDeleteTunedModelOperator, GeminiPromoteOperator

    with DAG("notify_wiring", schedule=None, start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
             **dag_callbacks(NOTES, "p")) as dag:
        approval = GeminiApprovalOperator(task_id="approval", verdict_uri="gs://b/v.json",
                                          **callbacks_for_task(NOTES, "p", "approval"))
        promote = GeminiPromoteOperator(task_id="promote", candidate={}, evaluation={}, pointer_uri="gs://b/c.json",
                                        verdict_uri="gs://b/v.json", **callbacks_for_task(NOTES, "p", "promote"))
        delete = GeminiDeleteTunedModelOperator(task_id="delete_rejected", candidate={}, pointer_uri="gs://b/c.json",
                                                verdict_uri="gs://b/v.json",
                                                **callbacks_for_task(NOTES, "p", "delete_rejected"))
        approval >> [promote, delete]
    assert [n.event for n in approval.notifiers] == ["approval_needed"]
    assert [n.event for n in promote.on_success_callback] == ["promote"]
    assert [n.decision for n in delete.on_success_callback] == ["rejected"]
    assert [n.event for n in dag.on_failure_callback] == ["failure"]
    data = DagSerialization.to_dict(dag)
    assert data["dag"]["has_on_failure_callback"] is True


# ---------------------------------------------------------------------------------------------- the notifier
class FakeTI:
    dag_id, run_id, task_id = "gemini_tuning_support", "manual__1", "promote"

    def __init__(self, gate=GATE, error: Exception | None = None):
        self.gate, self.error, self.pulled = gate, error, []

    def xcom_pull(self, task_ids, key):
        self.pulled.append((task_ids, key))
        if self.error:
            raise self.error
        return self.gate


def test_the_message_comes_from_the_context_and_the_gates_xcom(monkeypatch):
    monkeypatch.setenv("AIRFLOW__API__BASE_URL", "https://airflow.example.com")
    ti = FakeTI()
    msg = GeminiTuningNotifier("promote", pipeline_id="support-router", webhook={"conn_id": "w"}).message(
        {"ti": ti, "run_id": "manual__1"})
    assert ti.pulled == [("gate", "gate")]
    assert msg["decision"] == "promote" and msg["verdict"] == verdict_lines(GATE)
    assert msg["run_url"] == "https://airflow.example.com/gemini-tuning/runs/gemini_tuning_support/manual__1"
    assert msg["report_url"] == "https://airflow.example.com/gemini-tuning/report/gemini_tuning_support/manual__1"
    assert msg["candidate"] == "projects/1/locations/us-central1/models/2@3 (checkpoint 4)"
    assert "Decision: PROMOTE" in msg["text"] and "Task:" not in msg["text"]
    rejected = GeminiTuningNotifier("delete", pipeline_id="p", webhook={"conn_id": "w"}, decision="rejected")
    assert rejected.message({"ti": ti})["decision"] == "rejected"


def test_a_channel_that_fails_is_logged_and_the_next_one_still_sends(monkeypatch, caplog):
    sent = []

    class Broken:
        def notify(self, context):
            raise ConnectionRefusedError(f"[Errno 111] Connection refused to smtp.internal:25 as {SECRET}")

    class Works:
        def notify(self, context):
            sent.append(context)

    notifier = GeminiTuningNotifier("promote", pipeline_id="p", smtp={"to": ["a@example.com"]},
                                    webhook={"conn_id": "w"})
    monkeypatch.setattr(notifier, "channel", lambda name, msg: Broken() if name == "smtp" else Works())
    with caplog.at_level(logging.WARNING, logger="gemini_tuning.notifications"):
        assert notifier({"ti": FakeTI()}) is None
    assert sent == [{}]
    assert any("not sent through smtp: ConnectionRefusedError" in r.getMessage() for r in caplog.records)


def test_an_unreadable_xcom_or_a_broken_context_never_raises(monkeypatch, caplog):
    import airflow.utils.session

    def no_database():
        raise RuntimeError("no metadata database")

    # Neither road to the gate's XCom works: the task API fails and so does the metadata DB (whether or not the
    # test process has one initialised: CI's does when integration tests ran first in the same process).
    monkeypatch.setattr(airflow.utils.session, "create_session", no_database)
    notifier = GeminiTuningNotifier("failure", pipeline_id="p", webhook={"conn_id": "no_such_connection"})
    with caplog.at_level(logging.WARNING, logger="gemini_tuning.notifications"):
        notifier({"ti": FakeTI(error=RuntimeError("no API"))})
        notifier({"ti": object()})
        notifier.notify(None)
        notifier("dag", [], [], [])   # the old DAG-callback signature
    assert any("could not be read" in r.getMessage() for r in caplog.records)
    assert any("not sent" in r.getMessage() for r in caplog.records)


def test_approval_needed_fires_only_when_the_approval_really_waits(monkeypatch):
    from airflow.providers.standard.operators import hitl
    from airflow.sdk import DAG

    from gemini_tuning.operators.approval import GeminiApprovalOperator

    calls = []
    monkeypatch.setattr(GeminiTuningNotifier, "notify", lambda self, context: calls.append(self.event))
    monkeypatch.setattr(hitl, "upsert_hitl_detail", lambda **kw: None)
    verdict = {"verdict_id": "v1", "policy_hash": "sha256:x", "decision": "promote", "rules": GATE["rules"]}
    monkeypatch.setattr(GeminiApprovalOperator, "_verdict", lambda self, context: verdict)

    class TI(FakeTI):
        id = "01a25164-0000-0000-0000-000000000000"

        def xcom_push(self, key, value):
            pass

    with DAG("notify_approval", schedule=None):
        quiet = GeminiApprovalOperator(task_id="approval", verdict_uri="gs://b/v.json", required=False,
                                       **callbacks_for_task(NOTES, "p", "approval"))
        asks = GeminiApprovalOperator(task_id="approval2", verdict_uri="gs://b/v.json", required=True,
                                      **callbacks_for_task(NOTES, "p", "approval"))
    monkeypatch.setattr(quiet, "skip_all_except", lambda ti, task_id: None)
    ti = TI()
    quiet.execute({"ti": ti, "task_instance": ti})
    assert calls == []
    with pytest.raises(BaseException) as waited:  # Airflow 3.3: TaskAwaitingInput (a BaseException) parks it
        asks.execute({"ti": ti, "task_instance": ti})
    assert type(waited.value).__name__ in ("TaskAwaitingInput", "TaskDeferred")
    assert calls == ["approval_needed"]
