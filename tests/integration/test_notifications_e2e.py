"""Notifications end to end: small DAGs run with dag.test() whose tasks carry the notifiers of
``gemini_tuning.notifications``; the messages go to a local SMTP server (aiosmtpd) and a local HTTP receiver, both
on 127.0.0.1 ephemeral ports, through Airflow connections given as ``AIRFLOW_CONN_*`` variables."""

from __future__ import annotations

import email
import email.policy
import html
import json
import re
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

pytestmark = pytest.mark.fast

BASE_URL = "http://airflow.example.test:8080"
PID = "support-router"
SECRET = "ya29.SECRET-TOKEN-0123456789"
PROMPT = "Customer says: my card 4111 1111 1111 1111 was charged twice, refund me"
#: the gate's XCom, with prompt text and a secret where a careless message would pick them up
GATE = {
    "decision": "promote",
    "summary": f"promote: beats the champion on '{PROMPT}'",
    "rules": [
        {"name": "min_prompts", "verdict": "pass", "observed": 30, "threshold": 20, "reason": "30 >= 20",
         "details": None},
        {"name": "max_error_rate", "verdict": "pass", "observed": 0.0, "threshold": 0.05,
         "reason": f"0 of 30 failed; last prompt: {PROMPT}", "details": {"token": SECRET}},
        {"name": "threshold:normalized_match", "verdict": "pass", "observed": 0.8333333, "threshold": 0.6,
         "reason": "ok", "details": {"worst_answer": "I am the model's answer: REFUND GRANTED"}},
        {"name": "champion_margin", "verdict": "skipped", "observed": PROMPT, "threshold": None,
         "reason": "skipped (no champion)", "details": None},
    ],
    "verdict_id": "0123456789abcdef01234567",
    "candidate": {"backend": "vertex", "tuned_model": "projects/123/locations/us-central1/models/456@1",
                  "checkpoint_id": None, "endpoint": "projects/123/locations/us-central1/endpoints/789"},
}
EXPECTED_LINES = [
    "min_prompts: PASS (observed 30 vs threshold 20)",
    "max_error_rate: PASS (observed 0 vs threshold 0.05)",
    "threshold:normalized_match: PASS (observed 0.8333 vs threshold 0.6)",
    "champion_margin: SKIPPED (observed (not shown) vs threshold n/a)",
]
LEAKS = [SECRET, "4111", "Customer says", "REFUND GRANTED", "hunter2-webhook-password", "notify_smtp",
         "gemini_tuning_webhook", "dead_smtp", "127.0.0.1"]

DAG_FILE = '''
import json

import pendulum
from airflow.providers.standard.operators.empty import EmptyOperator
from airflow.providers.standard.operators.python import PythonOperator
from airflow.sdk import DAG
from airflow.sdk.exceptions import AirflowFailException

from gemini_tuning.notifications import callbacks_for_task, dag_callbacks

GATE = json.loads(__GATE__)
PID = __PID__
NOTES = {"events": ["promote", "delete", "approval_needed", "failure"],
         "smtp": {"to": ["ml-support@example.com"], "conn_id": "notify_smtp"},
         "webhook": {"conn_id": "gemini_tuning_webhook", "endpoint": "hooks/gemini"}}
DEAD = {"events": ["promote", "failure"], "smtp": {"to": ["ml-support@example.com"], "conn_id": "dead_smtp"},
        "webhook": {"conn_id": "dead_webhook"}}


def push_gate(ti):
    ti.xcom_push(key="gate", value=GATE)


def fail():
    raise AirflowFailException("the tuning service refused the request (token __SECRET__)")


def build(dag_id, notes, task_id, failing=False):
    with DAG(dag_id, schedule=None, start_date=pendulum.datetime(2026, 1, 1, tz="UTC"), catchup=False,
             **dag_callbacks(notes, PID)) as dag:
        gate = PythonOperator(task_id="gate", python_callable=push_gate)
        if failing:
            last = PythonOperator(task_id=task_id, python_callable=fail, retries=0)
        else:
            last = EmptyOperator(task_id=task_id, **callbacks_for_task(notes, PID, task_id))
        gate >> last
    return dag


promote = build("notify_promote", NOTES, "promote")
rejected = build("notify_rejected", NOTES, "delete_rejected")
failure = build("notify_failure", NOTES, "tune", failing=True)
unreachable = build("notify_unreachable", DEAD, "promote")
unreachable_failure = build("notify_unreachable_failure", DEAD, "tune", failing=True)
'''.replace("__GATE__", repr(json.dumps(GATE))).replace("__PID__", repr(PID)).replace("__SECRET__", SECRET)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Sink:
    """aiosmtpd handler: keeps every message received."""

    def __init__(self):
        self.messages: list[email.message.EmailMessage] = []

    async def handle_DATA(self, server, session, envelope):
        self.messages.append(email.message_from_bytes(envelope.content, policy=email.policy.default))
        return "250 OK"


@pytest.fixture(scope="module")
def smtp_server():
    from aiosmtpd.controller import Controller

    sink = Sink()
    controller = Controller(sink, hostname="127.0.0.1", port=free_port())
    controller.start()
    yield controller, sink
    controller.stop()


@pytest.fixture(scope="module")
def http_receiver():
    received: list[dict] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            received.append({"path": self.path, "headers": dict(self.headers), "json": json.loads(body)})
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server, received
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="module")
def dag_folder(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("notify_dags")
    (folder / "notify_dags.py").write_text(DAG_FILE)
    return folder


@pytest.fixture
def dags(airflow_db, dag_folder, smtp_server, http_receiver, monkeypatch):
    """The test DAGs, with the connections (live and dead) and the api-server's base URL set."""
    controller, sink = smtp_server
    server, received = http_receiver
    sink.messages.clear()
    received.clear()
    # dag.test() syncs the DAG from its bundle: make the test DAGs' folder the only one
    monkeypatch.setenv("AIRFLOW__DAG_PROCESSOR__DAG_BUNDLE_CONFIG_LIST", json.dumps([{
        "name": "dags-folder", "classpath": "airflow.dag_processing.bundles.local.LocalDagBundle",
        "kwargs": {"path": str(dag_folder)}}]))
    monkeypatch.setenv("AIRFLOW__API__BASE_URL", BASE_URL)
    smtp_extra = {"disable_tls": True, "disable_ssl": True, "from_email": "airflow@example.com", "retry_limit": 0,
                  "timeout": 5}
    monkeypatch.setenv("AIRFLOW_CONN_NOTIFY_SMTP", json.dumps(
        {"conn_type": "smtp", "host": "127.0.0.1", "port": controller.port, "extra": smtp_extra}))
    monkeypatch.setenv("AIRFLOW_CONN_GEMINI_TUNING_WEBHOOK", json.dumps(
        {"conn_type": "http", "host": "127.0.0.1", "port": server.server_address[1], "schema": "http",
         "login": "airflow", "password": "hunter2-webhook-password"}))
    monkeypatch.setenv("AIRFLOW_CONN_DEAD_SMTP", json.dumps(
        {"conn_type": "smtp", "host": "127.0.0.1", "port": free_port(), "extra": smtp_extra}))
    monkeypatch.setenv("AIRFLOW_CONN_DEAD_WEBHOOK", json.dumps(
        {"conn_type": "http", "host": "127.0.0.1", "port": free_port(), "schema": "http"}))
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(dag_folder), safe_mode=False)
    assert bag.import_errors == {}
    return bag.dags, sink, received


def body_text(msg: email.message.EmailMessage) -> str:
    part = msg.get_body(preferencelist=("html", "plain"))
    return html.unescape(re.sub(r"<[^>]+>", "", part.get_content()))


def links(dag_id: str, run_id: str) -> dict[str, str]:
    from urllib.parse import quote

    dag, run = quote(dag_id, safe=""), quote(run_id, safe="")
    return {"run": f"{BASE_URL}/gemini-tuning/runs/{dag}/{run}",
            "report": f"{BASE_URL}/gemini-tuning/report/{dag}/{run}",
            "airflow": f"{BASE_URL}/dags/{dag}/runs/{run}"}


def assert_message(subject: str, text: str, *, dag_id: str, run_id: str, decision: str, title: str):
    assert "\n" not in subject and title in subject and PID in subject and run_id in subject, subject
    assert f"Decision: {decision}" in text and f"Pipeline: {PID}" in text and f"DAG: {dag_id}" in text, text
    for line in EXPECTED_LINES:
        assert f"  - {line}" in text, text
    urls = links(dag_id, run_id)
    assert f"Run page: {urls['run']}" in text and f"Report: {urls['report']}" in text, text
    assert f"Airflow run: {urls['airflow']}" in text, text
    assert "Candidate: projects/123/locations/us-central1/models/456@1" in text, text
    for leak in LEAKS:
        assert leak not in subject and leak not in text, leak


def run(dag, expected_state: str):
    from airflow.utils.state import DagRunState

    dr = dag.test()
    states = {ti.task_id: ti.state for ti in dr.get_task_instances()}
    assert dr.state == DagRunState(expected_state), states
    return dr, states


def test_promote_sends_one_email_and_one_webhook_with_the_verdict_and_the_links(dags):
    bag, sink, received = dags
    dr, states = run(bag["notify_promote"], "success")
    assert states == {"gate": "success", "promote": "success"}
    assert len(sink.messages) == 1 and len(received) == 1, (sink.messages, received)
    msg = sink.messages[0]
    assert msg["To"] == "ml-support@example.com" and msg["From"] == "airflow@example.com"
    assert_message(str(msg["Subject"]), body_text(msg), dag_id="notify_promote", run_id=dr.run_id,
                   decision="PROMOTE", title="candidate promoted to champion")
    hook = received[0]
    assert hook["path"] == "/hooks/gemini" and hook["headers"]["Content-Type"] == "application/json"
    payload = hook["json"]
    assert payload["event"] == "promote" and payload["decision"] == "promote" and payload["verdict"] == EXPECTED_LINES
    assert payload["run_url"] == links("notify_promote", dr.run_id)["run"]
    assert payload["report_url"] == links("notify_promote", dr.run_id)["report"]
    assert payload["subject"] == str(msg["Subject"])
    assert_message(payload["subject"], payload["text"], dag_id="notify_promote", run_id=dr.run_id,
                   decision="PROMOTE", title="candidate promoted to champion")
    assert SECRET not in json.dumps(payload) and "4111" not in json.dumps(payload)


def test_delete_after_a_rejection_reports_the_rejection(dags):
    bag, sink, received = dags
    dr, states = run(bag["notify_rejected"], "success")
    assert states["delete_rejected"] == "success"
    assert len(sink.messages) == 1 and len(received) == 1
    msg = sink.messages[0]
    assert_message(str(msg["Subject"]), body_text(msg), dag_id="notify_rejected", run_id=dr.run_id,
                   decision="REJECTED", title="candidate deleted")
    assert received[0]["json"]["event"] == "delete" and received[0]["json"]["decision"] == "rejected"


def test_a_failed_run_notifies_once_naming_the_failed_task(dags):
    bag, sink, received = dags
    dr, states = run(bag["notify_failure"], "failed")
    assert states == {"gate": "success", "tune": "failed"}
    assert len(sink.messages) == 1 and len(received) == 1, (sink.messages, received)
    text = body_text(sink.messages[0])
    assert_message(str(sink.messages[0]["Subject"]), text, dag_id="notify_failure", run_id=dr.run_id,
                   decision="PROMOTE", title="run failed")
    assert "Task: tune" in text and "refused the request" not in text
    assert received[0]["json"]["event"] == "failure"


def test_unreachable_channels_never_fail_the_task_or_change_the_run(dags, caplog):
    bag, sink, received = dags
    with caplog.at_level("WARNING", logger="gemini_tuning.notifications"):
        _, states = run(bag["notify_unreachable"], "success")
        assert states == {"gate": "success", "promote": "success"}
        _, states = run(bag["notify_unreachable_failure"], "failed")
        assert states == {"gate": "success", "tune": "failed"}
    assert sink.messages == [] and received == []
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    for event in ("promote", "failure"):
        for channel in ("smtp", "webhook"):
            assert any(f"notification {event} " in w and f"not sent through {channel}" in w for w in warnings), \
                warnings
    assert not any(SECRET in w for w in warnings)


def test_a_direct_call_with_an_unreachable_smtp_port_logs_a_warning_and_returns(dags, caplog):
    from gemini_tuning.notifications import GeminiTuningNotifier

    class TI:
        dag_id, run_id, task_id = "notify_promote", "manual__x", "promote"

        @staticmethod
        def xcom_pull(task_ids, key):
            return GATE

    notifier = GeminiTuningNotifier("promote", pipeline_id=PID,
                                    smtp={"to": ["ml-support@example.com"], "conn_id": "dead_smtp"},
                                    webhook={"conn_id": "dead_webhook"})
    with caplog.at_level("WARNING", logger="gemini_tuning.notifications"):
        notifier({"ti": TI(), "run_id": "manual__x"})     # no exception
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert any("not sent through smtp" in w for w in warnings), warnings
    assert any("not sent through webhook" in w for w in warnings), warnings
    _, sink, received = dags
    assert sink.messages == [] and received == []
