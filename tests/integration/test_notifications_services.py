"""Notifications on a REAL scheduler, dag-processor, triggerer, LocalExecutor worker and api-server: the DAGs of
``test_notifications_e2e`` (the same notifiers, the same connections through ``AIRFLOW_CONN_*``) are triggered through
the REST API. What ``dag.test()`` cannot show: a task's callbacks run in the worker's task process, and a DAG's
failure callback in the dag-processor, each with the connections of its own process; the links in the messages are
the api-server's own and answer there (the run page) for a logged-in user."""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

import pytest
from test_notifications_e2e import DAG_FILE, EXPECTED_LINES, PID, SECRET, Sink, body_text, free_port

pytestmark = [pytest.mark.services, pytest.mark.timeout(600), pytest.mark.full]


@pytest.fixture(scope="module")
def receivers():
    from aiosmtpd.controller import Controller

    sink = Sink()
    smtp = Controller(sink, hostname="127.0.0.1", port=free_port())
    smtp.start()
    received: list[dict] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            received.append({"path": self.path, "json": json.loads(body)})
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args):
            pass

    http = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=http.serve_forever, daemon=True).start()
    try:
        yield smtp.port, http.server_address[1], sink, received
    finally:
        http.shutdown()
        http.server_close()
        smtp.stop()


@pytest.fixture(scope="module")
def stack(tmp_path_factory, receivers):
    from harness.airflow_services import AirflowServices
    from harness.paths import PLUGINS

    smtp_port, http_port, _, _ = receivers
    tmp = tmp_path_factory.mktemp("notify-services")
    dags = tmp / "dags"
    dags.mkdir()
    (dags / "notify_dags.py").write_text(DAG_FILE)
    smtp_extra = {"disable_tls": True, "disable_ssl": True, "from_email": "airflow@example.com", "retry_limit": 0,
                  "timeout": 5}
    env = {"AIRFLOW_CONN_NOTIFY_SMTP": json.dumps({"conn_type": "smtp", "host": "127.0.0.1", "port": smtp_port,
                                                   "extra": smtp_extra}),
           "AIRFLOW_CONN_GEMINI_TUNING_WEBHOOK": json.dumps({"conn_type": "http", "host": "127.0.0.1",
                                                             "port": http_port, "schema": "http", "login": "airflow",
                                                             "password": "hunter2-webhook-password"}),
           "AIRFLOW_CONN_DEAD_SMTP": json.dumps({"conn_type": "smtp", "host": "127.0.0.1", "port": free_port(),
                                                 "extra": smtp_extra}),
           "AIRFLOW_CONN_DEAD_WEBHOOK": json.dumps({"conn_type": "http", "host": "127.0.0.1", "port": free_port(),
                                                    "schema": "http"})}
    af = AirflowServices(dags_folder=dags, plugins_folder=PLUGINS, extra_env=env, home=tmp / "airflow")
    af.start()
    try:
        for dag_id in ("notify_promote", "notify_rejected", "notify_failure"):
            af.wait_dag_parsed(dag_id)
        yield af
    finally:
        af.stop()


def wait_messages(sink, received, n: int, timeout: float = 90.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if len(sink.messages) >= n and len(received) >= n:
            return
        time.sleep(0.25)
    raise AssertionError(f"{len(sink.messages)} email(s), {len(received)} webhook call(s); expected {n} each")


def test_promote_delete_and_failure_notify_from_the_real_components_with_working_links(stack, receivers):
    af = stack
    _, _, sink, received = receivers
    expect = {"notify_promote": ("success", "promote", "PROMOTE", "candidate promoted to champion"),
              "notify_rejected": ("success", "delete", "REJECTED", "candidate deleted"),
              "notify_failure": ("failed", "failure", "PROMOTE", "run failed")}
    runs = {dag_id: af.trigger_dag(dag_id) for dag_id in expect}           # side by side
    for dag_id, run_id in runs.items():
        assert af.wait_run(dag_id, run_id, timeout=240) == expect[dag_id][0], af.task_instances(dag_id, run_id)
    wait_messages(sink, received, len(expect))
    time.sleep(2)                                                          # nothing more arrives: one message each
    assert len(sink.messages) == len(expect) and len(received) == len(expect), (
        [m["Subject"] for m in sink.messages], [r["json"]["event"] for r in received])

    by_event = {r["json"]["event"]: r["json"] for r in received}
    for dag_id, (_, event, decision, title) in expect.items():
        payload = by_event[event]
        run_id = runs[dag_id]
        assert payload["dag_id"] == dag_id and payload["run_id"] == run_id and payload["decision"] == decision.lower()
        assert payload["verdict"] == EXPECTED_LINES and title in payload["subject"] and PID in payload["subject"]
        (msg,) = [m for m in sink.messages if str(m["Subject"]) == payload["subject"]]
        text = body_text(msg)
        assert f"Decision: {decision}" in text and SECRET not in text and "4111" not in text
        # the links are the api-server's own: Airflow's run page answers there for a logged-in user; the plugin's
        # run page route answers too (these small DAGs use no Gemini tuning operator, so it says it does not know
        # the run: its own 404 page; a pipeline run's page is checked in test_ui_browser.py)
        for key in ("run_url", "report_url"):
            assert payload[key].startswith(af.base_url + "/gemini-tuning/"), payload[key]
        assert payload["airflow_run_url"].startswith(af.base_url + "/dags/"), payload["airflow_run_url"]
        page = af.request("GET", urlsplit(payload["airflow_run_url"]).path)
        assert page.status_code == 200 and "<html" in page.text.lower(), (payload["airflow_run_url"], page.status_code)
        ours = af.request("GET", urlsplit(payload["run_url"]).path, expect=None)
        assert ours.status_code == 404 and "Gemini tuning" in ours.text, ours.status_code
    assert "Task: tune" in body_text(next(m for m in sink.messages if "run failed" in str(m["Subject"])))
